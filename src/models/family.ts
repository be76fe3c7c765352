import type { PreprocessOptions } from '../image/clip-transform.js';
import type { SaveValue } from '../io/torch-save.js';
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
  /** The recipe for training a prompt context (`setar finetune --method locoop`); absent where the family has none. */
  readonly contextTraining?: ContextTrainingRecipe;
}

/** How a prompt context trains by default (LoCoOp, SPEC §9). */
export interface ContextTrainingRecipe {
  /** λ of the LoCoOp loss. */
  readonly lambda: number;
  /** K as a share of the classes (SPEC §9: 200 of ImageNet's 1,000): K = round(share × classes), at least 1. */
  readonly topKShare: number;
  /** Context vectors when no phrase sets the count. */
  readonly nCtx: number;
  /** Training images per class. */
  readonly shots: number;
  readonly learningRate: number;
  readonly momentum: number;
  readonly weightDecay: number;
  /** Epochs in all, the warm-up included (Dassl's MAX_EPOCH). */
  readonly epochs: number;
  /** Epochs at the constant warm-up rate first. */
  readonly warmupEpochs: number;
  readonly warmupLr: number;
  readonly batchSize: number;
  /** Random-resized-crop scale range of the training augmentation (with flips). */
  readonly cropScale: readonly [number, number];
}

/** Options every family's loader takes. */
export interface FamilyLoadOptions extends SessionOptions {
  /** A whole state dict loaded over the folder's weights (the official `clip_ckpt`); names and shapes are checked. */
  readonly clipCkpt?: string;
  /**
   * A LoCoOp prompt context (SPEC §9): LoCoOp's `prompt_learner/model.pth.tar-<epoch>` or a
   * `ctx.safetensors`. Selects the LoCoOp family over a CLIP folder ({@link FamilyBase}).
   */
  readonly locoopCkpt?: string;
  /** A fresh LoCoOp context instead of a file, to train one (`setar finetune --method locoop`); selects LoCoOp too. */
  readonly locoopInit?: LocoopInit;
  /** The number of context vectors the caller expects (`--n-ctx`, `n_ctx`); a context with another count is an error naming both. */
  readonly nCtx?: number;
  /** How the caller spelled n_ctx, for messages (default `n_ctx`), e.g. `--n-ctx` or `config key "n_ctx"`. */
  readonly nCtxName?: string;
  /**
   * Where every session of the model runs (its towers, the logits head, the classifier):
   * `resolveDevice`'s answer to `--device`. Its execution providers replace `executionProviders`;
   * default: the CPU. Bytes moved between host and device are added to `transfers`.
   */
  readonly device?: ResolvedDevice;
}

/**
 * How a fresh LoCoOp context starts (SPEC §9): the token embeddings of a phrase's tokens (n = the
 * phrase's token count, `"a photo of a"` → 4), or else n vectors (`nCtx`, default 16) drawn from
 * N(0, 0.02²) with the seed.
 */
export interface LocoopInit {
  readonly phrase?: string | null;
  readonly seed: number;
}

/**
 * What a family builds on when its checkpoints are another family's folders plus something given
 * at load time (LoCoOp: a CLIP folder and a prompt context). {@link ModelFamily.buildsOn}.
 */
export interface FamilyBase {
  /** Registry name of the family whose folders this one loads, e.g. `clip`. */
  readonly family: string;
  /** Load options that select this family over its base when set, e.g. `locoopCkpt`. */
  readonly selectedBy: readonly (keyof FamilyLoadOptions)[];
  /** How a user selects it, for messages, e.g. `--locoop-ckpt FILE (config key "locoop_ckpt")`. */
  readonly given: string;
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
  /**
   * Set when this family's checkpoints are another family's folders plus a load option: the
   * registry resolves such a folder to this family when one of `selectedBy` is given. Its own
   * `modelTypes` is then empty.
   */
  readonly buildsOn?: FamilyBase;
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
  /** The learned prompt context the model carries (LoCoOp), absent for other models. */
  readonly promptContext?: PromptContext;
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

/** What {@link PromptContext.save} records besides the context: Dassl's checkpoint entries. */
export interface PromptContextSaveInfo {
  /** Epochs trained; the file is `prompt_learner/model.pth.tar-<epoch>`. */
  readonly epoch: number;
  /** The class prompts' labels and template, for CoOp's `token_prefix` / `token_suffix` buffers. */
  readonly labels: readonly string[];
  readonly template: string;
  /** SGD's state (`optimizer`): its hyper-parameters, the base lr and the momentum buffer [n, width]. */
  readonly optimizer?: { readonly lr: number; readonly momentum: number; readonly weightDecay: number; readonly initialLr: number; readonly momentumBuffer?: Float32Array };
  /** Dassl's `scheduler` entry, plain data only. */
  readonly scheduler?: SaveValue;
}

/**
 * A learned prompt context (LoCoOp, SPEC §9: n vectors of the text width inserted after the start
 * token of every class prompt) and its training: only the context trains, through the frozen text
 * tower. Search and SeTAR+FT never change it.
 */
export interface PromptContext {
  readonly n: number;
  readonly width: number;
  /** Where it came from, for messages: its file, or how a fresh one was initialised. */
  readonly source: string;
  /** Dassl's epoch, when the checkpoint recorded one. */
  readonly epoch?: number;
  /** A copy of the context, [n, width] row-major, raw (no position embeddings). */
  value(): Float32Array;
  /** Replaces the context (after training); text features follow. */
  set(ctx: Float32Array): void;
  /**
   * The training graph whose one trainable input is `ctx` [n, width] (gradient output in
   * `graph.gradients`), with the class prompts' fixed parts as feeds.
   */
  trainSetup(loss: TrainLossOptions, prompts: { readonly labels: readonly string[]; readonly template: string }): Promise<TrainSetup>;
  /** Writes the context: Dassl's `OUT/prompt_learner/model.pth.tar-<epoch>` (+ `checkpoint`) and `OUT/ctx.safetensors`. */
  save(out: string, info: PromptContextSaveInfo): { readonly checkpoint: string; readonly safetensors: string };
}
