import { GraphBuilder } from '../../onnx/graph-builder.js';
import { activation, layerNorm, linear, type HiddenAct, type LayerNormWeights, type LinearShape, type LoraAdapter } from '../common/layers.js';

/**
 * ONNX graph builders for CLIP's pieces: the vision embeddings, runs of encoder layers, and a
 * tower from any layer to its embeddings. Hidden states cross session boundaries as
 * [batch, tokens, width] float32, so a tower can restart at any layer from cached hidden states. Weight matrices (the ones SeTAR changes) are
 * graph inputs named by their HF names; biases and norms are initializers.
 */

/** One pre-LN transformer block, names as in HF `CLIPEncoderLayer`. */
export interface EncoderLayerWeights {
  readonly layer_norm1: LayerNormWeights;
  readonly q_proj: LinearShape;
  readonly k_proj: LinearShape;
  readonly v_proj: LinearShape;
  readonly out_proj: LinearShape;
  readonly layer_norm2: LayerNormWeights;
  readonly fc1: LinearShape;
  readonly fc2: LinearShape;
}

export interface BlockOptions {
  readonly heads: number;
  readonly eps: number;
  readonly act: HiddenAct;
  /** Text tower: each token attends to itself and earlier tokens only. */
  readonly causal: boolean;
  /** LoRA adapters by layer prefix (`vision_model.encoder.layers.11.mlp.fc1`); training graphs only. */
  readonly lora?: ReadonlyMap<string, LoraAdapter>;
}

/** x [B, S, H·d] → [B, H, S, d]. */
function splitHeads(g: GraphBuilder, x: string, heads: number, headDim: number): string {
  const r = g.op('Reshape', [x, g.constInt64([0, 0, heads, headDim])]);
  return g.op('Transpose', [r], { perm: [0, 2, 1, 3] });
}

/**
 * Multi-head self-attention context (before out_proj): softmax(q·kᵀ/√d + mask)·v, heads merged
 * back to [B, S, D]. Also returns v [B, S, D] (the value projection), which the GL-MCM local path
 * reuses.
 */
export function selfAttentionContext(g: GraphBuilder, x: string, w: EncoderLayerWeights, o: BlockOptions, name: string): { context: string; value: string } {
  const d = w.q_proj.out;
  const headDim = d / o.heads;
  const q = g.op('Mul', [linear(g, x, w.q_proj, `${name}.self_attn.q_proj`, o.lora), g.constFloat([headDim ** -0.5])]);
  const k = linear(g, x, w.k_proj, `${name}.self_attn.k_proj`, o.lora);
  const v = linear(g, x, w.v_proj, `${name}.self_attn.v_proj`, o.lora);
  const qh = splitHeads(g, q, o.heads, headDim);
  const kt = g.op('Transpose', [g.op('Reshape', [k, g.constInt64([0, 0, o.heads, headDim])])], { perm: [0, 2, 3, 1] });
  const vh = splitHeads(g, v, o.heads, headDim);
  let scores = g.op('MatMul', [qh, kt]);
  if (o.causal) {
    // Strictly-upper triangle of a [S, S] matrix of float32 lowest, zeros elsewhere (HF's causal mask).
    const shape = g.op('Shape', [x]);
    const s = g.op('Slice', [shape, g.constInt64([1]), g.constInt64([2])]);
    const ss = g.op('Concat', [s, s], { axis: 0 });
    const full = g.op('Expand', [g.constFloat([-3.4028234663852886e38]), ss]);
    const mask = g.op('Trilu', [full, g.constInt64([1])], { upper: 1 });
    scores = g.op('Add', [scores, mask]);
  }
  const probs = g.op('Softmax', [scores], { axis: -1 });
  const ctx = g.op('Transpose', [g.op('MatMul', [probs, vh])], { perm: [0, 2, 1, 3] });
  const context = g.op('Reshape', [ctx, g.constInt64([0, 0, d])]);
  return { context, value: v };
}

/** h + fc2(act(fc1(layer_norm2(h)))). */
export function mlpResidual(g: GraphBuilder, h: string, w: EncoderLayerWeights, o: BlockOptions, name: string): string {
  const ln = layerNorm(g, h, w.layer_norm2, o.eps, `${name}.layer_norm2`);
  const f = linear(g, activation(g, linear(g, ln, w.fc1, `${name}.mlp.fc1`, o.lora), o.act), w.fc2, `${name}.mlp.fc2`, o.lora);
  return g.op('Add', [h, f]);
}

/** The whole block: h + attn(ln1(h)), then the MLP residual. Returns the block output and internals. */
export function encoderLayer(g: GraphBuilder, h: string, w: EncoderLayerWeights, o: BlockOptions, name: string): { out: string; context: string; value: string } {
  const ln1 = layerNorm(g, h, w.layer_norm1, o.eps, `${name}.layer_norm1`);
  const { context, value } = selfAttentionContext(g, ln1, w, o, name);
  const h1 = g.op('Add', [h, linear(g, context, w.out_proj, `${name}.self_attn.out_proj`, o.lora)]);
  return { out: mlpResidual(g, h1, w, o, name), context, value };
}

/** Consecutive encoder layers of one tower, with their HF name prefixes (`vision_model.encoder.layers.3`). */
export interface LayerRun {
  readonly layers: readonly EncoderLayerWeights[];
  readonly prefixes: readonly string[];
}

/** Runs layers [0, n) of a run on h. */
export function chain(g: GraphBuilder, h: string, run: LayerRun, n: number, o: BlockOptions): string {
  for (let i = 0; i < n; i++) h = encoderLayer(g, h, run.layers[i]!, o, run.prefixes[i]!).out;
  return h;
}

/** A session graph for a run of middle layers: hidden [B, S, D] → hidden. */
export function encoderLayersGraph(run: LayerRun, o: BlockOptions, name: string): Uint8Array {
  const d = run.layers[0]!.q_proj.out;
  const g = new GraphBuilder(name);
  const h = g.input('hidden_states', 'FLOAT', ['batch', 'tokens', d]);
  g.output(chain(g, h, run, run.layers.length, o), 'hidden_states_out', 'FLOAT', ['batch', 'tokens', d]);
  return g.toBytes();
}

/** Weights of the vision embeddings and pre-encoder norm (HF `CLIPVisionEmbeddings` + `pre_layrnorm`). */
export interface VisionEmbeddingsWeights {
  readonly class_embedding: Float32Array; // [D]
  readonly patch_embedding: Float32Array; // [D, C, p, p]
  readonly position_embedding: Float32Array; // [S, D]
  readonly pre_layrnorm: LayerNormWeights;
}

/** Shape parameters of the vision embeddings. */
export interface VisionEmbeddingsShape { readonly hidden: number; readonly channels: number; readonly patch: number; readonly grid: number; readonly eps: number }

/** pixel_values [B, C, H, W] → pre_layrnorm(class token ⊕ patch tokens + positions) [B, 1+g², D], on `g`. */
export function visionEmbeddings(g: GraphBuilder, px: string, w: VisionEmbeddingsWeights, p: VisionEmbeddingsShape): string {
  const { hidden: d, channels: c, patch, grid } = p;
  const conv = g.op('Conv', [px, g.initializer('vision_model.embeddings.patch_embedding.weight', w.patch_embedding, [d, c, patch, patch])], {
    kernel_shape: [patch, patch],
    strides: [patch, patch],
  });
  const patches = g.op('Transpose', [g.op('Reshape', [conv, g.constInt64([0, d, grid * grid])])], { perm: [0, 2, 1] });
  const batch = g.op('Slice', [g.op('Shape', [px]), g.constInt64([0]), g.constInt64([1])]);
  const clsShape = g.op('Concat', [batch, g.constInt64([1, d])], { axis: 0 });
  const cls = g.op('Expand', [g.initializer('vision_model.embeddings.class_embedding', w.class_embedding, [1, 1, d]), clsShape]);
  const tokens = g.op('Concat', [cls, patches], { axis: 1 });
  const emb = g.op('Add', [tokens, g.initializer('vision_model.embeddings.position_embedding.weight', w.position_embedding, [1 + grid * grid, d])]);
  return layerNorm(g, emb, w.pre_layrnorm, p.eps, 'vision_model.pre_layrnorm');
}

/** The session graph of the vision embeddings: pixel_values → hidden_states_out. */
export function visionEmbeddingsGraph(w: VisionEmbeddingsWeights, p: VisionEmbeddingsShape): Uint8Array {
  const g = new GraphBuilder('vision_embeddings');
  const px = g.input('pixel_values', 'FLOAT', ['batch', p.channels, p.grid * p.patch, p.grid * p.patch]);
  g.output(visionEmbeddings(g, px, w, p), 'hidden_states_out', 'FLOAT', ['batch', 1 + p.grid * p.grid, p.hidden]);
  return g.toBytes();
}

/** Weights of the vision head. */
export interface VisionHeadWeights {
  readonly post_layernorm: LayerNormWeights;
  readonly visual_projection: LinearShape; // [P, D], no bias
}

/**
 * The vision tower from some layer to the end (the run's last layer is the tower's last):
 * `image_embeds` = visual_projection(post_layernorm(h[:, 0])) and, when `local`, GL-MCM's
 * `image_embeds_local` [B, grid, grid, P]: from the last layer's input h,
 * v = h + out_proj(v_proj(ln1(h))), v = v + mlp(ln2(v)), post_layernorm, drop CLS, project
 * (SPEC §1). The value projection is shared with the regular attention.
 */
export function visionTower(g: GraphBuilder, hidden: string, run: LayerRun, head: VisionHeadWeights, o: BlockOptions, p: { grid: number; local: boolean }): { image_embeds: string; image_embeds_local?: string } {
  const n = run.layers.length;
  const w = run.layers[n - 1]!;
  const prefix = run.prefixes[n - 1]!;
  const proj = head.visual_projection.out;
  const h = chain(g, hidden, run, n - 1, o);
  const layer = encoderLayer(g, h, w, o, prefix);
  const cls = g.op('Gather', [layer.out, g.constInt64([0])], { axis: 1 }); // [B, 1, D]
  const pooled = layerNorm(g, g.op('Squeeze', [cls, g.constInt64([1])]), head.post_layernorm, o.eps, 'vision_model.post_layernorm');
  const image_embeds = linear(g, pooled, head.visual_projection, 'visual_projection', o.lora);
  if (!p.local) return { image_embeds };
  const v1 = g.op('Add', [h, linear(g, layer.value, w.out_proj, `${prefix}.self_attn.out_proj`, o.lora)]);
  const v2 = mlpResidual(g, v1, w, o, prefix);
  const patches = g.op('Slice', [v2, g.constInt64([1]), g.constInt64([1 + p.grid * p.grid]), g.constInt64([1])]);
  const normed = layerNorm(g, patches, head.post_layernorm, o.eps, 'vision_model.post_layernorm');
  const projected = linear(g, normed, head.visual_projection, 'visual_projection', o.lora);
  return { image_embeds, image_embeds_local: g.op('Reshape', [projected, g.constInt64([0, p.grid, p.grid, proj])]) };
}

/** The session graph of {@link visionTower}: hidden_states → image_embeds (+ image_embeds_local). */
export function visionTowerGraph(run: LayerRun, head: VisionHeadWeights, o: BlockOptions, p: { grid: number; local: boolean; name: string }): Uint8Array {
  const d = run.layers[0]!.q_proj.out;
  const proj = head.visual_projection.out;
  const g = new GraphBuilder(p.name);
  const out = visionTower(g, g.input('hidden_states', 'FLOAT', ['batch', 'tokens', d]), run, head, o, p);
  g.output(out.image_embeds, 'image_embeds', 'FLOAT', ['batch', proj]);
  if (out.image_embeds_local) g.output(out.image_embeds_local, 'image_embeds_local', 'FLOAT', ['batch', p.grid, p.grid, proj]);
  return g.toBytes();
}

/** Weights of the text embeddings (HF `CLIPTextEmbeddings`). */
export interface TextEmbeddingsWeights {
  readonly token_embedding: Float32Array; // [V, D]
  readonly position_embedding: Float32Array; // [T, D]
}

/** Weights of the text head. */
export interface TextHeadWeights {
  readonly final_layer_norm: LayerNormWeights;
  readonly text_projection: LinearShape; // [P, D], no bias
}

/**
 * The text tower from some layer to the end. Its last layer is evaluated only where it matters:
 * the attention runs over all tokens, then only each prompt's end-token row (`pool_index` = b·L + eos position, int64 [B])
 * goes through out_proj, the MLP, `final_layer_norm` and `text_projection` → `text_embeds` [B, P].
 * Rows are independent after attention, so this equals pooling the full output.
 */
export function textTower(g: GraphBuilder, hidden: string, poolIndex: string, run: LayerRun, head: TextHeadWeights, o: BlockOptions): string {
  const n = run.layers.length;
  const w = run.layers[n - 1]!;
  const prefix = run.prefixes[n - 1]!;
  const d = w.q_proj.out;
  const h = chain(g, hidden, run, n - 1, o);
  const ln1 = layerNorm(g, h, w.layer_norm1, o.eps, `${prefix}.layer_norm1`);
  const { context } = selfAttentionContext(g, ln1, w, o, prefix);
  const flat = (x: string) => g.op('Gather', [g.op('Reshape', [x, g.constInt64([-1, d])]), poolIndex], { axis: 0 });
  const h1 = g.op('Add', [flat(h), linear(g, flat(context), w.out_proj, `${prefix}.self_attn.out_proj`, o.lora)]);
  const h2 = mlpResidual(g, h1, w, o, prefix);
  const pooled = layerNorm(g, h2, head.final_layer_norm, o.eps, 'text_model.final_layer_norm');
  return linear(g, pooled, head.text_projection, 'text_projection', o.lora);
}

/** The session graph of {@link textTower}: hidden_states, pool_index → text_embeds. */
export function textTowerGraph(run: LayerRun, head: TextHeadWeights, o: BlockOptions, name: string): Uint8Array {
  const d = run.layers[0]!.q_proj.out;
  const g = new GraphBuilder(name);
  const h = g.input('hidden_states', 'FLOAT', ['batch', 'length', d]);
  const poolIndex = g.input('pool_index', 'INT64', ['batch']);
  g.output(textTower(g, h, poolIndex, run, head, o), 'text_embeds', 'FLOAT', ['batch', head.text_projection.out]);
  return g.toBytes();
}
