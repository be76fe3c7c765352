import type { NodeView } from '../../onnx/graph-builder.js';
import { OnnxDataType } from '../../onnx/proto.js';
import type { GradContext, GradRule } from '../context.js';
import { attrInt, attrInts } from '../shapes.js';

/**
 * Reductions. The output gradient (and output, where needed) is brought back to the input's
 * rank by Unsqueeze when keepdims = 0, then broadcast: nothing of the input's size is built
 * except the result itself.
 */

interface Reduction {
  /** Static axes, 'all', or a runtime int64 axes tensor. */
  readonly axes: number[] | 'all' | { readonly rt: string };
  readonly keepdims: boolean;
  /** noop_with_empty_axes with no axes: the node is an identity. */
  readonly identity: boolean;
}

function reductionOf(ctx: GradContext, node: NodeView): Reduction {
  const keepdims = attrInt(node, 'keepdims', 1) === 1;
  const attr = attrInts(node, 'axes');
  let axes: Reduction['axes'] = 'all';
  if (attr) axes = attr;
  else if (node.inputs[1]) {
    const c = ctx.constInts(node.inputs[1]);
    axes = c ? (c.length ? c : 'all') : { rt: node.inputs[1] };
  }
  const identity = axes === 'all' && attrInt(node, 'noop_with_empty_axes', 0) === 1;
  return { axes, keepdims, identity };
}

/** `v` (shaped like the output) with the reduced axes restored as size 1. */
function kept(ctx: GradContext, r: Reduction, v: string): string {
  if (r.keepdims || r.axes === 'all') return v; // a scalar broadcasts as it is
  return ctx.op('Unsqueeze', [v, Array.isArray(r.axes) ? ctx.ints(r.axes) : r.axes.rt]);
}

function sumKeep(ctx: GradContext, r: Reduction, v: string): string {
  if (r.axes === 'all') return ctx.op('ReduceSum', [v], { keepdims: 1 });
  return ctx.op('ReduceSum', [v, Array.isArray(r.axes) ? ctx.ints(r.axes) : r.axes.rt], { keepdims: 1 });
}

const reduceSumGrad: GradRule = (ctx, node, [dy]) => {
  const r = reductionOf(ctx, node);
  if (r.identity) return [dy, undefined];
  const x = node.inputs[0]!;
  return [ctx.op('Expand', [kept(ctx, r, dy!), ctx.shapeOf(x)]), undefined];
};

/**
 * The element count of `v` as a scalar of its float type, from its shape alone: ONNX's Size has
 * no kernel in ONNX Runtime's WebGPU provider, which would copy the whole tensor to the host to
 * count it.
 */
function elementCount(ctx: GradContext, v: string): string {
  return ctx.op('Cast', [ctx.op('ReduceProd', [ctx.shapeOf(v)], { keepdims: 0 })], { to: OnnxDataType[ctx.dtype(v)] });
}

const reduceMeanGrad: GradRule = (ctx, node, [dy]) => {
  const r = reductionOf(ctx, node);
  if (r.identity) return [dy, undefined];
  const x = node.inputs[0]!;
  const y = node.outputs[0]!;
  const xd = ctx.staticDims(x);
  const yd = ctx.staticDims(y);
  let scaled: string;
  if (xd && yd) {
    const count = xd.reduce((a, b) => a * b, 1) / yd.reduce((a, b) => a * b, 1);
    scaled = ctx.op('Mul', [dy!, ctx.scalarLike(1 / count, x)]);
  } else {
    const count = ctx.op('Div', [elementCount(ctx, x), elementCount(ctx, y)]);
    scaled = ctx.op('Div', [dy!, count]);
  }
  return [ctx.op('Expand', [kept(ctx, r, scaled), ctx.shapeOf(x)]), undefined];
};

/** ReduceMax/ReduceMin: the gradient goes to the extremal positions, split evenly among ties. */
const reduceMaxGrad: GradRule = (ctx, node, [dy]) => {
  const r = reductionOf(ctx, node);
  if (r.identity) return [dy, undefined];
  const x = node.inputs[0]!;
  const mask = ctx.op('Cast', [ctx.op('Equal', [x, kept(ctx, r, node.outputs[0]!)])], { to: OnnxDataType[ctx.dtype(x)] });
  return [ctx.op('Mul', [mask, ctx.op('Div', [kept(ctx, r, dy!), sumKeep(ctx, r, mask)])]), undefined];
};
const reduceMinGrad: GradRule = reduceMaxGrad;

/** y = ‖x‖₂: dx = x·dy/y (NaN where y = 0, as x/‖x‖ itself). */
const reduceL2Grad: GradRule = (ctx, node, [dy]) => {
  const r = reductionOf(ctx, node);
  if (r.identity) throw ctx.error(node, node.inputs[0]!, 'noop_with_empty_axes without axes is not supported');
  const x = node.inputs[0]!;
  return [ctx.op('Mul', [x, kept(ctx, r, ctx.op('Div', [dy!, node.outputs[0]!]))]), undefined];
};

const reduceSumSquareGrad: GradRule = (ctx, node, [dy]) => {
  const r = reductionOf(ctx, node);
  const x = node.inputs[0]!;
  if (r.identity) throw ctx.error(node, x, 'noop_with_empty_axes without axes is not supported');
  return [ctx.op('Mul', [x, kept(ctx, r, ctx.op('Mul', [dy!, ctx.scalarLike(2, x)]))]), undefined];
};

/** dx = exp(x − y)·dy: softmax over the reduced axes. */
const reduceLogSumExpGrad: GradRule = (ctx, node, [dy]) => {
  const r = reductionOf(ctx, node);
  if (r.identity) return [dy, undefined];
  const x = node.inputs[0]!;
  return [ctx.op('Mul', [ctx.op('Exp', [ctx.op('Sub', [x, kept(ctx, r, node.outputs[0]!)])]), kept(ctx, r, dy!)]), undefined];
};

/** GlobalAveragePool over the spatial axes: the mean's gradient, spread evenly. */
const globalAveragePoolGrad: GradRule = (ctx, node, [dy]) => {
  const x = node.inputs[0]!;
  const xd = ctx.staticDims(x);
  let scaled: string;
  if (xd) {
    scaled = ctx.op('Mul', [dy!, ctx.scalarLike(1 / xd.slice(2).reduce((a, b) => a * b, 1), x)]);
  } else {
    const count = ctx.op('Div', [elementCount(ctx, x), elementCount(ctx, node.outputs[0]!)]);
    scaled = ctx.op('Div', [dy!, count]);
  }
  return [ctx.op('Expand', [scaled, ctx.shapeOf(x)])];
};

/** The reductions rules, by ONNX op type. */
export const REDUCE_GRADS: Readonly<Record<string, GradRule>> = {
  ReduceSum: reduceSumGrad,
  ReduceMean: reduceMeanGrad,
  ReduceMax: reduceMaxGrad,
  ReduceMin: reduceMinGrad,
  ReduceL2: reduceL2Grad,
  ReduceSumSquare: reduceSumSquareGrad,
  ReduceLogSumExp: reduceLogSumExpGrad,
  GlobalAveragePool: globalAveragePoolGrad,
};
