import { GraphBuilder } from '../../onnx/graph-builder.js';
import { activation, layerNorm, linear, transpose, type LinearShape, type LoraAdapter } from '../common/layers.js';
import { mlpDim, numLabels, stageDim, type SwinV2Config } from './config.js';
import { blockPrefix } from './weights.js';

/**
 * ONNX graph of HF `Swinv2ForImageClassification` (transformers 4.37.2) plus SeTAR's local
 * logits: pixel_values [B, C, H, W] → logits [B, labels] and logits_local [B, h, w, labels].
 *
 * Windowing (pad, cyclic shift, partition, and the reverse with the crop) is one Gather per
 * direction with index tables computed here; padding tokens are a zero row appended to the
 * token axis. The continuous position bias (CPB MLP on the log-spaced coordinates table, then
 * 16·sigmoid, gathered by the relative position index), the shift masks and the clamped
 * logit scales depend only on non-swappable tensors and the geometry, so they are computed in
 * float64 here and baked in as constants. The block Linear weights are graph inputs named by
 * their HF names in MatMul layout [in, out] (see the CLIP graphs' `linear`).
 */

/** Tensor reader by HF name (current value, replacement or checkpoint). */
export type Source = (name: string) => Float32Array;

/** LoRA adapters by Linear prefix (training graphs only; see the CLIP graphs' `linear`). */
type Lora = ReadonlyMap<string, LoraAdapter> | undefined;

/** Geometry of one block at run time. */
export interface BlockPlan {
  readonly stage: number;
  readonly block: number;
  /** Floor resolution the block was built for (decides window and shift). */
  readonly constructionResolution: [number, number];
  /** Token grid that actually arrives. */
  readonly resolution: [number, number];
  readonly windowSize: number;
  readonly shiftSize: number;
  readonly paddedResolution: [number, number];
  readonly numWindows: number;
  readonly pretrainedWindowSize: number;
  readonly heads: number;
  readonly dim: number;
}

/** Token grid after the patch embedding of an H x W image (bottom/right zero padding to the patch). */
export function patchGrid(c: SwinV2Config, height: number, width: number): [number, number] {
  return [Math.ceil(height / c.patch_size[0]), Math.ceil(width / c.patch_size[1])];
}

/**
 * Per-block window/shift/padding plan, as HF decides it: window and shift from the construction
 * (floor) resolution of `config.image_size`, padding from the run-time (ceil) resolution.
 */
export function blockPlan(c: SwinV2Config, height: number, width: number): BlockPlan[] {
  const plans: BlockPlan[] = [];
  const grid0 = [Math.floor(c.image_size[0] / c.patch_size[0]), Math.floor(c.image_size[1] / c.patch_size[1])];
  let [rh, rw] = patchGrid(c, height, width);
  for (let s = 0; s < c.depths.length; s++) {
    const ch = Math.floor(grid0[0]! / 2 ** s);
    const cw = Math.floor(grid0[1]! / 2 ** s);
    // HF computes per axis; a square window needs both axes to agree.
    const wh = ch <= c.window_size ? ch : c.window_size;
    const ww = cw <= c.window_size ? cw : c.window_size;
    if (wh !== ww) throw new RangeError(`swinv2: stage ${s} would need a non-square window ${wh} x ${ww} (image_size ${c.image_size.join(' x ')})`);
    const w = wh;
    for (let b = 0; b < c.depths[s]!; b++) {
      const target = b % 2 === 0 ? 0 : Math.floor(c.window_size / 2);
      const shiftH = ch <= w ? 0 : target;
      const shiftW = cw <= w ? 0 : target;
      if (shiftH !== shiftW) throw new RangeError(`swinv2: stage ${s} block ${b} would need a non-square shift`);
      const ph = Math.ceil(rh / w) * w;
      const pw = Math.ceil(rw / w) * w;
      plans.push({
        stage: s, block: b, constructionResolution: [ch, cw], resolution: [rh, rw], windowSize: w, shiftSize: shiftH,
        paddedResolution: [ph, pw], numWindows: (ph / w) * (pw / w), pretrainedWindowSize: c.pretrained_window_sizes[s]!,
        heads: c.num_heads[s]!, dim: stageDim(c, s),
      });
    }
    rh = Math.ceil(rh / 2);
    rw = Math.ceil(rw / 2);
  }
  return plans;
}

/** HF's `relative_coords_table` [(2w-1)², 2] (dy first), log-spaced, in float64. */
export function relativeCoordsTable(window: number, pretrained: number): Float64Array {
  const n = 2 * window - 1;
  const t = new Float64Array(n * n * 2);
  const div = pretrained > 0 ? pretrained - 1 : window - 1;
  const f = (v: number): number => {
    const x = (v / div) * 8;
    return (Math.sign(x) * Math.log2(Math.abs(x) + 1)) / Math.log2(8);
  };
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      t[(i * n + j) * 2] = f(i - (window - 1));
      t[(i * n + j) * 2 + 1] = f(j - (window - 1));
    }
  }
  return t;
}

/** HF's `relative_position_index` [w², w²]: table row of the pair (i, j). */
export function relativePositionIndex(window: number): Int32Array {
  const n = window * window;
  const idx = new Int32Array(n * n);
  for (let i = 0; i < n; i++) {
    const yi = Math.floor(i / window), xi = i % window;
    for (let j = 0; j < n; j++) {
      const yj = Math.floor(j / window), xj = j % window;
      idx[i * n + j] = (yi - yj + window - 1) * (2 * window - 1) + (xi - xj + window - 1);
    }
  }
  return idx;
}

/** 16·sigmoid(cpb_mlp(table)) gathered by the index: [heads, w², w²], float64. */
export function relativePositionBias(src: Source, prefix: string, window: number, pretrained: number, heads: number): Float64Array {
  const table = relativeCoordsTable(window, pretrained);
  const rows = table.length / 2;
  const w0 = src(`${prefix}.continuous_position_bias_mlp.0.weight`); // [512, 2]
  const b0 = src(`${prefix}.continuous_position_bias_mlp.0.bias`); // [512]
  const w2 = src(`${prefix}.continuous_position_bias_mlp.2.weight`); // [heads, 512]
  const hidden = b0.length;
  const out = new Float64Array(rows * heads);
  const hbuf = new Float64Array(hidden);
  for (let r = 0; r < rows; r++) {
    const a = table[2 * r]!, b = table[2 * r + 1]!;
    for (let k = 0; k < hidden; k++) hbuf[k] = Math.max(0, w0[2 * k]! * a + w0[2 * k + 1]! * b + b0[k]!);
    for (let h = 0; h < heads; h++) {
      let acc = 0;
      for (let k = 0; k < hidden; k++) acc += w2[h * hidden + k]! * hbuf[k]!;
      out[r * heads + h] = 16 / (1 + Math.exp(-acc));
    }
  }
  const idx = relativePositionIndex(window);
  const n = window * window;
  const bias = new Float64Array(heads * n * n);
  for (let h = 0; h < heads; h++) for (let p = 0; p < n * n; p++) bias[h * n * n + p] = out[idx[p]! * heads + h]!;
  return bias;
}

/** HF's shifted-window attention mask [windows, w², w²] (0 / -100) over the padded grid. */
export function shiftMask(hp: number, wp: number, window: number, shift: number): Float32Array {
  const band = (v: number, n: number): number => (v < n - window ? 0 : v < n - shift ? 1 : 2);
  const nwx = wp / window;
  const nW = (hp / window) * nwx;
  const n = window * window;
  const mask = new Float32Array(nW * n * n);
  const label = (win: number, t: number): number => {
    const y = Math.floor(win / nwx) * window + Math.floor(t / window);
    const x = (win % nwx) * window + (t % window);
    return 3 * band(y, hp) + band(x, wp);
  };
  for (let win = 0; win < nW; win++) {
    for (let i = 0; i < n; i++) {
      const li = label(win, i);
      for (let j = 0; j < n; j++) if (label(win, j) !== li) mask[(win * n + i) * n + j] = -100;
    }
  }
  return mask;
}

/**
 * Index tables of the window partition of a block: `forward[k]` is the source token (row-major
 * over the unpadded grid; `h·w` = the zero padding token) of windowed position k = win·w² + t,
 * after the roll by -shift; `inverse[token]` is the windowed position that holds it.
 */
export function windowIndex(p: BlockPlan): { forward: number[]; inverse: number[] } {
  const [h, w] = p.resolution;
  const [hp, wp] = p.paddedResolution;
  const win = p.windowSize;
  const s = p.shiftSize;
  const nwx = wp / win;
  const n = win * win;
  const forward = new Array<number>(p.numWindows * n);
  for (let k = 0; k < forward.length; k++) {
    const wi = Math.floor(k / n), t = k % n;
    const yr = Math.floor(wi / nwx) * win + Math.floor(t / win);
    const xr = (wi % nwx) * win + (t % win);
    const y = (yr + s) % hp, x = (xr + s) % wp;
    forward[k] = y < h && x < w ? y * w + x : h * w;
  }
  const inverse = new Array<number>(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const yr = (y - s + hp) % hp, xr = (x - s + wp) % wp;
      inverse[y * w + x] = (Math.floor(yr / win) * nwx + Math.floor(xr / win)) * n + (yr % win) * win + (xr % win);
    }
  }
  return { forward, inverse };
}

function initName(g: GraphBuilder, name: string, make: () => { data: Float32Array; dims: number[] }): string {
  if (g.has(name)) return name;
  const { data, dims } = make();
  return g.initializer(name, data, dims);
}

/** A non-swappable Linear (reduction, classifier): weight as an initializer in [in, out] layout. */
function fixedLinear(g: GraphBuilder, src: Source, x: string, prefix: string, out: number, inn: number, bias: boolean): string {
  const w = initName(g, `${prefix}.weight`, () => ({ data: transpose(src(`${prefix}.weight`), out, inn), dims: [inn, out] }));
  let y = g.op('MatMul', [x, w]);
  if (bias) y = g.op('Add', [y, initName(g, `${prefix}.bias`, () => ({ data: src(`${prefix}.bias`), dims: [out] }))]);
  return y;
}

function ln(g: GraphBuilder, src: Source, x: string, prefix: string, eps: number): string {
  return layerNorm(g, x, { weight: src(`${prefix}.weight`), bias: src(`${prefix}.bias`) }, eps, prefix);
}

function lin(src: Source, prefix: string, inn: number, out: number, bias: boolean): LinearShape {
  return bias ? { in: inn, out, bias: src(`${prefix}.bias`) } : { in: inn, out };
}

/** q / max(‖q‖, 1e-12) over the last axis. */
function l2normalize(g: GraphBuilder, x: string): string {
  const n = g.op('ReduceL2', [x], { axes: [-1], keepdims: 1 });
  return g.op('Div', [x, g.op('Max', [n, g.constFloat([1e-12])])]);
}

/** Window attention of one block on x [B, L, C] → attention.output.dense output [B, L, C]. */
function windowAttention(g: GraphBuilder, src: Source, c: SwinV2Config, x: string, p: BlockPlan, lora: Lora): string {
  const pre = blockPrefix(p.stage, p.block);
  const { dim: d, heads, windowSize: win } = p;
  const hd = d / heads;
  const n = win * win;
  const [h, w] = p.resolution;
  const { forward, inverse } = windowIndex(p);
  const needsPad = forward.some((v) => v === h * w);
  const xs = needsPad ? g.op('Pad', [x, g.constInt64([0, 0, 0, 0, 1, 0])]) : x;
  const xw = g.op('Reshape', [g.op('Gather', [xs, g.constInt64(forward, 'win_index')], { axis: 1 }), g.constInt64([-1, n, d])]);
  const q = linear(g, xw, lin(src, `${pre}.attention.self.query`, d, d, c.qkv_bias), `${pre}.attention.self.query`, lora);
  const k = linear(g, xw, lin(src, `${pre}.attention.self.key`, d, d, false), `${pre}.attention.self.key`, lora);
  const v = linear(g, xw, lin(src, `${pre}.attention.self.value`, d, d, c.qkv_bias), `${pre}.attention.self.value`, lora);
  const perHead = (t: string) => g.op('Reshape', [t, g.constInt64([0, 0, heads, hd])]);
  const split = (t: string) => g.op('Transpose', [t], { perm: [0, 2, 1, 3] });
  // normalised before the head split (the norm over head_dim is the same in either layout): ORT's
  // transpose optimiser would otherwise move that Transpose onto the bool mask of the norm's
  // gradient, a Transpose its WebGPU provider runs on the CPU
  const qn = split(l2normalize(g, perHead(q)));
  const kn = split(l2normalize(g, perHead(k)));
  const vh = split(perHead(v));
  const ls = src(`${pre}.attention.self.logit_scale`);
  const scale = Float32Array.from(ls, (t) => Math.exp(Math.min(t, Math.log(100))));
  let scores = g.op('Mul', [g.op('MatMul', [qn, g.op('Transpose', [kn], { perm: [0, 1, 3, 2] })]), g.initializer(`${pre}.attention.self.logit_scale_clamped_exp`, scale, [1, heads, 1, 1])]);
  const bias = relativePositionBias(src, `${pre}.attention.self`, win, p.pretrainedWindowSize, heads);
  scores = g.op('Add', [scores, g.initializer(`${pre}.attention.self.relative_position_bias`, Float32Array.from(bias), [1, heads, n, n])]);
  if (p.shiftSize > 0) {
    const mask = g.initializer(`${pre}.attn_mask`, shiftMask(p.paddedResolution[0], p.paddedResolution[1], win, p.shiftSize), [1, p.numWindows, 1, n, n]);
    let s5 = g.op('Reshape', [scores, g.constInt64([-1, p.numWindows, heads, n, n])]);
    s5 = g.op('Add', [g.op('Add', [s5, mask]), mask]); // HF adds the mask twice
    scores = g.op('Reshape', [s5, g.constInt64([-1, heads, n, n])]);
  }
  const probs = g.op('Softmax', [scores], { axis: -1 });
  const ctx = g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [probs, vh])], { perm: [0, 2, 1, 3] }), g.constInt64([0, 0, d])]);
  const out = linear(g, ctx, lin(src, `${pre}.attention.output.dense`, d, d, true), `${pre}.attention.output.dense`, lora);
  const flat = g.op('Reshape', [out, g.constInt64([-1, p.numWindows * n, d])]);
  return g.op('Gather', [flat, g.constInt64(inverse, 'win_inverse')], { axis: 1 });
}

/** u + layernorm_after(output.dense(act(intermediate.dense(u)))). */
function mlpResidual(g: GraphBuilder, src: Source, c: SwinV2Config, u: string, p: BlockPlan, lora: Lora): string {
  const pre = blockPrefix(p.stage, p.block);
  const f = mlpDim(c, p.stage);
  const hmid = activation(g, linear(g, u, lin(src, `${pre}.intermediate.dense`, p.dim, f, true), `${pre}.intermediate.dense`, lora), c.hidden_act);
  const o = linear(g, hmid, lin(src, `${pre}.output.dense`, f, p.dim, true), `${pre}.output.dense`, lora);
  return g.op('Add', [u, ln(g, src, o, `${pre}.layernorm_after`, c.layer_norm_eps)]);
}

/** One residual post-norm block. */
function block(g: GraphBuilder, src: Source, c: SwinV2Config, x: string, p: BlockPlan, lora: Lora): string {
  const pre = blockPrefix(p.stage, p.block);
  const u = g.op('Add', [x, ln(g, src, windowAttention(g, src, c, x, p, lora), `${pre}.layernorm_before`, c.layer_norm_eps)]);
  return mlpResidual(g, src, c, u, p, lora);
}

/** SeTAR's local path of a block: per token, attention replaced by output.dense(value(x)). */
function localPath(g: GraphBuilder, src: Source, c: SwinV2Config, x: string, p: BlockPlan, lora: Lora): string {
  const pre = blockPrefix(p.stage, p.block);
  const v = linear(g, x, lin(src, `${pre}.attention.self.value`, p.dim, p.dim, c.qkv_bias), `${pre}.attention.self.value`, lora);
  const a = linear(g, v, lin(src, `${pre}.attention.output.dense`, p.dim, p.dim, true), `${pre}.attention.output.dense`, lora);
  const u = g.op('Add', [x, ln(g, src, a, `${pre}.layernorm_before`, c.layer_norm_eps)]);
  return mlpResidual(g, src, c, u, p, lora);
}

/** Patch merging of x [B, h·w, C] → [B, ⌈h/2⌉·⌈w/2⌉, 2C] (pad odd sizes; TL, BL, TR, BR; reduction; norm). */
function patchMerging(g: GraphBuilder, src: Source, x: string, s: number, h: number, w: number, d: number): string {
  let t = g.op('Reshape', [x, g.constInt64([0, h, w, d])]);
  const ph = h % 2, pw = w % 2;
  if (ph || pw) t = g.op('Pad', [t, g.constInt64([0, 0, 0, 0, 0, ph, pw, 0])]);
  const h2 = (h + ph) / 2, w2 = (w + pw) / 2;
  t = g.op('Reshape', [t, g.constInt64([0, h2, 2, w2, 2, d])]);
  t = g.op('Transpose', [t], { perm: [0, 1, 3, 4, 2, 5] }); // [B, h2, w2, col parity, row parity, C]
  t = g.op('Reshape', [t, g.constInt64([0, h2 * w2, 4 * d])]);
  const pre = `swinv2.encoder.layers.${s}.downsample`;
  return ln(g, src, fixedLinear(g, src, t, `${pre}.reduction`, 2 * d, 4 * d, false), `${pre}.norm`, 1e-5);
}

/** Options of {@link swinV2ClassifierGraph}. */
export interface SwinV2GraphOptions {
  /** Input image size (default: config.image_size). */
  readonly height?: number;
  readonly width?: number;
  /** Bake the block Linear weights in as initializers (a standalone model) instead of taking them as inputs. */
  readonly bakeWeights?: (name: string) => Float32Array;
  /** LoRA adapters on block Linear layers (inputs `<prefix>.lora_A` [in, r] / `<prefix>.lora_B` [r, out]); training only. */
  readonly lora?: ReadonlyMap<string, LoraAdapter>;
}

/** The classifier built into `g`: value names of logits [B, labels] and logits_local [B, h, w, labels]. */
export interface SwinV2GraphValues {
  readonly logits: string;
  readonly logitsLocal: string;
  /** Local grid and label count. */
  readonly grid: [number, number];
  readonly labels: number;
}

/** The whole classifier: pixel_values [B, C, H, W] → logits [B, labels], logits_local [B, h, w, labels]. */
export function swinV2ClassifierGraph(c: SwinV2Config, src: Source, o: SwinV2GraphOptions = {}): Uint8Array {
  const g = new GraphBuilder('swinv2_classifier');
  if (o.bakeWeights) g.bakeWeights = o.bakeWeights;
  const v = swinV2Classifier(g, c, src, o);
  g.output(v.logits, 'logits', 'FLOAT', ['batch', v.labels]);
  g.output(v.logitsLocal, 'logits_local', 'FLOAT', ['batch', v.grid[0], v.grid[1], v.labels]);
  return g.toBytes();
}

/** Builds the classifier into `g` (input `pixel_values`); returns its output values without declaring them outputs. */
export function swinV2Classifier(g: GraphBuilder, c: SwinV2Config, src: Source, o: SwinV2GraphOptions = {}): SwinV2GraphValues {
  const height = o.height ?? c.image_size[0];
  const width = o.width ?? c.image_size[1];
  const px = g.input('pixel_values', 'FLOAT', ['batch', c.num_channels, height, width]);
  return swinV2Head(g, c, src, swinV2Embeddings(g, c, src, px, height, width), blockPlan(c, height, width), 0, o.lora);
}

/** Patch embedding of pixel_values [B, C, H, W] (zero-padded to the patch) → tokens [B, h·w, embed_dim], normalised. */
export function swinV2Embeddings(g: GraphBuilder, c: SwinV2Config, src: Source, px: string, height: number, width: number): string {
  const [pH, pW] = c.patch_size;
  const e = c.embed_dim;
  const padH = (pH - (height % pH)) % pH, padW = (pW - (width % pW)) % pW;
  if (padH || padW) px = g.op('Pad', [px, g.constInt64([0, 0, 0, 0, 0, 0, padH, padW])]);
  const [h, w] = patchGrid(c, height, width);
  const conv = g.op('Conv', [px,
    g.initializer('swinv2.embeddings.patch_embeddings.projection.weight', src('swinv2.embeddings.patch_embeddings.projection.weight'), [e, c.num_channels, pH, pW]),
    g.initializer('swinv2.embeddings.patch_embeddings.projection.bias', src('swinv2.embeddings.patch_embeddings.projection.bias'), [e]),
  ], { kernel_shape: [pH, pW], strides: [pH, pW] });
  const x = g.op('Transpose', [g.op('Reshape', [conv, g.constInt64([0, e, h * w])])], { perm: [0, 2, 1] });
  return ln(g, src, x, 'swinv2.embeddings.norm', 1e-5);
}

/**
 * Blocks [from, to) of the encoder, in order over all stages (flat index into `plans`), each
 * stage's patch merging after its last block: x is the hidden state entering block `from`
 * ([B, h·w, dim] of that block's stage), the result the one entering block `to`.
 */
export function swinV2Blocks(g: GraphBuilder, c: SwinV2Config, src: Source, x: string, plans: readonly BlockPlan[], from: number, to: number, lora?: Lora): string {
  const stages = c.depths.length;
  for (let k = from; k < to; k++) {
    const p = plans[k]!;
    x = block(g, src, c, x, p, lora);
    if (p.block === c.depths[p.stage]! - 1 && p.stage < stages - 1) x = patchMerging(g, src, x, p.stage, p.resolution[0], p.resolution[1], p.dim);
  }
  return x;
}

/**
 * Blocks [from, end) and the heads: the final layernorm, mean pooling and the classifier
 * (logits [B, labels]), and SeTAR's local logits from the input of the last block ([B, h, w, labels]).
 */
export function swinV2Head(g: GraphBuilder, c: SwinV2Config, src: Source, x: string, plans: readonly BlockPlan[], from: number, lora?: Lora): SwinV2GraphValues {
  const last = plans.length - 1;
  const lastInput = swinV2Blocks(g, c, src, x, plans, from, last, lora);
  const lastPlan = plans[last]!;
  x = block(g, src, c, lastInput, lastPlan, lora);
  const [h, w] = lastPlan.resolution;
  const dl = lastPlan.dim;
  const labels = numLabels(c);
  const normed = ln(g, src, x, 'swinv2.layernorm', c.layer_norm_eps);
  const pooled = g.op('ReduceMean', [normed], { axes: [1], keepdims: 0 });
  const logits = fixedLinear(g, src, pooled, 'classifier', labels, dl, true);
  const local = ln(g, src, localPath(g, src, c, lastInput, lastPlan, lora), 'swinv2.layernorm', c.layer_norm_eps);
  const localLogits = fixedLinear(g, src, local, 'classifier', labels, dl, true);
  return { logits, logitsLocal: g.op('Reshape', [localLogits, g.constInt64([0, h, w, labels])]), grid: [h, w], labels };
}

/** Tokens and width of the hidden state entering block `k` (its stage's resolution and dim). */
export function hiddenShape(plans: readonly BlockPlan[], k: number): [tokens: number, dim: number] {
  const p = plans[k]!;
  return [p.resolution[0] * p.resolution[1], p.dim];
}

/** The embeddings alone: pixel_values → `hidden_states_out` entering block 0. */
export function swinV2EmbeddingsGraph(c: SwinV2Config, src: Source, height = c.image_size[0], width = c.image_size[1]): Uint8Array {
  const g = new GraphBuilder('swinv2_embeddings');
  const px = g.input('pixel_values', 'FLOAT', ['batch', c.num_channels, height, width]);
  const [t, d] = hiddenShape(blockPlan(c, height, width), 0);
  g.output(swinV2Embeddings(g, c, src, px, height, width), 'hidden_states_out', 'FLOAT', ['batch', t, d]);
  return g.toBytes();
}

/** Blocks [from, to) alone: `hidden_states` → `hidden_states_out` (block Linear weights are inputs). */
export function swinV2BlocksGraph(c: SwinV2Config, src: Source, from: number, to: number, height = c.image_size[0], width = c.image_size[1]): Uint8Array {
  const g = new GraphBuilder(`swinv2_blocks_${from}_${to}`);
  const plans = blockPlan(c, height, width);
  const [t, d] = hiddenShape(plans, from);
  const x = g.input('hidden_states', 'FLOAT', ['batch', t, d]);
  const y = swinV2Blocks(g, c, src, x, plans, from, to);
  const [t2, d2] = to < plans.length ? hiddenShape(plans, to) : [t, d];
  g.output(y, 'hidden_states_out', 'FLOAT', ['batch', t2, d2]);
  return g.toBytes();
}

/** Blocks [from, end) and the heads: `hidden_states` → logits, logits_local. */
export function swinV2HeadGraph(c: SwinV2Config, src: Source, from: number, height = c.image_size[0], width = c.image_size[1]): Uint8Array {
  const g = new GraphBuilder(`swinv2_from_${from}`);
  const plans = blockPlan(c, height, width);
  const [t, d] = hiddenShape(plans, from);
  const v = swinV2Head(g, c, src, g.input('hidden_states', 'FLOAT', ['batch', t, d]), plans, from);
  g.output(v.logits, 'logits', 'FLOAT', ['batch', v.labels]);
  g.output(v.logitsLocal, 'logits_local', 'FLOAT', ['batch', v.grid[0], v.grid[1], v.labels]);
  return g.toBytes();
}
