import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FLOAT_DTYPES, writeSafetensors, type TensorToWrite } from '../../io/safetensors.js';
import type { Resident } from '../../runtime/device-tensor.js';
import { Session, type SessionOptions } from '../../runtime/session.js';
import { concatBatch, shapeString, type Tensor } from '../../tensor.js';
import { loadSwinV2Config, numLabels, type SwinV2Config } from './config.js';
import {
  blockPlan, hiddenShape, swinV2BlocksGraph, swinV2ClassifierGraph, swinV2EmbeddingsGraph, swinV2HeadGraph, type BlockPlan,
} from './graph.js';
import {
  expectedSwinV2Tensors, isIgnoredBuffer, isSwappable, matchSwinTargetModules, openTensorSource, swinWeightName, validateSwinV2Checkpoint, type TensorSource,
} from './weights.js';
import { checkOverlay, openTensorFile, OverlayTensorSource } from '../../io/tensor-overlay.js';
import { SwappableModel } from '../common/swappable-model.js';
import { hostHiddenStates, mapHiddenStates, type HiddenStates } from '../common/hidden-states.js';
import { SessionCache } from '../common/session-cache.js';
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
 * The block Linear weights are fed at each run, from device memory on webgpu ({@link setWeight}
 * swaps one at no cost); any other tensor is compiled into the graph, and replacing one rebuilds
 * it on next use.
 *
 * @example
 * const model = await SwinV2Model.load('swinv2-base');
 * const { logits, logits_local } = await model.classify(pixelValues); // [B, 1000], [B, 8, 8, 1000]
 */
export class SwinV2Model extends SwappableModel implements LowRankTarget {
  private readonly sessions = new SessionCache(MAX_SESSIONS);

  private constructor(dir: string, readonly config: SwinV2Config, private readonly checkpoint: TensorSource, private readonly options: SessionOptions) {
    super(dir, checkpoint, expectedSwinV2Tensors(config), { displayName: 'Swin V2', exampleWeight: 'swinv2.encoder.layers.0.blocks.0.intermediate.dense.weight' }, options);
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
    this.sessions.drop(() => true);
  }

  // ---- running ---------------------------------------------------------------------------

  /**
   * The compiled session a key names, built on first use: `classifier` (the whole model),
   * `embeddings`, `blocks:FROM:TO` or `head:FROM` (blocks FROM.. and the heads), each for an
   * input size. The most recently used few are kept: a search builds one per block. The hidden
   * states that `embeddings` and `blocks` give stay on the device.
   */
  private session(kind: string, height: number, width: number): Promise<Session> {
    const key = `${kind}:${height}x${width}`;
    const [k, a, b] = kind.split(':') as [string, string, string];
    const c = this.config;
    const build = (): Uint8Array => {
      if (k === 'embeddings') return swinV2EmbeddingsGraph(c, this.source, height, width);
      if (k === 'blocks') return swinV2BlocksGraph(c, this.source, Number(a), Number(b), height, width);
      if (k === 'head') return swinV2HeadGraph(c, this.source, Number(a), height, width);
      return swinV2ClassifierGraph(c, this.source, { height, width });
    };
    const deviceOutputs = k === 'embeddings' || k === 'blocks' ? ['hidden_states_out'] : [];
    return this.sessions.get(key, () => Session.create(build(), `swinv2:${key}`, { ...this.options, deviceOutputs }));
  }

  /** Runs a session, feeding the block weight matrices it takes. */
  private async run(s: Session, feeds: Record<string, Resident>): Promise<Record<string, Resident>> {
    return s.runResident(await this.withWeights(s.inputNames, feeds));
  }

  /** Runs `s` on each chunk (fed as `input`), keeping its `hidden_states_out` where it is. */
  private runChunks(s: Session, chunks: HiddenStates, input: string): Promise<HiddenStates> {
    return mapHiddenStates(chunks, async (x) => (await this.run(s, { [input]: x })).hidden_states_out!);
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
    const out = await this.run(await this.session('classifier', h, w), { pixel_values: pixelValues }) as Record<string, Tensor>;
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
    return this.takeHiddenStates(await this.embeddingsResident(pixelValues));
  }

  /** {@link embeddings}, the hidden states left where the device put them, in chunks of 8 images. */
  async embeddingsResident(pixelValues: Tensor<'float32'>): Promise<HiddenStates> {
    const [h, w] = this.checkPixels(pixelValues, 'embeddings');
    return this.runChunks(await this.session('embeddings', h, w), hostHiddenStates(pixelValues, CHUNK), 'pixel_values');
  }

  /** Hidden states entering block `from` → those entering block `to` (from ≤ to < blockCount). */
  async blocks(hidden: Tensor<'float32'>, from: number, to: number, height = this.config.image_size[0], width = this.config.image_size[1]): Promise<Tensor<'float32'>> {
    this.checkHidden(hidden.dims, from, to, height, width);
    if (from === to) return hidden;
    return this.takeHiddenStates(await this.blocksResident(hostHiddenStates(hidden, CHUNK), from, to, height, width));
  }

  /** {@link blocks} on hidden states wherever they are; the result stays there (from = to: the input itself). */
  async blocksResident(hidden: HiddenStates, from: number, to: number, height = this.config.image_size[0], width = this.config.image_size[1]): Promise<HiddenStates> {
    for (const c of hidden.chunks) this.checkHidden(c.dims, from, to, height, width);
    if (from === to) return hidden;
    return this.runChunks(await this.session(`blocks:${from}:${to}`, height, width), hidden, 'hidden_states');
  }

  /** Hidden states entering block `from` → logits and logits_local (blocks from.. and the heads). */
  async classifyFrom(hidden: Tensor<'float32'>, from: number, height = this.config.image_size[0], width = this.config.image_size[1]): Promise<SwinV2Outputs> {
    this.checkHidden(hidden.dims, from, from, height, width);
    return this.classifyFromResident(hostHiddenStates(hidden, CHUNK), from, height, width);
  }

  /** {@link classifyFrom} on hidden states wherever they are; the logits come to the host. */
  async classifyFromResident(hidden: HiddenStates, from: number, height = this.config.image_size[0], width = this.config.image_size[1]): Promise<SwinV2Outputs> {
    for (const c of hidden.chunks) this.checkHidden(c.dims, from, from, height, width);
    const s = await this.session(`head:${from}`, height, width);
    const logits: Tensor<'float32'>[] = [];
    const local: Tensor<'float32'>[] = [];
    for (const x of hidden.chunks) {
      const out = await this.run(s, { hidden_states: x });
      logits.push(out.logits as Tensor<'float32'>);
      local.push(out.logits_local as Tensor<'float32'>);
    }
    return { logits: concatBatch(logits), logits_local: concatBatch(local) };
  }

  private checkHidden(dims: readonly number[], from: number, to: number, height: number, width: number): void {
    const n = this.blockCount;
    if (!(Number.isInteger(from) && Number.isInteger(to) && from >= 0 && from <= to && to < n)) {
      throw new RangeError(`Swin V2 blocks [${from}, ${to}) out of range: need 0 <= from <= to <= ${n - 1}`);
    }
    const [t, d] = hiddenShape(this.plan(height, width), from);
    if (dims.length !== 3 || dims[1] !== t || dims[2] !== d) {
      throw new RangeError(`'hidden_states' entering block ${from} must be [batch, ${t}, ${d}], got ${shapeString(dims)}`);
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

  /** Releases the sessions (their device outputs with them), the device copies of the weights and the checkpoint. */
  async dispose(): Promise<void> {
    await this.sessions.release();
    await this.clearMatrices();
    this.checkpoint.close();
  }
}
