import { OnnxDataType } from '../../onnx/proto.js';
import type { GradRule, IntVal } from '../context.js';
import { attrInt, normAxis } from '../shapes.js';

/**
 * Gather and GatherElements: the gradient is scattered back with reduction 'add', so indices
 * that repeat (a position-bias table, token embeddings) accumulate. Indices carry no gradient
 * and may be constants or fed; negative indices count from the end, as in the forward op.
 */

/**
 * Axis 0: one ScatterND of dy into zeros, indices as they are (idx[..., None]). Other axes: a
 * ScatterElements along the axis, with indices broadcast to dy's size — a tensor the size of
 * the gathered part (e.g. the CLS row), rather than transposing the whole input twice. Those
 * broadcast indices are int32: ONNX Runtime's WebGPU provider has no int64 Expand, so int64
 * ones would be expanded on the CPU and copied to the device at every run.
 */
const gatherGrad: GradRule = (ctx, node, [dy]) => {
  const [x, idx] = node.inputs as [string, string];
  const r = ctx.rank(x, node);
  const a = normAxis(attrInt(node, 'axis', 0), r);
  const zeros = ctx.zerosLike(x);
  if (a === 0) {
    return [ctx.op('ScatterND', [zeros, ctx.op('Unsqueeze', [idx, ctx.ints([-1])]), dy!], { reduction: 'add' }), undefined];
  }
  const idxShape = ctx.shape(idx);
  if (!idxShape) throw ctx.error(node, idx, 'the rank of the indices cannot be inferred statically');
  const n = idxShape.every((d) => typeof d === 'number') ? (idxShape as number[]).reduce((p, q) => p * q, 1) : -1;
  const dims: IntVal[] = [];
  for (let i = 0; i < r; i++) dims.push(i === a ? n : ctx.dim(x, i));
  const dy2 = idxShape.length === 1 ? dy! : ctx.op('Reshape', [dy!, ctx.intVector(dims)]);
  const trailing = Array<number>(r - 1 - a).fill(1);
  const known = ctx.constInts(idx);
  const size = ctx.dim(x, a);
  const idx2 = known
    ? ctx.g.initializer(ctx.g.uniqueName('gather_grad_index'), Int32Array.from(known, (i) => (i < 0 && typeof size === 'number' ? i + size : i)), [known.length, ...trailing])
    : ctx.op('Reshape', [ctx.op('Cast', [idx], { to: OnnxDataType.INT32 }), ctx.ints([-1, ...trailing])]);
  const expanded = ctx.op('Expand', [idx2, n === -1 ? ctx.op('Shape', [dy2]) : ctx.intVector(dims)]);
  return [ctx.op('ScatterElements', [zeros, expanded, dy2], { axis: a, reduction: 'add' }), undefined];
};

const gatherElementsGrad: GradRule = (ctx, node, [dy]) => {
  const [x, idx] = node.inputs as [string, string];
  const a = normAxis(attrInt(node, 'axis', 0), ctx.rank(x, node));
  return [ctx.op('ScatterElements', [ctx.zerosLike(x), idx, dy!], { axis: a, reduction: 'add' }), undefined];
};

/** The indexing rules, by ONNX op type. */
export const GATHER_GRADS: Readonly<Record<string, GradRule>> = {
  Gather: gatherGrad,
  GatherElements: gatherElementsGrad,
};
