import { CLIP_MEAN, CLIP_STD } from '../../image/clip-transform.js';
import type { LowRankSetting } from '../../lowrank/settings.js';
import { tensor, type Tensor } from '../../tensor.js';
import type { LoraAdapter } from '../common/layers.js';
import { softmaxRows } from '../common/probabilities.js';
import type { TrainLossOptions } from '../common/locoop-train-graph.js';
import type { Resident } from '../../runtime/device-tensor.js';
import { headSessionOptions, onDevice } from '../common/device-options.js';
import type { BundleParts, Classifier, FamilyLoadOptions, FamilyModel, ModelFamily, SearchSubject, TrainSetup } from '../family.js';
import { clipImageEncoderOnnx } from './image-encoder.js';
import { clipLogits, ClipLogitsHead, l2Normalize } from './logits.js';
import { DEFAULT_TEMPLATE, fillTemplate, ClipPipeline } from './pipeline.js';
import { plainPromptEncoder, type ClipPromptEncoder } from './prompts.js';
import { clipSearchSubject } from './search-subject.js';
import { clipTrainGraph } from './train-graph.js';

/**
 * A CLIP model (HF `CLIPModel`) as setar's commands use it: zero-shot over prompts of the class
 * names, two towers to search, LoRA on either tower, a bundle of the image tower and the
 * prompts' features. Prompts enter the text tower through `prompts` (plain CLIP's token
 * embeddings; a family building on CLIP, such as LoCoOp, passes its own encoder and row).
 */
export class ClipFamilyModel implements FamilyModel {
  readonly preprocess;
  readonly augment;

  constructor(
    readonly clip: ClipPipeline,
    protected readonly options: FamilyLoadOptions,
    readonly family: ModelFamily = clipFamily,
    protected readonly prompts: ClipPromptEncoder = plainPromptEncoder(clip),
  ) {
    const size = clip.model.config.vision_config.image_size;
    this.preprocess = { resizeTo: size, cropSize: size, mean: CLIP_MEAN, std: CLIP_STD };
    // SPEC §1: random-resized-crop scale (0.9, 1) and flips, CLIP's normalisation (trainTransform's defaults)
    this.augment = { size };
  }

  get dir(): string {
    return this.clip.model.dir;
  }

  weightName(setting: LowRankSetting): string {
    return this.clip.model.weightName(setting);
  }

  getOriginalWeight(name: string): Float32Array {
    return this.clip.model.getOriginalWeight(name);
  }

  weightShape(name: string): readonly number[] {
    return this.clip.model.weightShape(name);
  }

  setWeight(name: string, value: Float32Array): void {
    this.clip.model.setWeight(name, value);
  }

  resetWeight(name?: string): void {
    this.clip.model.resetWeight(name);
  }

  isSwappable(name: string): boolean {
    return this.clip.model.isSwappable(name);
  }

  matrix(name: string): Tensor<'float32'> {
    return this.clip.model.matrix(name);
  }

  residentMatrix(name: string): Promise<Resident> {
    return this.clip.model.residentMatrix(name);
  }

  get deviceWeightBytes(): number {
    return this.clip.model.deviceWeightBytes;
  }

  defaultLabels(): null {
    return null;
  }

  checkLabels(labels: readonly string[]): void {
    if (labels.length === 0) throw new RangeError('classify: the label list is empty');
  }

  async classifier(labels: readonly string[], options: { template: string }): Promise<Classifier> {
    this.checkLabels(labels);
    const model = this.clip.model;
    const text = await this.prompts.encode(labels.map((l) => fillTemplate(options.template, l)));
    const head = await ClipLogitsHead.create(text, model.logitScale, headSessionOptions(this.options));
    return {
      classes: head.classes,
      async logits(pixels, local) {
        const f = await model.encodeImages(pixels, { local });
        const global = await head.logits(f.image_embeds);
        return local ? { global, local: await head.logits(f.image_embeds_local!) } : { global };
      },
      // float64 logits, as ClipPipeline.classify
      async probabilities(pixels) {
        const { image_embeds } = await model.encodeImages(pixels, { local: false });
        return softmaxRows(clipLogits(image_embeds, text, model.logitScale).data, pixels.dims[0]!, labels.length);
      },
      release: () => head.release(),
    };
  }

  async embed(inputs: { pixels?: Tensor<'float32'>; texts?: readonly string[] }, options: { local: boolean }): Promise<Record<string, Tensor<'float32'>>> {
    const model = this.clip.model;
    const out: Record<string, Tensor<'float32'>> = {};
    if (inputs.pixels) {
      const f = await model.encodeImages(inputs.pixels, { local: options.local });
      out.image_embeds = f.image_embeds;
      if (f.image_embeds_local) out.image_embeds_local = f.image_embeds_local;
    }
    if (inputs.texts) out.text_embeds = await this.prompts.encode(inputs.texts);
    out.logit_scale = tensor('float32', Float32Array.of(model.logitScale), [], 'logit_scale');
    return out;
  }

  async searchSubject(labels: readonly string[], options: { template: string }): Promise<SearchSubject> {
    this.checkLabels(labels);
    return clipSearchSubject(this.clip.model, await this.prompts.layer0(labels.map((l) => fillTemplate(options.template, l))), headSessionOptions(this.options));
  }

  async trainSetup(adapters: ReadonlyMap<string, LoraAdapter>, loss: TrainLossOptions, prompts: { labels: readonly string[]; template: string }): Promise<TrainSetup> {
    const model = this.clip.model;
    const graph = clipTrainGraph(model.config, model.source, adapters, model.logitScale, loss);
    // Prompts: the text tower runs in the graph only if an adapter is on it.
    const { hidden, positions } = await this.prompts.layer0(prompts.labels.map((l) => fillTemplate(prompts.template, l)));
    const feeds: Record<string, Tensor> = {};
    if (graph.textInGraph) {
      feeds.text_hidden = hidden;
      feeds.pool_index = poolIndex(hidden, positions);
    } else {
      feeds.text_embeds = await model.textFrom(hidden, 0, positions);
    }
    return { graph, feeds, patchesPerImage: model.grid ** 2 };
  }

  matchTargetModules(targets: readonly string[]): string[] {
    return this.clip.model.matchTargetModules(targets);
  }

  async bundleParts(labels: readonly string[], templates: readonly string[]): Promise<BundleParts> {
    const model = this.clip.model;
    // CLIP's prompt ensemble: the mean of each template's normalised features, normalised again
    const c = labels.length;
    const p = model.config.projection_dim;
    const text = new Float32Array(c * p);
    for (const t of templates) {
      const e = l2Normalize(await this.prompts.encode(labels.map((l) => fillTemplate(t, l)))).data;
      for (let i = 0; i < e.length; i++) text[i] = text[i]! + e[i]! / templates.length;
    }
    return {
      head: 'clip-text', encoder: clipImageEncoderOnnx(model), labels, templates,
      text: { features: l2Normalize(tensor('float32', text, [c, p])), logitScale: model.logitScale },
      grid: model.grid, preprocess: this.preprocess,
    };
  }

  save(dir: string): void {
    this.clip.model.save(dir);
  }

  dispose(): Promise<void> {
    return this.clip.dispose();
  }
}

/** The flat row index [N] (int64, `pool_index` of the graphs) of each prompt's pooled row in hidden states [N, L, D]. */
export function poolIndex(hidden: Tensor<'float32'>, positions: Int32Array): Tensor<'int64'> {
  const length = hidden.dims[1]!;
  return tensor('int64', BigInt64Array.from(positions, (p, i) => BigInt(i * length + p)), [positions.length], 'pool_index');
}

/** CLIP (HF `CLIPModel`): SPEC §1's vision and text towers. */
export const clipFamily: ModelFamily = {
  name: 'clip',
  displayName: 'CLIP',
  modelTypes: ['clip'],
  untyped: true,
  officialModelTypes: ['CLIP', 'clip'],
  towers: [{ tower: 'visual', projection: true }, { tower: 'text', projection: true }],
  layerIds: 'index',
  defaults: {
    temperature: 100,
    template: DEFAULT_TEMPLATE,
    searcher: 'visual_text',
    scorers: ['mcm_score', 'gl_mcm_score'],
    // SPEC §5: λ 0.05 on Pascal-VOC, else ImageNet's 0.1; K 300 of 1,000 classes (VOC: 4 of 14)
    locoopLambda: (benchmark) => (benchmark?.toLowerCase().includes('voc') ? 0.05 : 0.1),
    locoopTopKShare: 0.3,
  },
  async load(dir, options = {}) {
    const o = onDevice(options);
    return new ClipFamilyModel(await ClipPipeline.load(dir, o), o);
  },
};
