import { addGradients } from '../../autodiff/gradients.js';
import type { Dim, GraphBuilder } from '../../onnx/graph-builder.js';
import { logSoftmax } from '../../onnx/log-softmax.js';
import type { LoraAdapter } from './layers.js';

/** What the LoCoOp training loss needs (SPEC §5, §7). */
export interface TrainLossOptions {
  readonly topK: number;
  readonly lambda: number;
  readonly usePredLabel: boolean;
}

/** A built training graph: forward, LoCoOp loss and the gradients of every LoRA matrix, in one run. */
export interface TrainGraph {
  readonly bytes: Uint8Array;
  /** Gradient output name of each trainable input (`<prefix>.lora_A`, `<prefix>.lora_B`, a prompt context's `ctx`). */
  readonly gradients: ReadonlyMap<string, string>;
  /** Whether the text tower runs in the graph (some adapter is on it); else `text_embeds` is an input. */
  readonly textInGraph: boolean;
}

/**
 * The LoCoOp training loss (SPEC §5) on a graph's global [B, C] and per-patch [B, G, C] logits,
 * its parts as outputs (`locoop_loss`, `loss_id`, `loss_ood`, `n_ood`, `n_correct`) and, unless
 * `gradients: false`, the gradients of every adapter's lora_A / lora_B and of the other trainable
 * inputs in `params` (name → dims, e.g. a prompt context's `ctx`) as `grad:<name>` outputs.
 * Shared by every family's training graph.
 *
 * The OOD-patch mask (label not among a patch's top-K classes) comes from comparisons, so it
 * carries no gradient, as in the reference where it comes from `topk` indices; a label whose
 * logit ties others counts as in the top K.
 */
export function locoopLossAndGradients(
  g: GraphBuilder, global: string, local: string, onehot: string, adapters: ReadonlyMap<string, LoraAdapter>, loss: TrainLossOptions,
  options: { gradients?: boolean; params?: ReadonlyMap<string, readonly Dim[]> } = {},
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

  const params = options.params ?? new Map<string, readonly Dim[]>();
  const trainable = [...[...adapters.keys()].flatMap((k) => [`${k}.lora_A`, `${k}.lora_B`]), ...params.keys()];
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
      g.output(grads[i]!, out, 'FLOAT', params.get(name) ?? (name.endsWith('lora_A') ? ['in', 'rank'] : ['rank', 'out']));
      gradients.set(name, out);
    });
  }
  return gradients;
}
