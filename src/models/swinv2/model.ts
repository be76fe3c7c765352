import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FLOAT_DTYPES, writeSafetensors, type TensorToWrite } from '../../io/safetensors.js';
import { Session, type SessionOptions } from '../../runtime/session.js';
import { shapeString, tensor, type Tensor } from '../../tensor.js';
import { transpose } from '../clip/graph.js';
import { loadSwinV2Config, numLabels, type SwinV2Config } from './config.js';
import { blockPlan, swinV2ClassifierGraph, type BlockPlan } from './graph.js';
import { expectedSwinV2Tensors, isIgnoredBuffer, isSwappable, openTensorSource, validateSwinV2Checkpoint, type TensorSource } from './weights.js';
import { checkOverlay, openTensorFile, OverlayTensorSource } from '../../io/tensor-overlay.js';
import { checkReplacement } from '../replace-weight.js';

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
export class SwinV2Model {
  private readonly sessions = new Map<string, Promise<Session>>();
  private readonly overrides = new Map<string, Float32Array>();
  private readonly matrices = new Map<string, Tensor<'float32'>>();
  private readonly expected: Map<string, number[]>;

  private constructor(readonly dir: string, readonly config: SwinV2Config, private readonly checkpoint: TensorSource, private readonly options: SessionOptions) {
    this.expected = expectedSwinV2Tensors(config);
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

  private readonly source = (name: string): Float32Array => this.overrides.get(name) ?? this.checkpoint.readFloat32(name);

  /** Tensor reader by HF name: the current value (replacement or checkpoint), for graph builders. */
  get tensorSource(): (name: string) => Float32Array {
    return this.source;
  }

  /** Shape of a model tensor, HF layout (Linear weights are [out, in]). */
  weightShape(name: string): readonly number[] {
    const s = this.expected.get(name);
    if (!s) throw new RangeError(`'${name}' is not a weight of this Swin V2 model (${this.expected.size} tensors; e.g. 'swinv2.encoder.layers.0.blocks.0.intermediate.dense.weight')`);
    return s;
  }

  /** The current value of a tensor (a replacement if one is set), as a fresh float32 array. */
  getWeight(name: string): Float32Array {
    this.weightShape(name);
    const o = this.overrides.get(name);
    return o ? o.slice() : this.checkpoint.readFloat32(name);
  }

  /** The checkpoint's value of a tensor, ignoring replacements. */
  getOriginalWeight(name: string): Float32Array {
    this.weightShape(name);
    return this.checkpoint.readFloat32(name);
  }

  /**
   * Replaces a tensor by another of the same shape (kept by reference: do not mutate it).
   * Block Linear weights are graph inputs; any other tensor rebuilds the graphs on next use.
   */
  setWeight(name: string, value: Float32Array): void {
    const shape = this.weightShape(name);
    checkReplacement(name, shape, value);
    this.overrides.set(name, value);
    this.changed(name);
  }

  /** Restores one tensor (or, with no name, every tensor) to the checkpoint's value. */
  resetWeight(name?: string): void {
    const names = name === undefined ? [...this.overrides.keys()] : [name];
    for (const n of names) if (this.overrides.delete(n)) this.changed(n);
  }

  /** Names of the tensors currently replaced. */
  replacedWeights(): string[] {
    return [...this.overrides.keys()];
  }

  private changed(name: string): void {
    if (isSwappable(name)) {
      this.matrices.delete(name);
      return;
    }
    for (const [k, s] of [...this.sessions]) {
      this.sessions.delete(k);
      void s.then((x) => x.release()).catch(() => undefined);
    }
  }

  /** A block weight matrix as the graph takes it: current value, [in, out]. */
  matrix(name: string): Tensor<'float32'> {
    let m = this.matrices.get(name);
    if (!m) {
      const [out, inn] = this.weightShape(name) as [number, number];
      m = tensor('float32', transpose(this.source(name), out, inn), [inn, out], name);
      this.matrices.set(name, m);
    }
    return m;
  }

  // ---- running ---------------------------------------------------------------------------

  private session(height: number, width: number): Promise<Session> {
    const key = `${height}x${width}`;
    let s = this.sessions.get(key);
    if (!s) {
      s = Promise.resolve().then(() => Session.create(swinV2ClassifierGraph(this.config, this.source, { height, width }), `swinv2:${key}`, this.options));
      this.sessions.set(key, s);
      s.catch(() => this.sessions.delete(key));
    }
    return s;
  }

  /** pixel_values [B, C, H, W] (already preprocessed) → logits and SeTAR's logits_local. */
  async classify(pixelValues: Tensor<'float32'>): Promise<SwinV2Outputs> {
    const dims = pixelValues.dims;
    if (dims.length !== 4 || dims[1] !== this.config.num_channels) {
      throw new RangeError(`classify: pixel_values must be [B, ${this.config.num_channels}, H, W], got ${shapeString(dims)}`);
    }
    const s = await this.session(dims[2]!, dims[3]!);
    const feeds: Record<string, Tensor> = { pixel_values: pixelValues };
    for (const n of s.inputNames) if (n !== 'pixel_values') feeds[n] = this.matrix(n);
    const out = await s.run(feeds);
    return { logits: out.logits as Tensor<'float32'>, logits_local: out.logits_local as Tensor<'float32'> };
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
      const data = this.overrides.get(name) ?? this.checkpoint.readFloat32(name);
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
