import { OnnxDataType } from '../../onnx/proto.js';
import type { GradRule } from '../context.js';

/** Where, Clip, Max, Min: the gradient goes to whichever input was selected. */

/** The condition carries no gradient. */
const whereGrad: GradRule = (ctx, node, [dy], needs) => {
  const [c, x, y] = node.inputs as [string, string, string];
  if (needs[0]) throw ctx.error(node, c, "Where's condition cannot carry a gradient");
  const out = ctx.shape(node.outputs[0]!);
  const zero = ctx.scalarLike(0, node.outputs[0]!);
  return [
    undefined,
    needs[1] ? ctx.unbroadcast(ctx.op('Where', [c, dy!, zero]), out, x, node) : undefined,
    needs[2] ? ctx.unbroadcast(ctx.op('Where', [c, zero, dy!]), out, y, node) : undefined,
  ];
};

/** Gradient where min ≤ x ≤ max (bounds inclusive, as PyTorch's clamp); bounds carry none. */
const clipGrad: GradRule = (ctx, node, [dy], needs) => {
  const [x, lo, hi] = node.inputs as [string, string | undefined, string | undefined];
  if (needs[1] || needs[2]) throw ctx.error(node, (needs[1] ? lo : hi)!, "gradients with respect to Clip's min/max are not supported");
  let inside: string | undefined;
  if (lo) inside = ctx.op('GreaterOrEqual', [x, lo]);
  if (hi) {
    const le = ctx.op('LessOrEqual', [x, hi]);
    inside = inside ? ctx.op('And', [inside, le]) : le;
  }
  return [inside ? ctx.op('Where', [inside, dy!, ctx.scalarLike(0, x)]) : dy];
};

/**
 * Elementwise Max/Min (variadic, broadcasting): each input gets the gradient where it equals
 * the result; ties split it evenly (so Max(x, x) passes dy/2 to each operand, dy in total).
 */
const maxGrad: GradRule = (ctx, node, [dy], needs) => {
  const y = node.outputs[0]!;
  const out = ctx.shape(y);
  const to = OnnxDataType[ctx.dtype(y)];
  const masks = node.inputs.map((x) => ctx.op('Cast', [ctx.op('Equal', [x, y])], { to }));
  if (masks.length === 1) return [dy];
  const count = masks.reduce((acc, m) => ctx.op('Add', [acc, m]));
  const share = ctx.op('Div', [dy!, count]);
  return node.inputs.map((x, i) => (needs[i] ? ctx.unbroadcast(ctx.op('Mul', [share, masks[i]!]), out, x, node) : undefined));
};
const minGrad: GradRule = maxGrad;

/** The selection rules, by ONNX op type. */
export const SELECTION_GRADS: Readonly<Record<string, GradRule>> = {
  Where: whereGrad,
  Clip: clipGrad,
  Max: maxGrad,
  Min: minGrad,
};
