import type { PreprocessOptions } from '../image/clip-transform.js';
import type { LayerId, LowRankTarget, Tower } from '../lowrank/settings.js';
import type { ResolvedDevice } from '../runtime/device.js';
import type { Resident } from '../runtime/device-tensor.js';
import type { SessionOptions } from '../runtime/session.js';
import type { Tensor } from '../tensor.js';
import type { HiddenStates } from './common/hidden-states.js';
import type { LoraAdapter } from './common/layers.js';
import type { TrainGraph, TrainLossOptions } from './common/locoop-train-graph.js';

/**
 * The seam between setar's commands and a model family (CLIP, Swin V2, …): one
 * {@link ModelFamily} row per family in the registry (registry.ts), and the {@link FamilyModel}
 * its `load` returns. Evaluation, search, fine-tuning, bundles, `embed` and `classify` talk to
 * these interfaces only; what differs between families — prompts or a classifier head, one
 * tower or two, `[stage, block]` layers — lives in `models/<family>/`.
 */

/** A tower a SPEC §2 setting can name, and whether it has a projection (W_p). */
export interface FamilyTower {
  readonly tower: Tower;
  readonly projection: boolean;
}

/** The paper's defaults for a family. */
export interface FamilyDefaults {
  /** Score temperature (SPEC §3): 100 for CLIP logits that include exp(logit_scale), 1 for classifier logits. */
  readonly temperature: number;
  /** Prompt template for class names; null when the model has no text tower. */
  readonly template: string | null;
  /** The searcher of the official configs for this family (SPEC §6). */
  readonly searcher: string;
  /** Scorers of the evaluation that ends a search or a fine-tuning run. */
  readonly scorers: readonly string[];
  /** λ of the LoCoOp objective (SPEC §5) on a benchmark preset (`null`: a folder of classes). */
  locoopLambda(benchmark: string | null): number;
  /**
   * K of the LoCoOp objective as a share of the classes (SPEC §5: 300 of ImageNet's 1,000 for
   * CLIP, 4 of VOC's 14; 700 of 1,000 for Swin): K = round(share × classes), at least 1.
   */
  readonly locoopTopKShare: number;
}

/** Options every family's loader takes. */
export interface FamilyLoadOptions extends SessionOptions {
  /** A whole state dict loaded over the folder's weights (the official `clip_ckpt`); names and shapes are checked. */
  readonly clipCkpt?: string;
  /**
   * Where every session of the model runs (its towers, the logits head, the classifier):
   * `resolveDevice`'s answer to `--device`. Its execution providers replace `executionProviders`;
   * default: the CPU. Bytes moved between host and device are added to `transfers`.
   */
  readonly device?: ResolvedDevice;
}

/** A model family: static facts, defaults and the loader. One registry row. */
export interface ModelFamily {
  /** Registry key, e.g. `clip`. */
  readonly name: string;
  /** Name in messages, e.g. `CLIP`, `Swin V2`. */
  readonly displayName: string;
  /** `config.json` `model_type` values of this family's checkpoints. */
  readonly modelTypes: readonly string[];
  /** Whether a `config.json` without `model_type` is this family's (older setar checkpoints are CLIP). */
  readonly untyped?: boolean;
  /** `model_type` values of the official experiment configs (the first is written back). */
  readonly officialModelTypes: readonly string[];
  readonly towers: readonly FamilyTower[];
  /** How settings name layers: an encoder index, or `[stage, block]`. */
  readonly layerIds: 'index' | 'stage-block';
  readonly defaults: FamilyDefaults;
  load(dir: string, options?: FamilyLoadOptions): Promise<FamilyModel>;
}

/** Global and (optionally) per-patch logits over the ID classes: [B, C] and [B, h, w, C]. */
export interface Logits {
  readonly global: Tensor<'float32'>;
  readonly local?: Tensor<'float32'>;
}

/** A model set up to classify images into given ID classes (evaluation, classify). */
export interface Classifier {
  readonly classes: number;
  /** A line for the log: how the classes map onto the model, if worth saying. */
  readonly note?: string;
  /** Preprocessed pixel_values → logits; `local` asks for the per-patch logits too. */
  logits(pixels: Tensor<'float32'>, local: boolean): Promise<Logits>;
  /** Preprocessed pixel_values → class probabilities [B, C] as `setar classify` reports them. */
  probabilities(pixels: Tensor<'float32'>): Promise<Float64Array>;
  release(): Promise<void>;
}

/**
 * A tower as a chain of blocks, for the search: the hidden states entering any block can be kept
 * and the rest of the tower restarted from there. Hidden states stay where the device keeps them
 * (device memory on webgpu): their holder frees them with `disposeHiddenStates` when it drops
 * them; a tower never frees its input.
 */
export interface SearchTower {
  readonly tower: Tower;
  /** Block ids in forward order, as settings name them. */
  readonly layers: readonly LayerId[];
  readonly projection: boolean;
  /** Whether the tower reads the validation images (else its input is fixed, e.g. the prompts). */
  readonly readsImages: boolean;
  /** The tower's input (the images' pixel_values, or nothing) → hidden states entering block 0. */
  embed(pixels: Tensor<'float32'> | null): Promise<HiddenStates>;
  /** Hidden states entering block `from` → those entering block `to` (new ones; from = to: `hidden` itself). */
  run(hidden: HiddenStates, from: number, to: number): Promise<HiddenStates>;
  /** Hidden states entering block `from` → the tower's output (blocks from.. and its head), on the host. */
  head(hidden: HiddenStates, from: number): Promise<unknown>;
}

/** What the search evaluates: the towers, and the logits their outputs give. */
export interface SearchSubject {
  readonly towers: readonly SearchTower[];
  /**
   * Logits of images [start, start + count) from each tower's output (`outputs[i]` is
   * `towers[i].head(…)`'s), the local ones included.
   */
  logits(outputs: readonly unknown[], start: number, count: number): Promise<Required<Logits>>;
  release(): Promise<void>;
}

/** A built training graph and the inputs it takes that stay fixed during training. */
export interface TrainSetup {
  readonly graph: TrainGraph;
  /** Fixed inputs besides pixel_values, labels_onehot, the adapters and the weight matrices (e.g. the prompts). */
  readonly feeds: Readonly<Record<string, Tensor>>;
  /** Patches per image of the local logits (the LoCoOp OOD-patch share's denominator). */
  readonly patchesPerImage: number;
}

/** Training augmentation (SPEC §1): random-resized-crop scale, flips, optional colour jitter. */
export interface TrainAugment {
  readonly size: number;
  readonly scale?: readonly [number, number];
  readonly mean?: readonly [number, number, number];
  readonly std?: readonly [number, number, number];
  readonly colorJitter?: number;
}

/** What a detector bundle holds of the model (see bundle/bundle.ts). */
export interface BundleParts {
  /** `clip-text`: image embeddings scored against text features; `classifier`: logits as given. */
  readonly head: 'clip-text' | 'classifier';
  /** The image side as one standalone ONNX model, weights baked in. */
  readonly encoder: Uint8Array;
  readonly labels: readonly string[];
  readonly templates: readonly string[];
  /** clip-text: normalised prompt features [C, P] and the stored (log) logit scale. */
  readonly text?: { readonly features: Tensor<'float32'>; readonly logitScale: number };
  /** Side of the local (patch) grid. */
  readonly grid: number;
  readonly preprocess: Required<Pick<PreprocessOptions, 'resizeTo' | 'cropSize' | 'mean' | 'std'>>;
}

/** A loaded model of some family: everything setar's commands do with it. */
export interface FamilyModel extends LowRankTarget {
  readonly family: ModelFamily;
  readonly dir: string;
  /** Evaluation preprocessing (SPEC §1). */
  readonly preprocess: Required<Pick<PreprocessOptions, 'resizeTo' | 'cropSize' | 'mean' | 'std'>>;
  readonly augment: TrainAugment;
  /** Class names the model carries itself (a classifier's id2label); null when they must be given. */
  defaultLabels(): string[] | null;
  /** Throws, naming both counts, when the model cannot classify into these classes (a classifier's outputs are its classes). */
  checkLabels(labels: readonly string[]): void;
  /** The model as a classifier over `labels` (prompts from `template` where the family has a text tower). */
  classifier(labels: readonly string[], options: { readonly template: string }): Promise<Classifier>;
  /** `setar embed`: the family's outputs for images and prompts, by their HF names. */
  embed(inputs: { readonly pixels?: Tensor<'float32'>; readonly texts?: readonly string[] }, options: { readonly local: boolean }): Promise<Record<string, Tensor<'float32'>>>;
  searchSubject(labels: readonly string[], options: { readonly template: string }): Promise<SearchSubject>;
  /** The training graph (forward, LoCoOp loss, adapter gradients) with its fixed inputs. */
  trainSetup(adapters: ReadonlyMap<string, LoraAdapter>, loss: TrainLossOptions, prompts: { readonly labels: readonly string[]; readonly template: string }): Promise<TrainSetup>;
  /** Linear layers (HF prefixes) that PEFT-style `target_modules` select; throws naming unmatched targets. */
  matchTargetModules(targets: readonly string[]): string[];
  bundleParts(labels: readonly string[], templates: readonly string[]): Promise<BundleParts>;
  /** Whether a weight is a graph input (training feeds it as {@link matrix}). */
  isSwappable(name: string): boolean;
  /** A graph-input matrix in [in, out] layout. */
  matrix(name: string): Tensor<'float32'>;
  /** {@link matrix} as runs are fed it: a device copy on webgpu (uploaded once, until replaced), else the host tensor. */
  residentMatrix(name: string): Promise<Resident>;
  /** Bytes of weight matrices the model holds in device memory now (uploaded once each; 0 on cpu and cuda). */
  readonly deviceWeightBytes: number;
  /** Writes the model, replacements applied, as an HF folder. */
  save(dir: string): void;
  dispose(): Promise<void>;
}
