import { addGradients } from '../autodiff/gradients.js';
import { GraphBuilder } from '../onnx/graph-builder.js';
import { logSoftmax } from '../onnx/log-softmax.js';
import type { ClipConfig } from '../models/clip/config.js';
import { textTower, visionEmbeddings, visionTower } from '../models/clip/graph.js';
import { expectedClipTensors, layerRun, textHeadWeights, visionEmbeddingsWeights, visionHeadWeights, type TensorSource } from '../models/clip/weights.js';

/** The contrastive (CLIP pre-training) graph: every parameter an input, loss and all gradients in one run. */
export interface ContrastiveGraph {
  readonly bytes: Uint8Array;
  /** Parameters compiled from initializers (norms, biases, embeddings, logit_scale): name → dims as fed. */
  readonly params: ReadonlyMap<string, readonly number[]>;
  /** Weight matrices, fed in MatMul layout [in, out] under their HF names. */
  readonly matrices: readonly string[];
  /** Gradient output of every parameter and matrix. */
  readonly gradients: ReadonlyMap<string, string>;
}


function normalize(g: GraphBuilder, x: string): string {
  return g.op('Div', [x, g.op('Sqrt', [g.op('ReduceSum', [g.op('Mul', [x, x]), g.constInt64([-1])], { keepdims: 1 })])]);
}

/**
 * CLIP's symmetric contrastive loss on a batch of image/caption pairs: logits =
 * exp(logit_scale)·cos(image_i, caption_j); loss = mean of the image→text and text→image
 * cross-entropies against `targets` [B, B] (rows summing to 1: pairs of the same class share the
 * target mass, so a batch may hold several images of a class without false negatives).
 * Inputs: `pixel_values` [B, 3, S, S], `input_ids` int64 [B, T] padded to the context T, `pool_index` int64 [B]
 * (b·L + end-token position), `targets` [B, B], and every parameter. Output `loss` and gradients.
 */
export function clipContrastiveGraph(c: ClipConfig, src: TensorSource): ContrastiveGraph {
  // every checkpoint tensor compiled as an initializer becomes a trainable input (not the
  // builders' own constants)
  const checkpointNames = new Set(expectedClipTensors(c).keys());
  const g = new GraphBuilder('clip_contrastive', 17, (name) => checkpointNames.has(name));
  const v = c.vision_config;
  const t = c.text_config;
  const grid = v.image_size / v.patch_size;

  const px = g.input('pixel_values', 'FLOAT', ['batch', v.num_channels, v.image_size, v.image_size]);
  const h0 = visionEmbeddings(g, px, visionEmbeddingsWeights(src), { hidden: v.hidden_size, channels: v.num_channels, patch: v.patch_size, grid, eps: v.layer_norm_eps });
  const vOpts = { heads: v.num_attention_heads, eps: v.layer_norm_eps, act: v.hidden_act, causal: false };
  const img = visionTower(g, h0, layerRun(src, c, 'vision', 0, v.num_hidden_layers), visionHeadWeights(src, c), vOpts, { grid, local: false }).image_embeds;

  // ids padded to the full context, so the position table is added whole (a Slice of it by the
  // run-time length would have no gradient rule; padding after the end token never matters).
  const ids = g.input('input_ids', 'INT64', ['batch', t.max_position_embeddings]);
  const pool = g.input('pool_index', 'INT64', ['batch']);
  const tok = g.op('Gather', [g.initializer('text_model.embeddings.token_embedding.weight', src('text_model.embeddings.token_embedding.weight'), [t.vocab_size, t.hidden_size]), ids], { axis: 0 });
  const positions = g.initializer('text_model.embeddings.position_embedding.weight', src('text_model.embeddings.position_embedding.weight'), [t.max_position_embeddings, t.hidden_size]);
  const hidden = g.op('Add', [tok, positions]);
  const tOpts = { heads: t.num_attention_heads, eps: t.layer_norm_eps, act: t.hidden_act, causal: true };
  const txt = textTower(g, hidden, pool, layerRun(src, c, 'text', 0, t.num_hidden_layers), textHeadWeights(src, c), tOpts);

  const scale = g.op('Exp', [g.initializer('logit_scale', src('logit_scale'), [])]);
  const logits = g.op('Mul', [g.op('MatMul', [normalize(g, img), g.op('Transpose', [normalize(g, txt)], { perm: [1, 0] })]), scale]);
  const targets = g.input('targets', 'FLOAT', ['batch', 'batch']);
  const ce = (x: string, tg: string) => g.op('Neg', [g.op('ReduceMean', [g.op('ReduceSum', [g.op('Mul', [tg, logSoftmax(g, x, -1)]), g.constInt64([-1])], { keepdims: 0 })], { keepdims: 0 })]);
  const loss = g.op('Mul', [g.op('Add', [ce(logits, targets), ce(g.op('Transpose', [logits], { perm: [1, 0] }), g.op('Transpose', [targets], { perm: [1, 0] }))]), g.constFloat([0.5])]);

  const params = new Map([...g.params].map(([k, p]) => [k, p.dims]));
  const matrices = g.inputNames().filter((n) => n.endsWith('.weight') && !params.has(n));
  const wrt = [...params.keys(), ...matrices];
  const grads = addGradients(g, loss, wrt);
  g.output(loss, 'loss', 'FLOAT', []);
  const gradients = new Map<string, string>();
  wrt.forEach((name, i) => {
    g.output(grads[i]!, `grad:${name}`, 'FLOAT', params.get(name) ?? ['in', 'out']);
    gradients.set(name, `grad:${name}`);
  });
  return { bytes: g.toBytes(), params, matrices, gradients };
}
