import { addGradients } from '../autodiff/gradients.js';
import { GraphBuilder } from '../onnx/graph-builder.js';
import { logSoftmax } from '../onnx/log-softmax.js';
import type { ClipConfig } from '../models/clip/config.js';
import { textTower, visionEmbeddings, visionTower, type LayerRun, type LoraAdapter } from '../models/clip/graph.js';
import {
  encoderLayerWeights, layerTensorName, textHeadWeights, visionEmbeddingsWeights, visionHeadWeights, type TensorSource, type Tower,
} from '../models/clip/weights.js';

/** What the LoCoOp training loss needs (SPEC §5, §7). */
export interface TrainLossOptions {
  readonly topK: number;
  readonly lambda: number;
  readonly usePredLabel: boolean;
}

/** A built training graph: forward, LoCoOp loss and the gradients of every LoRA matrix, in one run. */
export interface TrainGraph {
  readonly bytes: Uint8Array;
  /** Gradient output name of each trainable input (`<prefix>.lora_A`, `<prefix>.lora_B`). */
  readonly gradients: ReadonlyMap<string, string>;
  /** Whether the text tower runs in the graph (some adapter is on it); else `text_embeds` is an input. */
  readonly textInGraph: boolean;
}

/** x / ‖x‖ along the last axis. */
function normalize(g: GraphBuilder, x: string): string {
  return g.op('Div', [x, g.op('Sqrt', [g.op('ReduceSum', [g.op('Mul', [x, x]), g.constInt64([-1])], { keepdims: 1 })])]);
}

function run(src: TensorSource, c: ClipConfig, tower: Tower, n: number): LayerRun {
  const layers = [];
  const prefixes = [];
  for (let i = 0; i < n; i++) {
    layers.push(encoderLayerWeights(src, c, tower, i));
    prefixes.push(layerTensorName(tower, i, '').slice(0, -1));
  }
  return { layers, prefixes };
}

/**
 * The SeTAR+FT / LoRA training graph of a CLIP model. Inputs: `pixel_values` [B, 3, S, S],
 * `labels_onehot` [B, C] (float), the text side (`text_hidden` [C, L, D] + `pool_index` [C] when an
 * adapter is on the text tower, else `text_embeds` [C, P]), every weight matrix by its HF name in
 * MatMul layout (as the inference graphs), and each adapter's `<prefix>.lora_A` [in, r] /
 * `<prefix>.lora_B` [r, out]. Outputs: `locoop_loss`, `loss_id`, `loss_ood`, `n_ood` (OOD
 * patches), `n_correct`, and the gradients.
 *
 * The loss and gradients are {@link locoopLossAndGradients}.
 */
export function clipTrainGraph(c: ClipConfig, src: TensorSource, adapters: ReadonlyMap<string, LoraAdapter>, logitScale: number, loss: TrainLossOptions, options: { gradients?: boolean } = {}): TrainGraph {
  const g = new GraphBuilder('clip_train');
  const v = c.vision_config;
  const t = c.text_config;
  const grid = v.image_size / v.patch_size;
  const p = c.projection_dim;
  const textInGraph = [...adapters.keys()].some((k) => k.startsWith('text_model.') || k === 'text_projection');

  const px = g.input('pixel_values', 'FLOAT', ['batch', v.num_channels, v.image_size, v.image_size]);
  const onehot = g.input('labels_onehot', 'FLOAT', ['batch', 'classes']);
  const vOpts = { heads: v.num_attention_heads, eps: v.layer_norm_eps, act: v.hidden_act, causal: false, lora: adapters };
  const h0 = visionEmbeddings(g, px, visionEmbeddingsWeights(src), { hidden: v.hidden_size, channels: v.num_channels, patch: v.patch_size, grid, eps: v.layer_norm_eps });
  const img = visionTower(g, h0, run(src, c, 'vision', v.num_hidden_layers), visionHeadWeights(src, c), vOpts, { grid, local: true });

  let text: string;
  if (textInGraph) {
    const hidden = g.input('text_hidden', 'FLOAT', ['classes', 'length', t.hidden_size]);
    const pool = g.input('pool_index', 'INT64', ['classes']);
    const tOpts = { heads: t.num_attention_heads, eps: t.layer_norm_eps, act: t.hidden_act, causal: true, lora: adapters };
    text = textTower(g, hidden, pool, run(src, c, 'text', t.num_hidden_layers), textHeadWeights(src, c), tOpts);
  } else {
    text = g.input('text_embeds', 'FLOAT', ['classes', p]);
  }

  // Logits (SPEC §1): exp(logit_scale) · cos(image, prompt), global [B, C] and per patch [B, G, C].
  const scale = g.constFloat([Math.exp(logitScale)]);
  const textT = g.op('Transpose', [normalize(g, text)], { perm: [1, 0] });
  const global = g.op('Mul', [g.op('MatMul', [normalize(g, img.image_embeds), textT]), scale]);
  const localFeatures = g.op('Reshape', [img.image_embeds_local!, g.constInt64([0, grid * grid, p])]);
  const local = g.op('Mul', [g.op('MatMul', [normalize(g, localFeatures), textT]), scale]);

  const gradients = locoopLossAndGradients(g, global, local, onehot, adapters, loss, options);
  return { bytes: g.toBytes(), gradients, textInGraph };
}

/**
 * The LoCoOp training loss (SPEC §5) on a graph's global [B, C] and per-patch [B, G, C] logits,
 * its parts as outputs (`locoop_loss`, `loss_id`, `loss_ood`, `n_ood`, `n_correct`) and, unless
 * `gradients: false`, the gradients of every adapter's lora_A / lora_B as `grad:<name>` outputs.
 * Shared by the CLIP and Swin V2 training graphs.
 *
 * The OOD-patch mask (label not among a patch's top-K classes) comes from comparisons, so it
 * carries no gradient, as in the reference where it comes from `topk` indices; a label whose
 * logit ties others counts as in the top K.
 */
export function locoopLossAndGradients(
  g: GraphBuilder, global: string, local: string, onehot: string, adapters: ReadonlyMap<string, LoraAdapter>, loss: TrainLossOptions, options: { gradients?: boolean } = {},
): Map<string, string> {
  // loss_id: mean cross-entropy of the global logits (no temperature, as the reference).
  const ce = g.op('ReduceSum', [g.op('Mul', [onehot, logSoftmax(g, global, -1)]), g.constInt64([-1])], { keepdims: 0 });
  const lossId = g.op('Neg', [g.op('ReduceMean', [ce], { keepdims: 0 })]);

  // OOD patches: the (true or predicted) label has at least K classes scoring strictly above it.
  const argmax = g.op('Cast', [g.op('Equal', [global, g.op('ReduceMax', [global], { axes: [-1], keepdims: 1 })])], { to: 1 });
  const target = loss.usePredLabel ? argmax : onehot;
  const labelLogit = g.op('ReduceSum', [g.op('Mul', [local, g.op('Unsqueeze', [target, g.constInt64([1])])]), g.constInt64([-1])], { keepdims: 1 });
  const above = g.op('ReduceSum', [g.op('Cast', [g.op('Greater', [local, labelLogit])], { to: 1 }), g.constInt64([-1])], { keepdims: 0 });
  const ood = g.op('Cast', [g.op('Not', [g.op('Less', [above, g.constFloat([loss.topK])])])], { to: 1 }); // [B, G]

  // loss_ood: mean over OOD patches of Σ p·log(p + 1e-5), 0 without OOD patches.
  const prob = g.op('Softmax', [local], { axis: -1 });
  const negEntropy = g.op('ReduceSum', [g.op('Mul', [prob, g.op('Log', [g.op('Add', [prob, g.constFloat([1e-5])])])]), g.constInt64([-1])], { keepdims: 0 });
  const nOod = g.op('ReduceSum', [ood], { keepdims: 0 });
  const lossOod = g.op('Div', [g.op('ReduceSum', [g.op('Mul', [ood, negEntropy])], { keepdims: 0 }), g.op('Max', [nOod, g.constFloat([1])])]);
  const locoop = g.op('Add', [lossId, g.op('Mul', [lossOod, g.constFloat([loss.lambda])])]);
  const correct = g.op('ReduceSum', [g.op('Mul', [onehot, argmax])], { keepdims: 0 });

  const trainable = [...adapters.keys()].flatMap((k) => [`${k}.lora_A`, `${k}.lora_B`]);
  // gradients: false gives the same forward and loss alone (benchmarks compare the two)
  const grads = options.gradients === false ? [] : addGradients(g, locoop, trainable);
  g.output(locoop, 'locoop_loss', 'FLOAT', []);
  g.output(lossId, 'loss_id', 'FLOAT', []);
  g.output(lossOod, 'loss_ood', 'FLOAT', []);
  g.output(nOod, 'n_ood', 'FLOAT', []);
  g.output(correct, 'n_correct', 'FLOAT', []);
  const gradients = new Map<string, string>();
  if (options.gradients !== false) {
    trainable.forEach((name, i) => {
      const out = `grad:${name}`;
      g.output(grads[i]!, out, 'FLOAT', name.endsWith('lora_A') ? ['in', 'rank'] : ['rank', 'out']);
      gradients.set(name, out);
    });
  }
  return gradients;
}
