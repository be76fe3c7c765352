import { addGradients } from '../autodiff/gradients.js';
import { GraphBuilder } from '../onnx/graph-builder.js';
import type { LoraAdapter } from '../models/clip/graph.js';
import type { SwinV2Config } from '../models/swinv2/config.js';
import { swinV2Classifier, type Source } from '../models/swinv2/graph.js';
import type { TrainGraph, TrainLossOptions } from './clip-train-graph.js';

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

  // loss_id: mean cross-entropy of the global logits.
  const ce = g.op('ReduceSum', [g.op('Mul', [onehot, g.op('LogSoftmax', [global], { axis: -1 })]), g.constInt64([-1])], { keepdims: 0 });
  const lossId = g.op('Neg', [g.op('ReduceMean', [ce], { keepdims: 0 })]);

  // OOD patches: the (true or predicted) label has at least K classes scoring strictly above it.
  const target = loss.usePredLabel
    ? g.op('Cast', [g.op('Equal', [global, g.op('ReduceMax', [global], { axes: [-1], keepdims: 1 })])], { to: 1 })
    : onehot;
  const labelLogit = g.op('ReduceSum', [g.op('Mul', [local, g.op('Unsqueeze', [target, g.constInt64([1])])]), g.constInt64([-1])], { keepdims: 1 });
  const above = g.op('ReduceSum', [g.op('Cast', [g.op('Greater', [local, labelLogit])], { to: 1 }), g.constInt64([-1])], { keepdims: 0 });
  const ood = g.op('Cast', [g.op('Not', [g.op('Less', [above, g.constFloat([loss.topK])])])], { to: 1 }); // [B, G]

  // loss_ood: mean over OOD patches of Σ p·log(p + 1e-5), 0 without OOD patches.
  const prob = g.op('Softmax', [local], { axis: -1 });
  const negEntropy = g.op('ReduceSum', [g.op('Mul', [prob, g.op('Log', [g.op('Add', [prob, g.constFloat([1e-5])])])]), g.constInt64([-1])], { keepdims: 0 });
  const nOod = g.op('ReduceSum', [ood], { keepdims: 0 });
  const lossOod = g.op('Div', [g.op('ReduceSum', [g.op('Mul', [ood, negEntropy])], { keepdims: 0 }), g.op('Max', [nOod, g.constFloat([1])])]);
  const locoop = g.op('Add', [lossId, g.op('Mul', [lossOod, g.constFloat([loss.lambda])])]);

  const correct = g.op('ReduceSum', [g.op('Mul', [onehot, g.op('Cast', [g.op('Equal', [global, g.op('ReduceMax', [global], { axes: [-1], keepdims: 1 })])], { to: 1 })])], { keepdims: 0 });

  const trainable = [...adapters.keys()].flatMap((k) => [`${k}.lora_A`, `${k}.lora_B`]);
  const grads = options.gradients === false ? [] : addGradients(g, locoop, trainable);
  g.output(locoop, 'locoop_loss', 'FLOAT', []);
  g.output(lossId, 'loss_id', 'FLOAT', []);
  g.output(lossOod, 'loss_ood', 'FLOAT', []);
  g.output(nOod, 'n_ood', 'FLOAT', []);
  g.output(correct, 'n_correct', 'FLOAT', []);
  const gradients = new Map<string, string>();
  if (options.gradients !== false) trainable.forEach((name, i) => {
    const out = `grad:${name}`;
    g.output(grads[i]!, out, 'FLOAT', name.endsWith('lora_A') ? ['in', 'rank'] : ['rank', 'out']);
    gradients.set(name, out);
  });
  return { bytes: g.toBytes(), gradients, textInGraph: false };
}
