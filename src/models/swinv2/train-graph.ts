import { GraphBuilder } from '../../onnx/graph-builder.js';
import type { LoraAdapter } from '../common/layers.js';
import { locoopLossAndGradients, type TrainGraph, type TrainLossOptions } from '../common/locoop-train-graph.js';
import type { SwinV2Config } from './config.js';
import { swinV2Classifier, type Source } from './graph.js';

/**
 * The SeTAR+FT / LoRA training graph of a Swin V2 classifier (SPEC §7 with Swin's logits):
 * the classifier forward of {@link swinV2Classifier} with LoRA adapters on the chosen block
 * Linear layers, then the LoCoOp loss on `logits` [B, C] and `logits_local` [B, h·w, C] (no
 * logit scale: Swin's logits are the classifier's outputs).
 *
 * Inputs: `pixel_values` [B, 3, S, S], `labels_onehot` [B, C] (float), the block Linear weights
 * by HF name in MatMul layout [in, out], and each adapter's `<prefix>.lora_A` [in, r] /
 * `<prefix>.lora_B` [r, out]. Outputs: `locoop_loss`, `loss_id`, `loss_ood`, `n_ood`,
 * `n_correct`, and `grad:<prefix>.lora_A|B`. The OOD-patch mask comes from comparisons, so it
 * carries no gradient (the reference takes it from `topk` indices).
 */
export function swinTrainGraph(c: SwinV2Config, src: Source, adapters: ReadonlyMap<string, LoraAdapter>, loss: TrainLossOptions, options: { gradients?: boolean } = {}): TrainGraph {
  const g = new GraphBuilder('swin_train');
  const onehot = g.input('labels_onehot', 'FLOAT', ['batch', 'classes']);
  const v = swinV2Classifier(g, c, src, { lora: adapters });
  const global = v.logits;
  const local = g.op('Reshape', [v.logitsLocal, g.constInt64([0, v.grid[0] * v.grid[1], v.labels])]);

  const gradients = locoopLossAndGradients(g, global, local, onehot, adapters, loss, options);
  return { bytes: g.toBytes(), gradients, textInGraph: false };
}
