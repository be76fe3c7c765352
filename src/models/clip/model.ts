import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { FLOAT_DTYPES, writeSafetensors, type TensorToWrite } from '../../io/safetensors.js';
import { openTensorSource, type TensorSource } from '../../io/tensor-source.js';
import { checkOverlay, openTensorFile, OverlayTensorSource } from '../../io/tensor-overlay.js';
import type { Resident } from '../../runtime/device-tensor.js';
import { Session, type SessionOptions } from '../../runtime/session.js';
import { byChunks, concatBatch, shapeString, tensor, type Tensor } from '../../tensor.js';
import { loadClipConfig, gridSize, type ClipConfig } from './config.js';
import {
  encoderLayersGraph, textTowerGraph, visionEmbeddingsGraph, visionTowerGraph,
  type BlockOptions,
} from './graph.js';
import type { TextEmbeddingsWeights } from './graph.js';
import {
  clipWeightName, expectedClipTensors, isIgnoredBuffer, isSwappable, layerRun, matchClipTargetModules, sessionKeyOf, textEmbeddingsWeights, textHeadWeights,
  validateClipCheckpoint,
  visionEmbeddingsWeights, visionHeadWeights, type Tower,
} from './weights.js';
import { checkReplacement, SwappableModel } from '../common/swappable-model.js';
import { disposeHiddenStates, hostHiddenStates, mapHiddenStates, type HiddenStates } from '../common/hidden-states.js';
import { SessionCache } from '../common/session-cache.js';
import type { LowRankSetting, LowRankTarget } from '../../lowrank/settings.js';

/** Files of an HF model folder that travel with the weights when a model is saved. */
const MODEL_SIDE_FILES = ['config.json', 'vocab.json', 'merges.txt', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'preprocessor_config.json'];

/** Options of {@link ClipModel.load}. */
export interface ClipModelOptions extends SessionOptions {
  /**
   * Largest number of images sent through the vision sessions at once; bigger calls are split.
   * Each session keeps an arena sized for its largest batch, so this bounds resident memory.
   */
  readonly maxVisionBatch?: number;
  /** Largest number of prompts per text batch (prompts are sorted by length and padded per batch). */
  readonly maxTextBatch?: number;
  /** Compiled sessions kept alive (least recently used ones are released); default 6. */
  readonly maxSessions?: number;
  /**
   * A whole CLIPModel state dict to load over the folder's weights (the official `clip_ckpt`, e.g.
   * a fine-tuning's `finetuned_model.pth`): a torch zip or safetensors file with HF names. Its
   * names and shapes are checked against the model; every mismatch is listed in one error.
   */
  readonly clipCkpt?: string;
}

/** Outputs of the image tower (HF names, float32, not normalised). */
export interface ImageFeatures {
  /** [B, P] */
  readonly image_embeds: Tensor<'float32'>;
  /** [B, grid, grid, P], GL-MCM local features (SPEC §1); absent when not requested. */
  readonly image_embeds_local?: Tensor<'float32'>;
}

/** Token ids of a batch of prompts, [batch, length] row-major, with each row's end-token position. */
export interface TokenIds {
  readonly ids: Int32Array | BigInt64Array;
  readonly batch: number;
  readonly length: number;
}

/**
 * A CLIP model (HF `CLIPModel` layout) running on ONNX Runtime.
 *
 * Weight matrices (the ones SeTAR changes) are read once from the checkpoint and fed to the
 * graphs at each run (from device memory on webgpu), so {@link setWeight} swaps one at no cost;
 * other tensors (norms, biases, embeddings) are compiled into the graphs. A tower can be run in
 * pieces — embeddings, a run of layers ({@link visionLayers}), the rest of the tower from any
 * layer ({@link visionFrom}) — so callers can cache the hidden states below a layer and restart
 * from there; the `…Resident` forms keep those hidden states where the device left them.
 *
 * @example
 * const model = await ClipModel.load('clip-vit-base-patch16');
 * const { image_embeds, image_embeds_local } = await model.encodeImages(pixelValues); // [B, 512], [B, 14, 14, 512]
 */
export class ClipModel extends SwappableModel implements LowRankTarget {
  private readonly sessions: SessionCache;
  private textTable: TextEmbeddingsWeights | null = null;
  /** The stored (log) logit scale; logits use exp() of it. */
  readonly logitScale: number;

  private constructor(
    dir: string,
    readonly config: ClipConfig,
    private readonly checkpoint: TensorSource,
    private readonly options: ClipModelOptions,
  ) {
    super(dir, checkpoint, expectedClipTensors(config), { displayName: 'CLIP', exampleWeight: 'vision_model.encoder.layers.0.mlp.fc1.weight' }, options);
    this.sessions = new SessionCache(options.maxSessions ?? 6);
    this.logitScale = checkpoint.readFloat32('logit_scale')[0]!;
  }

  /**
   * Loads `dir/config.json` and the weights (`model.safetensors` or its sharded index, else
   * `pytorch_model.bin` or its sharded index; `position_ids` buffers ignored), then
   * `options.clipCkpt` over them, and checks every tensor's shape and dtype. Sessions are compiled
   * on first use (or by {@link prepare}).
   */
  static async load(dir: string, options: ClipModelOptions = {}): Promise<ClipModel> {
    const config = await loadClipConfig(dir);
    let checkpoint = await openTensorSource(dir, { ignore: isIgnoredBuffer });
    try {
      if (options.clipCkpt) {
        const overlay = openTensorFile(options.clipCkpt, { ignore: isIgnoredBuffer });
        checkpoint = new OverlayTensorSource(checkpoint, overlay);
        checkOverlay(overlay, expectedClipTensors(config), { complete: true, label: `clip_ckpt '${options.clipCkpt}'`, against: `the CLIP model in '${dir}'` });
      }
      validateClipCheckpoint(checkpoint, config);
    } catch (e) {
      checkpoint.close();
      throw e;
    }
    return new ClipModel(dir, config, checkpoint, options);
  }

  get visionLayerCount(): number {
    return this.config.vision_config.num_hidden_layers;
  }

  get textLayerCount(): number {
    return this.config.text_config.num_hidden_layers;
  }

  get grid(): number {
    return gridSize(this.config.vision_config);
  }

  /** Compiles the sessions of a plain forward pass and reads every weight now (loading benchmarks, servers). */
  async prepare(): Promise<void> {
    this.textTables();
    const keys = ['vision:embeddings', 'vision:tower:0:1', 'text:tower:0'];
    for (const key of keys) {
      const s = await this.session(key);
      for (const name of s.inputNames) if (isSwappable(name)) await this.residentMatrix(name);
    }
  }

  // ---- weights ---------------------------------------------------------------------------

  /** The HF tensor a SeTAR setting names (SPEC §2), e.g. `['visual', 'W_up', 11, 0.1]` → `vision_model.encoder.layers.11.mlp.fc1.weight`. */
  weightName(setting: LowRankSetting): string {
    return clipWeightName(setting, { visual: this.visionLayerCount, text: this.textLayerCount });
  }

  /** The Linear layers (HF prefixes) that PEFT's `target_modules` select, e.g. `['mlp.fc1']`. */
  matchTargetModules(targets: readonly string[]): string[] {
    return matchClipTargetModules(this.config, targets);
  }

  /**
   * Weight matrices (q/k/v/out projections, fc1, fc2, the two projections) are graph inputs:
   * replacing one costs a transpose and nothing else.
   */
  isSwappable(name: string): boolean {
    return isSwappable(name);
  }

  /**
   * Replaces a tensor by another of the same shape (see {@link SwappableModel.setWeight}); any
   * tensor but a weight matrix rebuilds its session on next use. `logit_scale` is not part of any
   * graph and cannot be replaced.
   */
  override setWeight(name: string, value: Float32Array): void {
    if (name === 'logit_scale') {
      checkReplacement(name, this.weightShape(name), value);
      throw new RangeError(`setWeight: 'logit_scale' is not part of any graph; it cannot be replaced`);
    }
    super.setWeight(name, value);
  }

  /** Drops the compiled sessions that hold `name` as a constant (any session of its tower). */
  protected onReplaced(name: string): void {
    const key = sessionKeyOf(name, this.config);
    if (key === 'text:embeddings') this.textTable = null;
    if (key === null) return;
    const tower = key.split(':')[0]!;
    this.sessions.drop((k) => k.startsWith(`${tower}:`) && (key !== `${tower}:embeddings` || k === key));
  }

  // ---- sessions --------------------------------------------------------------------------

  private blockOptions(tower: Tower): BlockOptions {
    const tc = tower === 'vision' ? this.config.vision_config : this.config.text_config;
    return { heads: tc.num_attention_heads, eps: tc.layer_norm_eps, act: tc.hidden_act, causal: tower === 'text' };
  }


  /**
   * Builds the graph a session key names: `T:embeddings`, `T:layers:FROM:TO` (middle layers
   * [FROM, TO)), `vision:tower:FROM:LOCAL` or `text:tower:FROM` (layer FROM to the embeddings).
   */
  private graph(key: string): Uint8Array {
    const [tower, kind, a, b] = key.split(':') as [Tower, string, string, string];
    const c = this.config;
    if (kind === 'embeddings') {
      const v = c.vision_config;
      return visionEmbeddingsGraph(visionEmbeddingsWeights(this.source), {
        hidden: v.hidden_size, channels: v.num_channels, patch: v.patch_size, grid: this.grid, eps: v.layer_norm_eps,
      });
    }
    const o = this.blockOptions(tower);
    const from = Number(a);
    if (kind === 'layers') return encoderLayersGraph(layerRun(this.source, c, tower, from, Number(b)), o, key);
    const n = tower === 'vision' ? this.visionLayerCount : this.textLayerCount;
    const run = layerRun(this.source, c, tower, from, n);
    if (tower === 'vision') return visionTowerGraph(run, visionHeadWeights(this.source, c), o, { grid: this.grid, local: b === '1', name: key });
    return textTowerGraph(run, textHeadWeights(this.source, c), o, key);
  }

  /**
   * Runs a session, feeding the weight matrices it takes. Hidden states between pieces of a tower
   * (`hidden_states_out` of the embeddings and of runs of middle layers) stay on the device.
   */
  private async run(key: string, feeds: Record<string, Resident>): Promise<Record<string, Resident>> {
    const s = await this.session(key);
    return s.runResident(await this.withWeights(s.inputNames, feeds));
  }

  /** The compiled session for a key; the few used last are kept (`maxSessions`). */
  private session(key: string): Promise<Session> {
    const kind = key.split(':')[1];
    const deviceOutputs = kind === 'embeddings' || kind === 'layers' ? ['hidden_states_out'] : [];
    return this.sessions.get(key, () => Session.create(this.graph(key), key, { memoryArena: true, ...this.options, deviceOutputs }));
  }

  /** Runs `key` on each chunk (fed as `input`), keeping its `hidden_states_out` where it is. */
  private runChunks(key: string, hidden: HiddenStates, input = 'hidden_states'): Promise<HiddenStates> {
    return mapHiddenStates(hidden, async (h) => (await this.run(key, { [input]: h })).hidden_states_out!);
  }

  // ---- vision tower ----------------------------------------------------------------------

  private checkPixels(px: Tensor<'float32'>): void {
    const v = this.config.vision_config;
    const [b, c, h, w] = px.dims;
    if (px.dims.length !== 4 || c !== v.num_channels || h !== v.image_size || w !== v.image_size) {
      throw new RangeError(`'pixel_values' must be [batch, ${v.num_channels}, ${v.image_size}, ${v.image_size}], got ${shapeString(px.dims)}`);
    }
    if (!b) throw new RangeError(`'pixel_values' has an empty batch`);
  }

  /** pixel_values [B, 3, H, W] → hidden states entering layer 0, [B, 1+grid², D]. */
  async visionEmbeddings(pixelValues: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    return this.takeHiddenStates(await this.visionEmbeddingsResident(pixelValues));
  }

  /** {@link visionEmbeddings}, the hidden states left where the device put them, one chunk per `maxVisionBatch` images. */
  async visionEmbeddingsResident(pixelValues: Tensor<'float32'>): Promise<HiddenStates> {
    this.checkPixels(pixelValues);
    return this.runChunks('vision:embeddings', hostHiddenStates(pixelValues, this.visionChunk), 'pixel_values');
  }

  /** Runs vision layers [from, to) on hidden states (to ≤ L − 1: the last layer runs with the head, in {@link visionFrom}). */
  async visionLayers(hidden: Tensor<'float32'>, from: number, to: number): Promise<Tensor<'float32'>> {
    this.checkRange('vision', from, to, this.visionLayerCount - 1);
    if (from === to) return hidden;
    return this.takeHiddenStates(await this.visionLayersResident(hostHiddenStates(hidden, this.visionChunk), from, to));
  }

  /** {@link visionLayers} on hidden states wherever they are; the result stays there (from = to: the input itself). */
  async visionLayersResident(hidden: HiddenStates, from: number, to: number): Promise<HiddenStates> {
    this.checkRange('vision', from, to, this.visionLayerCount - 1);
    if (from === to) return hidden;
    return this.runChunks(`vision:layers:${from}:${to}`, hidden);
  }

  /** Runs the vision tower from the hidden states entering layer `from` to the embeddings. */
  async visionFrom(hidden: Tensor<'float32'>, from: number, options: { local?: boolean } = {}): Promise<ImageFeatures> {
    return this.visionFromResident(hostHiddenStates(hidden, this.visionChunk), from, options);
  }

  /** {@link visionFrom} on hidden states wherever they are; the features come to the host. */
  async visionFromResident(hidden: HiddenStates, from: number, options: { local?: boolean } = {}): Promise<ImageFeatures> {
    this.checkRange('vision', from, from, this.visionLayerCount - 1);
    const local = options.local ?? true;
    const key = `vision:tower:${from}:${local ? 1 : 0}`;
    const globals: Tensor<'float32'>[] = [];
    const locals: Tensor<'float32'>[] = [];
    for (const h of hidden.chunks) {
      const out = await this.run(key, { hidden_states: h });
      globals.push(out.image_embeds as Tensor<'float32'>);
      if (local) locals.push(out.image_embeds_local as Tensor<'float32'>);
    }
    return { image_embeds: concatBatch(globals), ...(local ? { image_embeds_local: concatBatch(locals) } : {}) };
  }

  private get visionChunk(): number {
    return this.options.maxVisionBatch ?? 8;
  }

  /**
   * pixel_values [B, 3, H, W] (already preprocessed) → `image_embeds` [B, P] and, unless
   * `local: false`, `image_embeds_local` [B, grid, grid, P].
   */
  async encodeImages(pixelValues: Tensor<'float32'>, options: { local?: boolean } = {}): Promise<ImageFeatures> {
    this.checkPixels(pixelValues);
    // chunk by chunk from pixels to features, so only one chunk's hidden states exist at a time
    return byChunks(pixelValues, this.visionChunk, async (px) => {
      const h = await this.visionEmbeddingsResident(px);
      try {
        return await this.visionFromResident(h, 0, options);
      } finally {
        disposeHiddenStates(h);
      }
    });
  }

  // ---- text tower ------------------------------------------------------------------------

  /**
   * Where each prompt is pooled: transformers' rule — the first end token, or argmax(ids) when
   * `eos_token_id` is 2 (the legacy OpenAI hub configs; their end token 49407 is also the largest id).
   */
  poolPositions(t: TokenIds): Int32Array {
    const eos = this.config.text_config.eos_token_id;
    const out = new Int32Array(t.batch);
    for (let b = 0; b < t.batch; b++) {
      let best = 0;
      let bestVal = -Infinity;
      let found = -1;
      for (let i = 0; i < t.length; i++) {
        const id = Number(t.ids[b * t.length + i]);
        if (id > bestVal) { bestVal = id; best = i; }
        if (found < 0 && id === eos) found = i;
      }
      out[b] = eos === 2 ? best : found >= 0 ? found : t.length - 1;
    }
    return out;
  }

  private checkIds(t: TokenIds): void {
    const tc = this.config.text_config;
    if (t.ids.length !== t.batch * t.length) {
      throw new RangeError(`'input_ids': ${t.ids.length} ids for [${t.batch}, ${t.length}]`);
    }
    if (t.length > tc.max_position_embeddings) {
      throw new RangeError(`'input_ids' length ${t.length} exceeds max_position_embeddings ${tc.max_position_embeddings}`);
    }
    for (let i = 0; i < t.ids.length; i++) {
      const id = Number(t.ids[i]);
      if (!(id >= 0 && id < tc.vocab_size)) throw new RangeError(`'input_ids' holds id ${id} at flat index ${i}; allowed [0, ${tc.vocab_size})`);
    }
  }

  /**
   * The token and position tables, held in JS: the lookup is a row copy and an add, and an ONNX
   * Gather would make ONNX Runtime copy the 49408-row table several times while compiling.
   */
  private textTables(): TextEmbeddingsWeights {
    if (!this.textTable) this.textTable = textEmbeddingsWeights(this.source);
    return this.textTable;
  }

  /**
   * The token table [vocab, D] and position table [max_position_embeddings, D] as the model uses
   * them (replacements applied), for callers that build text-layer-0 inputs themselves (LoCoOp
   * prompts). Shared with the model: read only.
   */
  textEmbeddingTables(): TextEmbeddingsWeights {
    return this.textTables();
  }

  /** input_ids [B, L] → hidden states entering text layer 0 (token + position embeddings, float32). */
  async textEmbeddings(t: TokenIds): Promise<Tensor<'float32'>> {
    this.checkIds(t);
    const { token_embedding: tok, position_embedding: pos } = this.textTables();
    const d = this.config.text_config.hidden_size;
    const out = new Float32Array(t.batch * t.length * d);
    for (let r = 0; r < t.batch * t.length; r++) {
      const id = Number(t.ids[r]);
      const l = r % t.length;
      for (let i = 0; i < d; i++) out[r * d + i] = tok[id * d + i]! + pos[l * d + i]!;
    }
    return tensor('float32', out, [t.batch, t.length, d], 'text_embeddings');
  }

  /** Host hidden states entering text layer 0 (a prompt encoder's output) in the chunks the text sessions take. */
  textHiddenStates(hidden: Tensor<'float32'>): HiddenStates {
    return hostHiddenStates(hidden, this.textChunk);
  }

  /** {@link textEmbeddings} as hidden states (on the host: the lookup runs in JS), one chunk per `maxTextBatch` prompts. */
  async textEmbeddingsResident(t: TokenIds): Promise<HiddenStates> {
    return hostHiddenStates(await this.textEmbeddings(t), this.textChunk);
  }

  /** Runs text layers [from, to) (to < L). */
  async textLayers(hidden: Tensor<'float32'>, from: number, to: number): Promise<Tensor<'float32'>> {
    this.checkRange('text', from, to, this.textLayerCount - 1);
    if (from === to) return hidden;
    return this.takeHiddenStates(await this.textLayersResident(hostHiddenStates(hidden, this.textChunk), from, to));
  }

  /** {@link textLayers} on hidden states wherever they are; the result stays there (from = to: the input itself). */
  async textLayersResident(hidden: HiddenStates, from: number, to: number): Promise<HiddenStates> {
    this.checkRange('text', from, to, this.textLayerCount - 1);
    if (from === to) return hidden;
    return this.runChunks(`text:layers:${from}:${to}`, hidden);
  }

  /** Runs the text tower from the hidden states entering layer `from`, pooled at `positions` [B] → `text_embeds` [B, P]. */
  async textFrom(hidden: Tensor<'float32'>, from: number, positions: Int32Array): Promise<Tensor<'float32'>> {
    return this.textFromResident(hostHiddenStates(hidden, this.textChunk), from, positions);
  }

  /** {@link textFrom} on hidden states wherever they are (`positions` over all their rows, in order). */
  async textFromResident(hidden: HiddenStates, from: number, positions: Int32Array): Promise<Tensor<'float32'>> {
    this.checkRange('text', from, from, this.textLayerCount - 1);
    const parts: Tensor<'float32'>[] = [];
    let start = 0;
    for (const h of hidden.chunks) {
      const [b, l] = h.dims as [number, number];
      const idx = new BigInt64Array(b);
      for (let i = 0; i < b; i++) idx[i] = BigInt(i * l + positions[start + i]!);
      start += b;
      parts.push((await this.run(`text:tower:${from}`, { hidden_states: h, pool_index: tensor('int64', idx, [b], 'pool_index') })).text_embeds as Tensor<'float32'>);
    }
    return concatBatch(parts);
  }

  private get textChunk(): number {
    return this.options.maxTextBatch ?? 128;
  }

  /** Token ids (one padded batch) → `text_embeds` [B, P]. */
  async encodeTokenIds(t: TokenIds): Promise<Tensor<'float32'>> {
    return this.textFrom(await this.textEmbeddings(t), 0, this.poolPositions(t));
  }

  /**
   * Encodes prompts given as unpadded id rows (each ending in its end token). Rows are sorted by
   * length and batched, each batch padded only to its own longest row, then results are put back
   * in the original order: with short prompts most of the text tower's cost is padding otherwise.
   */
  async encodeTokenRows(rows: readonly (readonly number[])[]): Promise<Tensor<'float32'>> {
    const p = this.config.projection_dim;
    const out = new Float32Array(rows.length * p);
    const order = rows.map((_, i) => i).sort((a, b) => rows[a]!.length - rows[b]!.length || a - b);
    const chunk = this.options.maxTextBatch ?? 128;
    const pad = this.config.text_config.eos_token_id;
    for (let start = 0; start < order.length; start += chunk) {
      const idx = order.slice(start, start + chunk);
      const length = Math.max(...idx.map((i) => rows[i]!.length));
      const ids = new Int32Array(idx.length * length).fill(pad);
      idx.forEach((r, b) => ids.set(rows[r]!, b * length));
      const emb = await this.encodeTokenIds({ ids, batch: idx.length, length });
      idx.forEach((r, b) => out.set(emb.data.subarray(b * p, (b + 1) * p), r * p));
    }
    return tensor('float32', out, [rows.length, p], 'text_embeds');
  }

  private checkRange(tower: Tower, from: number, to: number, max: number): void {
    if (!(Number.isInteger(from) && Number.isInteger(to) && from >= 0 && from <= to && to <= max)) {
      throw new RangeError(`${tower} layers [${from}, ${to}) out of range: need 0 <= from <= to <= ${max}`);
    }
  }

  /**
   * Writes the model with its current weights (replacements applied) as an HF-layout folder:
   * `model.safetensors` with the checkpoint's tensor names and dtypes, plus the config,
   * tokenizer and preprocessor files copied from the source folder — loadable by setar and by
   * transformers' `CLIPModel.from_pretrained`.
   */
  save(dir: string): void {
    mkdirSync(dir, { recursive: true });
    const tensors: Record<string, TensorToWrite> = {};
    for (const name of this.checkpoint.names()) {
      const e = this.checkpoint.entry(name);
      const o = this.replacement(name);
      if (o || FLOAT_DTYPES.includes(e.dtype)) {
        tensors[name] = { dtype: e.dtype === 'F64' ? 'F64' : e.dtype, shape: e.shape, data: o ?? this.checkpoint.readFloat32(name) };
      } else {
        const t = this.checkpoint.read(name);
        tensors[name] = { dtype: t.dtype, shape: t.shape, data: t.data as TensorToWrite['data'] };
      }
      if (tensors[name]!.dtype === 'F64') tensors[name] = { ...tensors[name]!, data: Float64Array.from(tensors[name]!.data as Float32Array) };
    }
    writeSafetensors(join(dir, 'model.safetensors'), tensors);
    for (const f of MODEL_SIDE_FILES) {
      if (existsSync(join(this.dir, f))) copyFileSync(join(this.dir, f), join(dir, f));
    }
  }

  /** Releases every session (their device outputs with them), the device copies of the weights, and closes the checkpoint. */
  async dispose(): Promise<void> {
    await this.sessions.release();
    await this.clearMatrices();
    this.checkpoint.close();
  }
}
