import type { GradRule } from '../context.js';

/**
 * Elementwise unary functions. Where the derivative is a function of the output (Sigmoid, Tanh,
 * Exp, Sqrt, Reciprocal) it is computed from the forward output, which the graph keeps anyway.
 */

const negGrad: GradRule = (ctx, _node, [dy]) => [ctx.op('Neg', [dy!])];

const sigmoidGrad: GradRule = (ctx, node, [dy]) => {
  const y = node.outputs[0]!;
  return [ctx.op('Mul', [dy!, ctx.op('Mul', [y, ctx.op('Sub', [ctx.scalarLike(1, y), y])])])];
};

const tanhGrad: GradRule = (ctx, node, [dy]) => {
  const y = node.outputs[0]!;
  return [ctx.op('Mul', [dy!, ctx.op('Sub', [ctx.scalarLike(1, y), ctx.op('Mul', [y, y])])])];
};

/** d erf(x)/dx = 2/√π · exp(−x²). */
const erfGrad: GradRule = (ctx, node, [dy]) => {
  const x = node.inputs[0]!;
  const e = ctx.op('Exp', [ctx.op('Neg', [ctx.op('Mul', [x, x])])]);
  return [ctx.op('Mul', [dy!, ctx.op('Mul', [e, ctx.scalarLike(2 / Math.sqrt(Math.PI), x)])])];
};

/** Gradient 0 at x = 0 (as PyTorch). */
const reluGrad: GradRule = (ctx, node, [dy]) => {
  const x = node.inputs[0]!;
  return [ctx.op('Where', [ctx.op('Greater', [x, ctx.scalarLike(0, x)]), dy!, ctx.scalarLike(0, x)])];
};

const expGrad: GradRule = (ctx, node, [dy]) => [ctx.op('Mul', [dy!, node.outputs[0]!])];

const logGrad: GradRule = (ctx, node, [dy]) => [ctx.op('Div', [dy!, node.inputs[0]!])];

const sqrtGrad: GradRule = (ctx, node, [dy]) => {
  const y = node.outputs[0]!;
  return [ctx.op('Div', [ctx.op('Mul', [dy!, ctx.scalarLike(0.5, y)]), y])];
};

/** Sign(x)·dy: gradient 0 at x = 0 (as PyTorch). */
const absGrad: GradRule = (ctx, node, [dy]) => [ctx.op('Mul', [dy!, ctx.op('Sign', [node.inputs[0]!])])];

const reciprocalGrad: GradRule = (ctx, node, [dy]) => {
  const y = node.outputs[0]!;
  return [ctx.op('Neg', [ctx.op('Mul', [dy!, ctx.op('Mul', [y, y])])])];
};

/** The unary rules, by ONNX op type. */
export const UNARY_GRADS: Readonly<Record<string, GradRule>> = {
  Neg: negGrad,
  Sigmoid: sigmoidGrad,
  Tanh: tanhGrad,
  Erf: erfGrad,
  Relu: reluGrad,
  Exp: expGrad,
  Log: logGrad,
  Sqrt: sqrtGrad,
  Abs: absGrad,
  Reciprocal: reciprocalGrad,
};
