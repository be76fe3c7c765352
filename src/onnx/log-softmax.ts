import type { GraphBuilder } from './graph-builder.js';

/**
 * log softmax(x) along `axis`, as x − m − log Σ exp(x − m) with m = max(x) (float32 or float64).
 * ONNX's LogSoftmax computes the same, but ONNX Runtime's WebGPU provider has no kernel for it,
 * so it would run on the CPU with a copy to the host and back at every run; and that provider's
 * ReduceLogSumExp skips the max, so exp overflows to ∞ beyond x ≈ 88 (CLIP's logits reach 100).
 * Every op here runs on the device. The max only steadies the arithmetic: the gradient through it
 * is zero (autodiff sums −Σdy + Σ softmax·Σdy for it, which cancels to rounding).
 *
 * @example
 * const logp = logSoftmax(g, logits, -1); // [B, C], as g.op('LogSoftmax', [logits], { axis: -1 })
 */
export function logSoftmax(g: GraphBuilder, x: string, axis: number): string {
  const shifted = g.op('Sub', [x, g.op('ReduceMax', [x], { axes: [axis], keepdims: 1 })]);
  const logSum = g.op('Log', [g.op('ReduceSum', [g.op('Exp', [shifted]), g.constInt64([axis])], { keepdims: 1 })]);
  return g.op('Sub', [shifted, logSum]);
}
