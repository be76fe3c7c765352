import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { loadIdDataset, type IdSource } from '../data/datasets.js';
import { loadImageBatches } from '../data/loader.js';
import { decodeImage } from '../image/decode.js';
import { preprocessClip, type PreprocessOptions } from '../image/preprocess.js';
import { writeFileAtomic } from '../io/atomic.js';
import { SafetensorsFile, writeSafetensors } from '../io/safetensors.js';
import { applyLoraSettings } from '../lowrank/apply.js';
import type { LowRankSetting } from '../lowrank/settings.js';
import { convertPrecision, type Precision } from '../onnx/precision.js';
import { resolveFamily } from '../models/registry.js';
import type { FamilyLoadOptions } from '../models/family.js';
import { getScorer } from '../ood/scores.js';
import { runSingly } from '../runtime/run-singly.js';
import type { ResolvedDevice } from '../runtime/device.js';
import { Session } from '../runtime/session.js';
import { verdictsFromEmbeddings, verdictsFromLogits, type Verdict } from './verdict.js';
import { tensor, type Tensor } from '../tensor.js';
import { prepareOutDir } from '../io/out-dir.js';

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
  /** A whole state dict loaded over the model's weights (official `clip_ckpt`); hashed into recipe.json. */
  readonly clipCkpt?: string;
  /** A LoCoOp context making the CLIP model a LoCoOp model: text features from its prompts; hashed into recipe.json. */
  readonly locoopCkpt?: string;
  /** The context's expected n_ctx (checked against the file). */
  readonly nCtx?: number;
  readonly id: IdSource;
  readonly labels?: readonly string[];
  readonly loraSettings?: readonly LowRankSetting[];
  readonly scorer?: string;
  readonly tpr?: number;
  readonly templates?: readonly string[];
  readonly temperature?: number;
  readonly out: string;
  readonly threads?: number;
  /** image_encoder.onnx's weights: fp32 (default), fp16 (stored half, computed fp32), int8 (see onnx/precision.ts). */
  readonly precision?: Precision;
  /** Where the model and the detector run while the bundle is made (default cpu); the bundle itself runs anywhere. */
  readonly device?: ResolvedDevice;
}

const sha256 = (data: string | Uint8Array) => createHash('sha256').update(data).digest('hex');

/**
 * `setar bundle`: everything needed to score an image in one folder — the (low-rank modified)
 * image side of the model as ONNX (CLIP: the image tower, scored against the prompts' normalised
 * text features, so no text tower at run time; a classifier such as Swin V2: the whole model),
 * the scorer, temperature and a threshold chosen on ID VALIDATION images at the target TPR, and a
 * recipe.json of content hashes (checkpoint, labels, templates, validation list) and the
 * preprocessing, so a deployment can be checked for drift.
 */
export async function createBundle(o: BundleOptions): Promise<BundleManifest> {
  const scorer = o.scorer ?? 'gl_mcm_score';
  getScorer(scorer);
  const tpr = o.tpr ?? 0.95;
  if (!(tpr > 0 && tpr < 1)) throw new RangeError(`--tpr must be in (0, 1), got ${tpr}`);
  prepareOutDir(o.out);
  const locoop: FamilyLoadOptions = o.locoopCkpt !== undefined ? { locoopCkpt: o.locoopCkpt, nCtx: o.nCtx } : {};
  const family = resolveFamily(o.model, locoop);
  const { dataset, labels: classes } = loadIdDataset(o.id, 'val', o.labels);
  const model = await family.load(o.model, { threads: o.threads, clipCkpt: o.clipCkpt, ...locoop, device: o.device });
  try {
    if (o.loraSettings?.length) await applyLoraSettings(model, o.loraSettings);
    const template = family.defaults.template;
    const templates = template === null ? [] : o.templates?.length ? o.templates : [template];
    const parts = await model.bundleParts(classes, templates);
    const temperature = o.temperature ?? family.defaults.temperature;
    const { labels, grid } = parts;
    const pre = parts.preprocess;
    const size = pre.cropSize;
    mkdirSync(o.out, { recursive: true });
    writeFileAtomic(join(o.out, 'image_encoder.onnx'), convertPrecision(parts.encoder, o.precision ?? 'fp32'));
    if (parts.text) {
      const [c, p] = parts.text.features.dims as [number, number];
      writeSafetensors(join(o.out, 'text_features.safetensors'), {
        text_features: { dtype: 'F32', shape: [c, p], data: parts.text.features.data },
        logit_scale: { dtype: 'F32', shape: [], data: Float32Array.of(parts.text.logitScale) },
      });
    }

    // The threshold, on ID validation images only.
    const detector = await Detector.load(o.out, { threads: o.threads, device: o.device, manifest: { head: parts.head, labels, templates: parts.templates, scorer, temperature, grid, size, resizeTo: pre.resizeTo, mean: pre.mean, std: pre.std } });
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
    // A clip-text bundle has no `head` key and resizes straight to the crop: bundle.json as setar-bundle/1 first wrote it.
    const manifest: BundleManifest = {
      format: 'setar-bundle/1', ...(parts.head === 'clip-text' ? {} : { head: parts.head }), labels, templates: parts.templates, precision: o.precision ?? 'fp32', scorer, temperature, threshold, tpr,
      validation_images: scores.length, grid,
      preprocess: { size, ...(pre.resizeTo === size ? {} : { resize_to: pre.resizeTo }), resample: 'bicubic (Pillow)', mean: [...pre.mean], std: [...pre.std] },
    };
    writeFileAtomic(join(o.out, 'bundle.json'), JSON.stringify(manifest, null, 2) + '\n');
    const weights = readdirSync(o.model).filter((f) => f.endsWith('.safetensors') || f.endsWith('.bin') || f === 'config.json' || f.endsWith('.index.json')).sort();
    writeFileAtomic(join(o.out, 'recipe.json'), JSON.stringify({
      checkpoint: Object.fromEntries(weights.map((f) => [f, sha256(readFileSync(join(o.model, f)))])),
      ...(o.clipCkpt ? { clip_ckpt: { file: o.clipCkpt, sha256: sha256(readFileSync(o.clipCkpt)) } } : {}),
      ...(o.locoopCkpt ? { locoop_ckpt: { file: o.locoopCkpt, sha256: sha256(readFileSync(o.locoopCkpt)), n_ctx: model.promptContext?.n } } : {}),
      lora_settings: o.loraSettings ?? null,
      precision: manifest.precision,
      labels_sha256: sha256(JSON.stringify(labels)),
      templates_sha256: sha256(JSON.stringify(parts.templates)),
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

/** Options of {@link Detector.load}. */
export interface DetectorOptions {
  readonly threads?: number;
  /** Where the encoder runs (default cpu). */
  readonly device?: ResolvedDevice;
  readonly manifest?: ManifestLike;
}

/** A bundle loaded for scoring: the image encoder session and the text features. */
export class Detector {
  private constructor(
    private readonly session: Session,
    private readonly text: Float32Array | null,
    private readonly scale: number,
    readonly manifest: ManifestLike,
  ) {}

  /** Loads `dir` (bundle.json, image_encoder.onnx and, for a clip-text bundle, text_features.safetensors). */
  static async load(dir: string, options: DetectorOptions = {}): Promise<Detector> {
    const sessionOptions = { memoryArena: true, threads: options.threads, executionProviders: options.device?.executionProviders };
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
      const session = await Session.create(new Uint8Array(readFileSync(join(dir, 'image_encoder.onnx'))), 'bundle_classifier', sessionOptions);
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
    const session = await Session.create(new Uint8Array(readFileSync(join(dir, 'image_encoder.onnx'))), 'bundle_image_encoder', sessionOptions);
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

  /** The bundle's preprocessing, as preprocessClip / loadAndPreprocess options (pixel_values [3, size, size]). */
  get preprocess(): PreprocessOptions {
    const m = this.manifest;
    return m.head === 'classifier' ? { resizeTo: m.resizeTo, cropSize: m.size, mean: m.mean, std: m.std } : { size: m.size };
  }

  /** An encoded image (JPEG/PNG/WebP/GIF…) → its verdict. */
  async scoreImage(image: Uint8Array, name = 'upload'): Promise<Verdict> {
    const px = preprocessClip(await decodeImage(image, { name }), this.preprocess);
    return (await this.scoreBatch(tensor('float32', px, [1, 3, this.manifest.size, this.manifest.size], 'pixel_values')))[0]!;
  }

  release(): Promise<void> {
    return this.session.release();
  }
}
