import { IMAGENET_MEAN, IMAGENET_STD } from '../../image/clip-transform.js';
import type { LowRankSetting } from '../../lowrank/settings.js';
import { sliceBatch, type Tensor } from '../../tensor.js';
import type { LoraAdapter } from '../common/layers.js';
import type { TrainLossOptions } from '../common/locoop-train-graph.js';
import { softmaxRows } from '../common/probabilities.js';
import type { Resident } from '../../runtime/device-tensor.js';
import { onDevice } from '../common/device-options.js';
import type { BundleParts, Classifier, FamilyModel, ModelFamily, SearchSubject, TrainSetup } from '../family.js';
import { numLabels } from './config.js';
import { swinV2ClassifierGraph } from './graph.js';
import { SwinV2Model, type SwinV2Outputs } from './model.js';
import { swinPreprocess } from './preprocess.js';
import { swinTrainGraph } from './train-graph.js';

/**
 * A Swin V2 ImageNet classifier (HF `Swinv2ForImageClassification`) as setar's commands use it:
 * its own outputs are the classes (class folder i ↔ output i), one tower of `[stage, block]`
 * blocks to search, SeTAR's local logits from the last block's value path (SPEC §1).
 */
class SwinV2FamilyModel implements FamilyModel {
  readonly family = swinV2Family;
  readonly preprocess;
  readonly augment;

  constructor(readonly model: SwinV2Model) {
    this.preprocess = swinPreprocess(model.config);
    // SPEC §1: random-resized-crop scale (0.08, 1), flips, colour jitter 0.6–1.4, ImageNet mean/std
    this.augment = { size: model.config.image_size[0], scale: [0.08, 1] as const, mean: IMAGENET_MEAN, std: IMAGENET_STD, colorJitter: 0.4 };
  }

  get dir(): string {
    return this.model.dir;
  }

  weightName(setting: LowRankSetting): string {
    return this.model.weightName(setting);
  }

  getOriginalWeight(name: string): Float32Array {
    return this.model.getOriginalWeight(name);
  }

  weightShape(name: string): readonly number[] {
    return this.model.weightShape(name);
  }

  setWeight(name: string, value: Float32Array): void {
    this.model.setWeight(name, value);
  }

  resetWeight(name?: string): void {
    this.model.resetWeight(name);
  }

  isSwappable(name: string): boolean {
    return this.model.isSwappable(name);
  }

  matrix(name: string): Tensor<'float32'> {
    return this.model.matrix(name);
  }

  residentMatrix(name: string): Promise<Resident> {
    return this.model.residentMatrix(name);
  }

  get deviceWeightBytes(): number {
    return this.model.deviceWeightBytes;
  }

  /** config.json's id2label, in output order. */
  defaultLabels(): string[] {
    const c = this.model.config;
    return Array.from({ length: numLabels(c) }, (_, i) => c.id2label[i] ?? `LABEL_${i}`);
  }

  /** The classifier's outputs are the classes: their number must match (class i ↔ output i). */
  checkLabels(labels: readonly string[]): void {
    const n = this.model.numLabels;
    const count = labels.length;
    if (count !== n) {
      throw new RangeError(`the class list has ${count} classes but the Swin V2 classifier in '${this.dir}' has ${n} outputs; class i (the i-th class folder in sorted order, or the i-th label) must be classifier output i, so the counts must match`);
    }
  }

  async classifier(labels: readonly string[]): Promise<Classifier> {
    this.checkLabels(labels);
    const model = this.model;
    const names = this.defaultLabels();
    return {
      classes: model.numLabels,
      note: `Swin V2 classifier: ${model.numLabels} outputs; class i ↔ output i (${labels.slice(0, 3).map((l, i) => `${l} → ${names[i]}`).join(', ')}${labels.length > 3 ? ', …' : ''})`,
      async logits(pixels, local) {
        const o = await model.classify(pixels);
        return local ? { global: o.logits, local: o.logits_local } : { global: o.logits };
      },
      // temperature 1, as the classifier's own softmax
      async probabilities(pixels) {
        return softmaxRows((await model.classify(pixels)).logits.data, pixels.dims[0]!, model.numLabels);
      },
      release: async () => undefined,
    };
  }

  async embed(inputs: { pixels?: Tensor<'float32'>; texts?: readonly string[] }, options: { local: boolean }): Promise<Record<string, Tensor<'float32'>>> {
    if (inputs.texts) throw new RangeError(`the Swin V2 model in '${this.dir}' has no text tower`);
    if (!inputs.pixels) return {};
    const o = await this.model.classify(inputs.pixels);
    return options.local ? { logits: o.logits, logits_local: o.logits_local } : { logits: o.logits };
  }

  async searchSubject(labels: readonly string[]): Promise<SearchSubject> {
    this.checkLabels(labels);
    const model = this.model;
    return {
      towers: [{
        tower: 'visual',
        layers: model.plan().map((p) => [p.stage, p.block] as const),
        projection: false,
        readsImages: true,
        embed: (pixels) => model.embeddingsResident(pixels!),
        run: (h, from, to) => model.blocksResident(h, from, to),
        head: (h, from) => model.classifyFromResident(h, from),
      }],
      async logits(outputs, start, count) {
        const o = outputs[0] as SwinV2Outputs;
        return { global: sliceBatch(o.logits, start, count), local: sliceBatch(o.logits_local, start, count) };
      },
      release: async () => undefined,
    };
  }

  async trainSetup(adapters: ReadonlyMap<string, LoraAdapter>, loss: TrainLossOptions, prompts: { labels: readonly string[] }): Promise<TrainSetup> {
    this.checkLabels(prompts.labels);
    const [h, w] = this.model.plan().at(-1)!.resolution;
    return { graph: swinTrainGraph(this.model.config, this.model.source, adapters, loss), feeds: {}, patchesPerImage: h * w };
  }

  matchTargetModules(targets: readonly string[]): string[] {
    return this.model.matchTargetModules(targets);
  }

  /**
   * The whole (modified) classifier with its weights baked in. Labels are the ID class folders'
   * names when their count matches the outputs (class folder i ↔ output i, as `setar eval`), else
   * config.json's id2label in output order.
   */
  async bundleParts(labels: readonly string[]): Promise<BundleParts> {
    const model = this.model;
    const [gh, gw] = model.plan().at(-1)!.resolution;
    if (gh !== gw) throw new RangeError(`swinv2 bundle: the last stage's grid ${gh} x ${gw} is not square`);
    return {
      head: 'classifier',
      encoder: swinV2ClassifierGraph(model.config, model.source, { bakeWeights: (name) => model.matrix(name).data }),
      labels: labels.length === model.numLabels ? [...labels] : this.defaultLabels(),
      templates: [],
      grid: gh,
      preprocess: this.preprocess,
    };
  }

  save(dir: string): void {
    this.model.save(dir);
  }

  dispose(): Promise<void> {
    return this.model.dispose();
  }
}

/** Swin Transformer V2 classifiers (HF `Swinv2ForImageClassification`), vision only. */
export const swinV2Family: ModelFamily = {
  name: 'swinv2',
  displayName: 'Swin V2',
  modelTypes: ['swinv2'],
  officialModelTypes: ['SwinTransformerV2', 'swinv2'],
  towers: [{ tower: 'visual', projection: false }],
  layerIds: 'stage-block',
  defaults: {
    temperature: 1,
    template: null,
    searcher: 'visual_only_swin',
    scorers: ['mcm_score', 'energy_score'],
    // SPEC §5: λ 0.01 and K 700 of 1,000 classes for Swin
    locoopLambda: () => 0.01,
    locoopTopKShare: 0.7,
  },
  async load(dir, options = {}) {
    return new SwinV2FamilyModel(await SwinV2Model.load(dir, onDevice(options)));
  },
};
