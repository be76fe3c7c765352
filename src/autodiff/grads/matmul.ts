import { float, type AttrValue } from '../../onnx/graph-builder.js';
import type { GradContext, GradRule } from '../context.js';
import { attrFloat, attrInt } from '../shapes.js';

/** MatMul and Gemm. */

function swapLast2(ctx: GradContext, v: string, rank: number): string {
  const perm = Array.from({ length: rank }, (_, i) => i);
  [perm[rank - 2], perm[rank - 1]] = [perm[rank - 1]!, perm[rank - 2]!];
  return ctx.op('Transpose', [v], { perm });
}

/**
 * Y = A·B with numpy batching. When B is a 2-D weight [K, N] (linear layers, LoRA factors),
 * both gradients are single GEMMs over the flattened rows, with the transposition done by
 * Gemm's transA/transB flags rather than a Transpose of the weight: dA = dY·Bᵀ and
 * dB = A₂ᵀ·dY₂, which also sums over every batch dim at once. Otherwise (batched attention
 * products), dA = dY·Bᵀ and dB = Aᵀ·dY batched, summed back over broadcast batch dims.
 * 1-D operands are not supported.
 */
const matMulGrad: GradRule = (ctx, node, [dy], needs) => {
  const [a, b] = node.inputs as [string, string];
  const ra = ctx.rank(a, node);
  const rb = ctx.rank(b, node);
  if (ra < 2 || rb < 2) throw ctx.error(node, ra < 2 ? a : b, 'MatMul gradients need operands of rank ≥ 2 (1-D operands are not supported)');
  let da: string | undefined;
  let db: string | undefined;
  if (rb === 2) {
    const n = ctx.dim(b, 1);
    const k = ctx.dim(b, 0);
    const dy2 = ra === 2 ? dy! : ctx.op('Reshape', [dy!, ctx.intVector([-1, n])]);
    if (needs[0]) {
      const g = ctx.op('Gemm', [dy2, b], { transB: 1 });
      da = ra === 2 ? g : ctx.op('Reshape', [g, ctx.shapeOf(a)]);
    }
    if (needs[1]) {
      const a2 = ra === 2 ? a : ctx.op('Reshape', [a, ctx.intVector([-1, k])]);
      db = ctx.op('Gemm', [a2, dy2], { transA: 1 });
    }
    return [da, db];
  }
  const out = ctx.shape(node.outputs[0]!)!;
  const batch = out.slice(0, -2);
  if (needs[0]) {
    const g = ctx.op('MatMul', [dy!, swapLast2(ctx, b, rb)]);
    da = ctx.unbroadcast(g, [...batch, ...ctx.shape(a)!.slice(-2)], a, node);
  }
  if (needs[1]) {
    const g = ctx.op('MatMul', [swapLast2(ctx, a, ra), dy!]);
    db = ctx.unbroadcast(g, [...batch, ...ctx.shape(b)!.slice(-2)], b, node);
  }
  return [da, db];
};

/** Y = α·A'·B' + β·C with A' = A or Aᵀ, B' = B or Bᵀ: each gradient is one Gemm with the matching flags. */
const gemmGrad: GradRule = (ctx, node, [dy], needs) => {
  const [a, b, c] = node.inputs as [string, string, string | undefined];
  const alpha = attrFloat(node, 'alpha', 1);
  const beta = attrFloat(node, 'beta', 1);
  const ta = attrInt(node, 'transA', 0) === 1;
  const tb = attrInt(node, 'transB', 0) === 1;
  const gemm = (x: string, y: string, tx: boolean, tY: boolean): string => {
    const attrs: Record<string, AttrValue> = {};
    if (tx) attrs.transA = 1;
    if (tY) attrs.transB = 1;
    if (alpha !== 1) attrs.alpha = float(alpha);
    return ctx.op('Gemm', [x, y], attrs);
  };
  // dA' = dY·B'ᵀ; dA = dA' or its transpose, written with operands swapped.
  const da = needs[0] ? (ta ? gemm(b, dy!, tb, true) : gemm(dy!, b, false, !tb)) : undefined;
  // dB' = A'ᵀ·dY.
  const db = needs[1] ? (tb ? gemm(dy!, a, true, ta) : gemm(a, dy!, !ta, false)) : undefined;
  let dc: string | undefined;
  if (needs[2] && c) {
    const scaled = beta === 1 ? dy! : ctx.op('Mul', [dy!, ctx.scalarLike(beta, c)]);
    dc = ctx.unbroadcast(scaled, ctx.shape(node.outputs[0]!), c, node);
  }
  return [da, db, dc];
};

/** The linear algebra rules, by ONNX op type. */
export const MATMUL_GRADS: Readonly<Record<string, GradRule>> = {
  MatMul: matMulGrad,
  Gemm: gemmGrad,
};
