import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FLOAT_DTYPES, writeSafetensors, type TensorToWrite } from '../../io/safetensors.js';
import { Session, type SessionOptions } from '../../runtime/session.js';
import { byChunks, shapeString, type Tensor } from '../../tensor.js';
import { loadSwinV2Config, numLabels, type SwinV2Config } from './config.js';
import {
  blockPlan, hiddenShape, swinV2BlocksGraph, swinV2ClassifierGraph, swinV2EmbeddingsGraph, swinV2HeadGraph, type BlockPlan,
} from './graph.js';
import {
  expectedSwinV2Tensors, isIgnoredBuffer, isSwappable, matchSwinTargetModules, openTensorSource, swinWeightName, validateSwinV2Checkpoint, type TensorSource,
} from './weights.js';
import { checkOverlay, openTensorFile, OverlayTensorSource } from '../../io/tensor-overlay.js';
import { SwappableModel } from '../common/swappable-model.js';
import type { LowRankSetting, LowRankTarget } from '../../lowrank/settings.js';

/** Compiled sessions kept alive (least recently used ones are released). */
const MAX_SESSIONS = 6;
/** Rows per run of the piecewise methods: each session's arena is sized by its largest batch. */
const CHUNK = 8;

/** Outputs of {@link SwinV2Model.classify}. */
export interface SwinV2Outputs {
  /** [B, labels] */
  readonly logits: Tensor<'float32'>;
  /** [B, h, w, labels]: SeTAR's local logits (value path of the last block of the last stage). */
  readonly logits_local: Tensor<'float32'>;
}

/** Options of {@link SwinV2Model.load}. */
export interface SwinV2ModelOptions extends SessionOptions {
  /**
   * A whole state dict to load over the folder's weights (the official `clip_ckpt`, e.g. a
   * fine-tuning's `finetuned_model.pth`): a torch zip or safetensors file with the model's own names.
   */
  readonly clipCkpt?: string;
}

/**
 * An HF `Swinv2ForImageClassification` running on ONNX Runtime, with SeTAR's local logits.
 * The block Linear weights are fed at each run ({@link setWeight} swaps one at no cost); any
 * other tensor is compiled into the graph, and replacing one rebuilds it on next use.
 *
 * @example
 * const model = await SwinV2Model.load('swinv2-base');
 * const { logits, logits_local } = await model.classify(pixelValues); // [B, 1000], [B, 8, 8, 1000]
 */
export class SwinV2Model extends SwappableModel implements LowRankTarget {
  private readonly sessions = new Map<string, Promise<Session>>();

  private constructor(dir: string, readonly config: SwinV2Config, private readonly checkpoint: TensorSource, private readonly options: SessionOptions) {
    super(dir, checkpoint, expectedSwinV2Tensors(config), { displayName: 'Swin V2', exampleWeight: 'swinv2.encoder.layers.0.blocks.0.intermediate.dense.weight' });
  }

  /**
   * Loads `dir/config.json` and `dir/model.safetensors` (or a sharded index, or else
   * `dir/pytorch_model.bin` or its sharded index), then `options.clipCkpt` over it; buffers such as
   * `relative_coords_table` are ignored.
   */
  static async load(dir: string, options: SwinV2ModelOptions = {}): Promise<SwinV2Model> {
    const config = await loadSwinV2Config(dir);
    let checkpoint = await openTensorSource(dir);
    try {
      if (options.clipCkpt) {
        const overlay = openTensorFile(options.clipCkpt, { ignore: isIgnoredBuffer });
        checkpoint = new OverlayTensorSource(checkpoint, overlay);
        checkOverlay(overlay, expectedSwinV2Tensors(config), { complete: true, label: `clip_ckpt '${options.clipCkpt}'`, against: `the Swin V2 model in '${dir}'` });
      }
      validateSwinV2Checkpoint(checkpoint, expectedSwinV2Tensors(config));
    } catch (e) {
      checkpoint.close();
      throw e;
    }
    return new SwinV2Model(dir, config, checkpoint, options);
  }

  get numLabels(): number {
    return numLabels(this.config);
  }

  /** The per-block window/shift/padding plan for an input of this size (default: config.image_size). */
  plan(height = this.config.image_size[0], width = this.config.image_size[1]): BlockPlan[] {
    return blockPlan(this.config, height, width);
  }

  // ---- weights ---------------------------------------------------------------------------

  /** Tensor reader by HF name: the current value (replacement or checkpoint), for graph builders. */
  get tensorSource(): (name: string) => Float32Array {
    return this.source;
  }

  /** The HF tensor a SeTAR setting names (SPEC §2): `['visual', 'W_up', [3, 1], 0.1]` → `swinv2.encoder.layers.3.blocks.1.intermediate.dense.weight`. */
  weightName(setting: LowRankSetting): string {
    return swinWeightName(setting, this.config.depths);
  }

  /** The block Linear layers (HF prefixes) that PEFT-style `target_modules` select, e.g. `['intermediate.dense']`. */
  matchTargetModules(targets: readonly string[]): string[] {
    return matchSwinTargetModules(this.config.depths, targets);
  }

  /** Block Linear weights are graph inputs; any other tensor rebuilds the graphs on next use. */
  isSwappable(name: string): boolean {
    return isSwappable(name);
  }

  protected onReplaced(): void {
    for (const [k, s] of [...this.sessions]) {
      this.sessions.delete(k);
      void s.then((x) => x.release()).catch(() => undefined);
    }
  }

  // ---- running ---------------------------------------------------------------------------

  /**
   * The compiled session a key names, built on first use: `classifier` (the whole model),
   * `embeddings`, `blocks:FROM:TO` or `head:FROM` (blocks FROM.. and the heads), each for an
   * input size. The most recently used few are kept: a search builds one per block.
   */
  private session(kind: string, height: number, width: number): Promise<Session> {
    const key = `${kind}:${height}x${width}`;
    let s = this.sessions.get(key);
    if (s) {
      this.sessions.delete(key);
      this.sessions.set(key, s);
      return s;
    }
    const [k, a, b] = kind.split(':') as [string, string, string];
    const c = this.config;
    const build = (): Uint8Array => {
      if (k === 'embeddings') return swinV2EmbeddingsGraph(c, this.source, height, width);
      if (k === 'blocks') return swinV2BlocksGraph(c, this.source, Number(a), Number(b), height, width);
      if (k === 'head') return swinV2HeadGraph(c, this.source, Number(a), height, width);
      return swinV2ClassifierGraph(c, this.source, { height, width });
    };
    s = Promise.resolve().then(() => Session.create(build(), `swinv2:${key}`, this.options));
    this.sessions.set(key, s);
    s.catch(() => this.sessions.delete(key));
    for (const [old, o] of this.sessions) {
      if (this.sessions.size <= MAX_SESSIONS) break;
      this.sessions.delete(old);
      void o.then((x) => x.release()).catch(() => undefined);
    }
    return s;
  }

  /** Runs a session, feeding the block weight matrices it takes. */
  private async run(s: Session, feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
    const all = { ...feeds };
    for (const n of s.inputNames) if (!(n in all)) all[n] = this.matrix(n);
    return s.run(all);
  }

  private checkPixels(pixelValues: Tensor<'float32'>, what: string): [number, number] {
    const dims = pixelValues.dims;
    if (dims.length !== 4 || dims[1] !== this.config.num_channels) {
      throw new RangeError(`${what}: pixel_values must be [B, ${this.config.num_channels}, H, W], got ${shapeString(dims)}`);
    }
    return [dims[2]!, dims[3]!];
  }

  /** pixel_values [B, C, H, W] (already preprocessed) → logits and SeTAR's logits_local. */
  async classify(pixelValues: Tensor<'float32'>): Promise<SwinV2Outputs> {
    const [h, w] = this.checkPixels(pixelValues, 'classify');
    const out = await this.run(await this.session('classifier', h, w), { pixel_values: pixelValues });
    return { logits: out.logits as Tensor<'float32'>, logits_local: out.logits_local as Tensor<'float32'> };
  }

  // The classifier in pieces, so a search can keep the hidden states below the block it changes.
  // Blocks are numbered in order over all stages (stage 0's first block is 0); a stage's patch
  // merging runs after its last block. `height`/`width` are the input image's (default config.image_size).

  /** The number of blocks over all stages. */
  get blockCount(): number {
    return this.config.depths.reduce((a, b) => a + b, 0);
  }

  /** pixel_values → hidden states entering block 0, [B, tokens, embed_dim]. */
  async embeddings(pixelValues: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const [h, w] = this.checkPixels(pixelValues, 'embeddings');
    const s = await this.session('embeddings', h, w);
    return byChunks(pixelValues, CHUNK, async (px) => (await this.run(s, { pixel_values: px })).hidden_states_out as Tensor<'float32'>);
  }

  /** Hidden states entering block `from` → those entering block `to` (from ≤ to < blockCount). */
  async blocks(hidden: Tensor<'float32'>, from: number, to: number, height = this.config.image_size[0], width = this.config.image_size[1]): Promise<Tensor<'float32'>> {
    this.checkHidden(hidden, from, to, height, width);
    if (from === to) return hidden;
    const s = await this.session(`blocks:${from}:${to}`, height, width);
    return byChunks(hidden, CHUNK, async (x) => (await this.run(s, { hidden_states: x })).hidden_states_out as Tensor<'float32'>);
  }

  /** Hidden states entering block `from` → logits and logits_local (blocks from.. and the heads). */
  async classifyFrom(hidden: Tensor<'float32'>, from: number, height = this.config.image_size[0], width = this.config.image_size[1]): Promise<SwinV2Outputs> {
    this.checkHidden(hidden, from, from, height, width);
    const s = await this.session(`head:${from}`, height, width);
    return byChunks(hidden, CHUNK, async (x) => {
      const out = await this.run(s, { hidden_states: x });
      return { logits: out.logits as Tensor<'float32'>, logits_local: out.logits_local as Tensor<'float32'> };
    });
  }

  private checkHidden(hidden: Tensor<'float32'>, from: number, to: number, height: number, width: number): void {
    const n = this.blockCount;
    if (!(Number.isInteger(from) && Number.isInteger(to) && from >= 0 && from <= to && to < n)) {
      throw new RangeError(`Swin V2 blocks [${from}, ${to}) out of range: need 0 <= from <= to <= ${n - 1}`);
    }
    const [t, d] = hiddenShape(this.plan(height, width), from);
    if (hidden.dims.length !== 3 || hidden.dims[1] !== t || hidden.dims[2] !== d) {
      throw new RangeError(`'hidden_states' entering block ${from} must be [batch, ${t}, ${d}], got ${shapeString(hidden.dims)}`);
    }
  }

  /**
   * Writes the model, replacements included, as an HF folder: `model.safetensors` (every tensor
   * of the checkpoint, float dtypes kept; recomputed buffers omitted) plus `config.json` and
   * `preprocessor_config.json` when the source folder has them.
   */
  save(dir: string): void {
    mkdirSync(dir, { recursive: true });
    const tensors: Record<string, TensorToWrite> = {};
    for (const [name, shape] of this.expected) {
      const e = this.checkpoint.entry(name);
      const dtype = FLOAT_DTYPES.includes(e.dtype) ? e.dtype : 'F32';
      const data = this.replacement(name) ?? this.checkpoint.readFloat32(name);
      tensors[name] = { dtype, shape, data: dtype === 'F64' ? Float64Array.from(data) : data };
    }
    writeSafetensors(join(dir, 'model.safetensors'), tensors);
    for (const f of ['config.json', 'preprocessor_config.json']) {
      if (existsSync(join(this.dir, f))) copyFileSync(join(this.dir, f), join(dir, f));
    }
  }

  /** Releases the sessions and the checkpoint. */
  async dispose(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) await s.then((x) => x.release()).catch(() => undefined);
    this.checkpoint.close();
  }
}
