import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadIdDataset, type IdSource } from '../data/datasets.js';
import { loadImageBatches } from '../data/loader.js';
import { decodeImage } from '../image/decode.js';
import { CLIP_MEAN, CLIP_STD, preprocessClip } from '../image/preprocess.js';
import { writeFileAtomic } from '../io/atomic.js';
import { SafetensorsFile, writeSafetensors } from '../io/safetensors.js';
import { applyLoraSettings } from '../lowrank/apply.js';
import type { LoraSetting } from '../lowrank/settings.js';
import { GraphBuilder } from '../onnx/graph-builder.js';
import { convertPrecision, type Precision } from '../onnx/precision.js';
import { visionEmbeddings, visionTower, type LayerRun } from '../models/clip/graph.js';
import { l2Normalize } from '../models/clip/logits.js';
import type { ClipModel } from '../models/clip/model.js';
import { ClipPipeline, fillTemplate } from '../models/clip/pipeline.js';
import { encoderLayerWeights, layerTensorName, visionEmbeddingsWeights, visionHeadWeights } from '../models/clip/weights.js';
import { modelFamily, swinPreprocess, IMAGENET_MEAN, IMAGENET_STD } from '../models/registry.js';
import { swinV2ClassifierGraph } from '../models/swinv2/graph.js';
import { SwinV2Model } from '../models/swinv2/model.js';
import { getScorer } from '../ood/scores.js';
import { runSingly } from '../runtime/run-singly.js';
import { Session } from '../runtime/session.js';
import { verdictsFromEmbeddings, verdictsFromLogits, type Verdict } from './verdict.js';
import { tensor, type Tensor } from '../tensor.js';

/** `bundle.json`: what a detector needs besides its two tensor files. */
export interface BundleManifest {
  readonly format: 'setar-bundle/1';
  /**
   * What image_encoder.onnx computes. Absent (every CLIP bundle, as before): `clip-text`, image
   * embeddings scored against text_features.safetensors. `classifier` (Swin V2): the whole
   * classifier, logits [B, labels] and logits_local [B, grid, grid, labels]; no text features
   * file, `templates` empty.
   */
  readonly head?: BundleHead;
  readonly labels: readonly string[];
  readonly templates: readonly string[];
  /** How image_encoder.onnx stores its weights (absent in bundles written before: fp32). */
  readonly precision?: Precision;
  readonly scorer: string;
  readonly temperature: number;
  /** Score above which an image is OOD (the bundle scorer's units; lower = more in-distribution). */
  readonly threshold: number;
  /** Share of the ID validation images at or below the threshold. */
  readonly tpr: number;
  readonly validation_images: number;
  readonly grid: number;
  /** `size` is the crop; `resize_to` (classifier bundles: floor(size / 0.9)) the shorter side before it, default `size`. */
  readonly preprocess: { readonly size: number; readonly resize_to?: number; readonly resample: 'bicubic (Pillow)'; readonly mean: readonly number[]; readonly std: readonly number[] };
}

/** See {@link BundleManifest.head}. */
export type BundleHead = 'clip-text' | 'classifier';

/** Options of {@link createBundle}. */
export interface BundleOptions {
  readonly model: string;
  readonly id: IdSource;
  readonly labels?: readonly string[];
  readonly loraSettings?: readonly LoraSetting[];
  readonly scorer?: string;
  readonly tpr?: number;
  readonly templates?: readonly string[];
  readonly temperature?: number;
  readonly out: string;
  readonly threads?: number;
  /** image_encoder.onnx's weights: fp32 (default), fp16 (stored half, computed fp32), int8 (see onnx/precision.ts). */
  readonly precision?: Precision;
}

const sha256 = (data: string | Uint8Array) => createHash('sha256').update(data).digest('hex');

/** The image tower as one standalone ONNX graph, weights baked in: pixel_values → image_embeds, image_embeds_local. */
function imageEncoderOnnx(model: ClipModel): Uint8Array {
  const c = model.config;
  const v = c.vision_config;
  const grid = model.grid;
  const g = new GraphBuilder('setar_image_encoder');
  g.bakeWeights = (name) => model.matrix(name).data;
  const px = g.input('pixel_values', 'FLOAT', ['batch', v.num_channels, v.image_size, v.image_size]);
  const h0 = visionEmbeddings(g, px, visionEmbeddingsWeights(model.source), { hidden: v.hidden_size, channels: v.num_channels, patch: v.patch_size, grid, eps: v.layer_norm_eps });
  const layers = [];
  const prefixes = [];
  for (let i = 0; i < v.num_hidden_layers; i++) {
    layers.push(encoderLayerWeights(model.source, c, 'vision', i));
    prefixes.push(layerTensorName('vision', i, '').slice(0, -1));
  }
  const run: LayerRun = { layers, prefixes };
  const out = visionTower(g, h0, run, visionHeadWeights(model.source, c), { heads: v.num_attention_heads, eps: v.layer_norm_eps, act: v.hidden_act, causal: false }, { grid, local: true });
  g.output(out.image_embeds, 'image_embeds', 'FLOAT', ['batch', c.projection_dim]);
  g.output(out.image_embeds_local!, 'image_embeds_local', 'FLOAT', ['batch', grid, grid, c.projection_dim]);
  return g.toBytes();
}

/**
 * `setar bundle`: everything needed to score an image in one folder — the (low-rank modified)
 * image tower as ONNX, the prompts' normalised text features (no text tower at run time), the
 * scorer, temperature and a threshold chosen on ID VALIDATION images at the target TPR, and a
 * recipe.json of content hashes (checkpoint, labels, templates, validation list) and the
 * preprocessing, so a deployment can be checked for drift.
 */
export async function createBundle(o: BundleOptions): Promise<BundleManifest> {
  const scorer = o.scorer ?? 'gl_mcm_score';
  getScorer(scorer);
  const tpr = o.tpr ?? 0.95;
  if (!(tpr > 0 && tpr < 1)) throw new RangeError(`--tpr must be in (0, 1), got ${tpr}`);
  if (modelFamily(o.model) === 'swinv2') return createClassifierBundle(o, scorer, tpr);
  const templates = o.templates?.length ? o.templates : ['a photo of a {}'];
  const temperature = o.temperature ?? 100;
  const { dataset, labels } = loadIdDataset(o.id, 'val', o.labels);
  const clip = await ClipPipeline.load(o.model, { threads: o.threads });
  try {
    if (o.loraSettings?.length) await applyLoraSettings(clip.model, o.loraSettings);
    // CLIP's prompt ensemble: the mean of each template's normalised features, normalised again
    const c = labels.length;
    const p = clip.model.config.projection_dim;
    const text = new Float32Array(c * p);
    for (const t of templates) {
      const e = l2Normalize(await clip.encodeTexts(labels.map((l) => fillTemplate(t, l)))).data;
      for (let i = 0; i < e.length; i++) text[i] = text[i]! + e[i]! / templates.length;
    }
    const textFeatures = l2Normalize(tensor('float32', text, [c, p]));
    mkdirSync(o.out, { recursive: true });
    writeFileAtomic(join(o.out, 'image_encoder.onnx'), convertPrecision(imageEncoderOnnx(clip.model), o.precision ?? 'fp32'));
    writeSafetensors(join(o.out, 'text_features.safetensors'), {
      text_features: { dtype: 'F32', shape: [c, p], data: textFeatures.data },
      logit_scale: { dtype: 'F32', shape: [], data: Float32Array.of(clip.model.logitScale) },
    });

    // The threshold, on ID validation images only.
    const size = clip.model.config.vision_config.image_size;
    const detector = await Detector.load(o.out, { threads: o.threads, manifest: { labels, templates, scorer, temperature, grid: clip.model.grid, size } });
    const scores: number[] = [];
    for await (const b of loadImageBatches(dataset.files, { batchSize: 32, preprocess: { size } })) {
      for (const s of (await detector.scoreBatch(b.pixelValues)).map((r) => r.scores[scorer]!)) scores.push(s);
    }
    await detector.release();
    if (scores.length === 0) throw new Error(`no readable validation image in ${dataset.root}`);
    scores.sort((a, b) => a - b);
    const threshold = scores[Math.min(scores.length - 1, Math.ceil(tpr * scores.length) - 1)]!;
    const manifest: BundleManifest = {
      format: 'setar-bundle/1', labels, templates, precision: o.precision ?? 'fp32', scorer, temperature, threshold, tpr, validation_images: scores.length, grid: clip.model.grid,
      preprocess: { size, resample: 'bicubic (Pillow)', mean: [...CLIP_MEAN], std: [...CLIP_STD] },
    };
    writeFileAtomic(join(o.out, 'bundle.json'), JSON.stringify(manifest, null, 2) + '\n');
    const weights = readdirSync(o.model).filter((f) => f.endsWith('.safetensors') || f === 'config.json' || f.endsWith('.index.json')).sort();
    writeFileAtomic(join(o.out, 'recipe.json'), JSON.stringify({
      checkpoint: Object.fromEntries(weights.map((f) => [f, sha256(readFileSync(join(o.model, f)))])),
      lora_settings: o.loraSettings ?? null,
      precision: manifest.precision,
      labels_sha256: sha256(JSON.stringify(labels)),
      templates_sha256: sha256(JSON.stringify(templates)),
      validation: { dataset: dataset.name, images: dataset.relPaths.length, files_sha256: sha256(dataset.relPaths.join('\n')) },
      preprocess: manifest.preprocess,
      threshold_rule: `the ceil(${tpr}·n)-th smallest ${scorer} of the n ID validation images`,
    }, null, 2) + '\n');
    return manifest;
  } finally {
    await clip.dispose();
  }
}

/**
 * The Swin V2 form of `setar bundle`: image_encoder.onnx is the whole (low-rank modified)
 * classifier with its weights baked in (logits, logits_local); no text_features.safetensors;
 * labels are the ID class folders' names when their count matches the classifier's outputs
 * (class folder i ↔ output i, as `setar eval`), else config.json's id2label in output order.
 * Temperature default 1; timm's preprocessing (resize floor(size/0.9), centre crop, ImageNet mean/std).
 */
async function createClassifierBundle(o: BundleOptions, scorer: string, tpr: number): Promise<BundleManifest> {
  const temperature = o.temperature ?? 1;
  const { dataset, labels: folders } = loadIdDataset(o.id, 'val', o.labels);
  const model = await SwinV2Model.load(o.model, { threads: o.threads });
  try {
    if (o.loraSettings?.length) await applyLoraSettings(model, o.loraSettings);
    const n = model.numLabels;
    const labels = folders.length === n ? [...folders] : Array.from({ length: n }, (_, i) => model.config.id2label[i] ?? `LABEL_${i}`);
    const pre = swinPreprocess(model.config);
    const size = pre.cropSize;
    const last = model.plan().at(-1)!;
    const [gh, gw] = last.resolution;
    if (gh !== gw) throw new RangeError(`swinv2 bundle: the last stage's grid ${gh} x ${gw} is not square`);
    const grid = gh;
    mkdirSync(o.out, { recursive: true });
    writeFileAtomic(join(o.out, 'image_encoder.onnx'), convertPrecision(swinV2ClassifierGraph(model.config, model.tensorSource, { bakeWeights: (name) => model.matrix(name).data }), o.precision ?? 'fp32'));

    const preprocess = { size, resize_to: pre.resizeTo, resample: 'bicubic (Pillow)' as const, mean: [...IMAGENET_MEAN], std: [...IMAGENET_STD] };
    const detector = await Detector.load(o.out, { threads: o.threads, manifest: { head: 'classifier', labels, templates: [], scorer, temperature, grid, size, resizeTo: pre.resizeTo, mean: IMAGENET_MEAN, std: IMAGENET_STD } });
    const scores: number[] = [];
    try {
      for await (const b of loadImageBatches(dataset.files, { batchSize: 32, preprocess: pre })) {
        for (const s of (await detector.scoreBatch(b.pixelValues)).map((r) => r.scores[scorer]!)) scores.push(s);
      }
    } finally {
      await detector.release();
    }
    if (scores.length === 0) throw new Error(`no readable validation image in ${dataset.root}`);
    scores.sort((a, b) => a - b);
    const threshold = scores[Math.min(scores.length - 1, Math.ceil(tpr * scores.length) - 1)]!;
    const manifest: BundleManifest = {
      format: 'setar-bundle/1', head: 'classifier', labels, templates: [], precision: o.precision ?? 'fp32', scorer, temperature, threshold, tpr, validation_images: scores.length, grid, preprocess,
    };
    writeFileAtomic(join(o.out, 'bundle.json'), JSON.stringify(manifest, null, 2) + '\n');
    const weights = readdirSync(o.model).filter((f) => f.endsWith('.safetensors') || f.endsWith('.bin') || f === 'config.json' || f.endsWith('.index.json')).sort();
    writeFileAtomic(join(o.out, 'recipe.json'), JSON.stringify({
      checkpoint: Object.fromEntries(weights.map((f) => [f, sha256(readFileSync(join(o.model, f)))])),
      lora_settings: o.loraSettings ?? null,
      precision: manifest.precision,
      labels_sha256: sha256(JSON.stringify(labels)),
      templates_sha256: sha256(JSON.stringify([])),
      validation: { dataset: dataset.name, images: dataset.relPaths.length, files_sha256: sha256(dataset.relPaths.join('\n')) },
      preprocess: manifest.preprocess,
      threshold_rule: `the ceil(${tpr}·n)-th smallest ${scorer} of the n ID validation images`,
    }, null, 2) + '\n');
    return manifest;
  } finally {
    await model.dispose();
  }
}

export type { Verdict } from './verdict.js';

type ManifestLike = Pick<BundleManifest, 'labels' | 'templates' | 'scorer' | 'temperature' | 'grid'> & {
  size: number;
  threshold?: number;
  head?: BundleHead;
  /** Classifier bundles: shorter side before the crop, and the normalisation (default CLIP's, resize to `size`). */
  resizeTo?: number;
  mean?: readonly [number, number, number];
  std?: readonly [number, number, number];
};

/** A bundle loaded for scoring: the image encoder session and the text features. */
export class Detector {
  private constructor(
    private readonly session: Session,
    private readonly text: Float32Array | null,
    private readonly scale: number,
    readonly manifest: ManifestLike,
  ) {}

  /** Loads `dir` (bundle.json, image_encoder.onnx and, for a clip-text bundle, text_features.safetensors). */
  static async load(dir: string, options: { threads?: number; manifest?: ManifestLike } = {}): Promise<Detector> {
    for (const f of ['image_encoder.onnx', ...(options.manifest ? [] : ['bundle.json'])]) {
      if (!existsSync(join(dir, f))) throw new Error(`'${dir}' is not a setar bundle: ${f} is missing`);
    }
    const manifest: ManifestLike = options.manifest ?? (() => {
      const m = JSON.parse(readFileSync(join(dir, 'bundle.json'), 'utf8')) as BundleManifest;
      if (m.format !== 'setar-bundle/1') throw new Error(`'${dir}/bundle.json': format ${JSON.stringify(m.format)}, expected "setar-bundle/1"`);
      const head = m.head ?? 'clip-text';
      if (head !== 'clip-text' && head !== 'classifier') throw new Error(`'${dir}/bundle.json': head ${JSON.stringify(head)}, expected "clip-text" or "classifier"`);
      if (head === 'clip-text') return { ...m, size: m.preprocess.size };
      const p = m.preprocess;
      return { ...m, head, size: p.size, resizeTo: p.resize_to ?? p.size, mean: p.mean as unknown as [number, number, number], std: p.std as unknown as [number, number, number] };
    })();
    if (manifest.head === 'classifier') {
      const session = await Session.create(new Uint8Array(readFileSync(join(dir, 'image_encoder.onnx'))), 'bundle_classifier', { memoryArena: true, threads: options.threads });
      return new Detector(session, null, 1, manifest);
    }
    if (!existsSync(join(dir, 'text_features.safetensors'))) throw new Error(`'${dir}' is not a setar bundle: text_features.safetensors is missing`);
    const f = SafetensorsFile.open(join(dir, 'text_features.safetensors'));
    let text: Float32Array;
    let ls: number;
    try {
      text = f.readFloat32('text_features', [manifest.labels.length, f.entry('text_features').shape[1]!]);
      ls = f.readFloat32('logit_scale')[0]!;
    } finally {
      f.close();
    }
    const session = await Session.create(new Uint8Array(readFileSync(join(dir, 'image_encoder.onnx'))), 'bundle_image_encoder', { memoryArena: true, threads: options.threads });
    return new Detector(session, text, Math.exp(ls), manifest);
  }

  /** Preprocessed pixel_values [B, 3, S, S] → one verdict per image. */
  async scoreBatch(pixelValues: Tensor<'float32'>): Promise<Verdict[]> {
    // an int8 encoder takes one image per run (its activation scales are per run): image by image
    const feeds = { pixel_values: pixelValues };
    const out = this.session.inputShape('pixel_values')?.[0] === 1 ? await runSingly(this.session, feeds) : await this.session.run(feeds);
    const b = pixelValues.dims[0]!;
    if (this.text === null) return verdictsFromLogits({ global: out.logits!.data as Float32Array, local: out.logits_local!.data as Float32Array }, b, this.manifest);
    return verdictsFromEmbeddings(
      { global: out.image_embeds!.data as Float32Array, local: out.image_embeds_local!.data as Float32Array },
      b, { text: this.text, scale: this.scale }, this.manifest,
    );
  }

  /** An encoded image (JPEG/PNG/WebP/GIF…) → its verdict. */
  async scoreImage(image: Uint8Array, name = 'upload'): Promise<Verdict> {
    const m = this.manifest;
    const px = preprocessClip(await decodeImage(image, { name }), m.head === 'classifier' ? { resizeTo: m.resizeTo, cropSize: m.size, mean: m.mean, std: m.std } : { size: m.size });
    return (await this.scoreBatch(tensor('float32', px, [1, 3, this.manifest.size, this.manifest.size], 'pixel_values')))[0]!;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}
