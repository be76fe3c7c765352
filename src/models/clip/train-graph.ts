import { GraphBuilder, type Dim } from '../../onnx/graph-builder.js';
import type { LoraAdapter } from '../common/layers.js';
import { locoopLossAndGradients, type TrainGraph, type TrainLossOptions } from '../common/locoop-train-graph.js';
import type { ClipConfig } from './config.js';
import { textTower, visionEmbeddings, visionTower } from './graph.js';
import { layerRun, textHeadWeights, visionEmbeddingsWeights, visionHeadWeights, type TensorSource } from './weights.js';

/** x / ‖x‖ along the last axis. */
function normalize(g: GraphBuilder, x: string): string {
  return g.op('Div', [x, g.op('Sqrt', [g.op('ReduceSum', [g.op('Mul', [x, x]), g.constInt64([-1])], { keepdims: 1 })])]);
}


/**
 * A text side built inside the training graph instead of fed (LoCoOp: a trainable context
 * spliced into the fixed parts of the class prompts).
 */
export interface TrainTextInput {
  /** Adds the hidden states entering text layer 0, [C, L, D]; returns their value name. */
  build(g: GraphBuilder): string;
  /** The trainable graph inputs it declared, with their dims; the graph outputs their gradients. */
  readonly params: ReadonlyMap<string, readonly Dim[]>;
}

/**
 * The SeTAR+FT / LoRA training graph of a CLIP model. Inputs: `pixel_values` [B, 3, S, S],
 * `labels_onehot` [B, C] (float), the text side (`text_hidden` [C, L, D] + `pool_index` [C] when an
 * adapter is on the text tower, else `text_embeds` [C, P]), every weight matrix by its HF name in
 * MatMul layout (as the inference graphs), and each adapter's `<prefix>.lora_A` [in, r] /
 * `<prefix>.lora_B` [r, out]. Outputs: `locoop_loss`, `loss_id`, `loss_ood`, `n_ood` (OOD
 * patches), `n_correct`, and the gradients. With `options.text` the text tower always runs in the
 * graph, from the hidden states that input builds (fed `pool_index` [C] as usual), and the
 * gradients of its trainable inputs are outputs too.
 *
 * The loss and gradients are {@link locoopLossAndGradients}.
 */
export function clipTrainGraph(
  c: ClipConfig, src: TensorSource, adapters: ReadonlyMap<string, LoraAdapter>, logitScale: number, loss: TrainLossOptions,
  options: { gradients?: boolean; text?: TrainTextInput } = {},
): TrainGraph {
  const g = new GraphBuilder('clip_train');
  const v = c.vision_config;
  const t = c.text_config;
  const grid = v.image_size / v.patch_size;
  const p = c.projection_dim;
  const textInGraph = options.text !== undefined || [...adapters.keys()].some((k) => k.startsWith('text_model.') || k === 'text_projection');

  const px = g.input('pixel_values', 'FLOAT', ['batch', v.num_channels, v.image_size, v.image_size]);
  const onehot = g.input('labels_onehot', 'FLOAT', ['batch', 'classes']);
  const vOpts = { heads: v.num_attention_heads, eps: v.layer_norm_eps, act: v.hidden_act, causal: false, lora: adapters };
  const h0 = visionEmbeddings(g, px, visionEmbeddingsWeights(src), { hidden: v.hidden_size, channels: v.num_channels, patch: v.patch_size, grid, eps: v.layer_norm_eps });
  const img = visionTower(g, h0, layerRun(src, c, 'vision', 0, v.num_hidden_layers), visionHeadWeights(src, c), vOpts, { grid, local: true });

  let text: string;
  if (textInGraph) {
    const hidden = options.text ? options.text.build(g) : g.input('text_hidden', 'FLOAT', ['classes', 'length', t.hidden_size]);
    const pool = g.input('pool_index', 'INT64', ['classes']);
    const tOpts = { heads: t.num_attention_heads, eps: t.layer_norm_eps, act: t.hidden_act, causal: true, lora: adapters };
    text = textTower(g, hidden, pool, layerRun(src, c, 'text', 0, t.num_hidden_layers), textHeadWeights(src, c), tOpts);
  } else {
    text = g.input('text_embeds', 'FLOAT', ['classes', p]);
  }

  // Logits (SPEC §1): exp(logit_scale) · cos(image, prompt), global [B, C] and per patch [B, G, C].
  const scale = g.constFloat([Math.exp(logitScale)]);
  const textT = g.op('Transpose', [normalize(g, text)], { perm: [1, 0] });
  const global = g.op('Mul', [g.op('MatMul', [normalize(g, img.image_embeds), textT]), scale]);
  const localFeatures = g.op('Reshape', [img.image_embeds_local!, g.constInt64([0, grid * grid, p])]);
  const local = g.op('Mul', [g.op('MatMul', [normalize(g, localFeatures), textT]), scale]);

  const gradients = locoopLossAndGradients(g, global, local, onehot, adapters, loss, { gradients: options.gradients, params: options.text?.params });
  return { bytes: g.toBytes(), gradients, textInGraph };
}

