import { OnnxDataType } from '../../onnx/proto.js';
import type { GradRule } from '../context.js';
import { attrInts } from '../shapes.js';

/** Ops that only move, relabel or copy elements: Identity, Cast, Transpose, the reshapes, Expand, Trilu. */

const identityGrad: GradRule = (_ctx, _node, [dy]) => [dy];

/** Cast between float types: the gradient is cast back. */
const castGrad: GradRule = (ctx, node, [dy]) => {
  const x = node.inputs[0]!;
  return [ctx.dtype(x) === ctx.dtype(node.outputs[0]!) ? dy : ctx.op('Cast', [dy!], { to: OnnxDataType[ctx.dtype(x)] })];
};

const transposeGrad: GradRule = (ctx, node, [dy]) => {
  const perm = attrInts(node, 'perm');
  if (!perm) return [ctx.op('Transpose', [dy!])]; // the default reversal is its own inverse
  const inv = new Array<number>(perm.length);
  perm.forEach((p, i) => (inv[p] = i));
  return [ctx.op('Transpose', [dy!], { perm: inv })];
};

/** Reshape, Flatten, Squeeze, Unsqueeze: reshape the gradient to the input's shape. */
const reshapeGrad: GradRule = (ctx, node, [dy]) => [ctx.op('Reshape', [dy!, ctx.shapeOf(node.inputs[0]!)])];

/** Expand broadcasts, so its gradient sums over the broadcast axes. */
const expandGrad: GradRule = (ctx, node, [dy]) => [ctx.unbroadcast(dy!, ctx.shape(node.outputs[0]!), node.inputs[0]!, node), undefined];

/** Trilu keeps a triangle: the same triangle of the gradient. */
const triluGrad: GradRule = (ctx, node, [dy]) => [ctx.op('Trilu', node.inputs[1] ? [dy!, node.inputs[1]] : [dy!], { ...node.attrs }), undefined];

/** The layout rules, by ONNX op type. */
export const LAYOUT_GRADS: Readonly<Record<string, GradRule>> = {
  Identity: identityGrad,
  Cast: castGrad,
  Transpose: transposeGrad,
  Reshape: reshapeGrad,
  Flatten: reshapeGrad,
  Squeeze: reshapeGrad,
  Unsqueeze: reshapeGrad,
  Expand: expandGrad,
  Trilu: triluGrad,
};
