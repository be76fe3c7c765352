import type { GradRule } from '../context.js';

/**
 * Add, Sub, Mul, Div, Sum and Pow: elementwise with numpy broadcasting, so each input's
 * gradient is summed back to that input's shape (GradContext.unbroadcast).
 */

const addGrad: GradRule = (ctx, node, [dy], needs) => {
  const out = ctx.shape(node.outputs[0]!);
  return node.inputs.map((x, i) => (needs[i] ? ctx.unbroadcast(dy!, out, x, node) : undefined));
};

/** Sum (variadic Add). */
const sumGrad: GradRule = addGrad;

const subGrad: GradRule = (ctx, node, [dy], needs) => {
  const out = ctx.shape(node.outputs[0]!);
  const [a, b] = node.inputs as [string, string];
  // Negate after summing: the reduced tensor is the smaller one.
  return [needs[0] ? ctx.unbroadcast(dy!, out, a, node) : undefined, needs[1] ? ctx.op('Neg', [ctx.unbroadcast(dy!, out, b, node)]) : undefined];
};

const mulGrad: GradRule = (ctx, node, [dy], needs) => {
  const out = ctx.shape(node.outputs[0]!);
  const [a, b] = node.inputs as [string, string];
  if (a === b) {
    // x·x: one product instead of two identical ones.
    return [ctx.op('Mul', [ctx.op('Mul', [dy!, a]), ctx.scalarLike(2, a)]), undefined];
  }
  return [
    needs[0] ? ctx.unbroadcast(ctx.op('Mul', [dy!, b]), out, a, node) : undefined,
    needs[1] ? ctx.unbroadcast(ctx.op('Mul', [dy!, a]), out, b, node) : undefined,
  ];
};

const divGrad: GradRule = (ctx, node, [dy], needs) => {
  const out = ctx.shape(node.outputs[0]!);
  const [a, b] = node.inputs as [string, string];
  const y = node.outputs[0]!;
  const da = needs[0] ? ctx.unbroadcast(ctx.op('Div', [dy!, b]), out, a, node) : undefined;
  // d(a/b)/db = −a/b² = −y/b: reuses the forward quotient.
  const db = needs[1] ? ctx.op('Neg', [ctx.unbroadcast(ctx.op('Div', [ctx.op('Mul', [dy!, y]), b]), out, b, node)]) : undefined;
  return [da, db];
};

/** Pow with an exponent that carries no gradient (a constant or any value not depending on wrt). */
const powGrad: GradRule = (ctx, node, [dy], needs) => {
  const [x, p] = node.inputs as [string, string];
  if (needs[1]) throw ctx.error(node, p, "the gradient with respect to Pow's exponent is not supported (the exponent must not depend on the wrt values)");
  const out = ctx.shape(node.outputs[0]!);
  const c = ctx.constFloats(p) ?? ctx.constInts(p);
  let local: string;
  if (c && c.length === 1) {
    const e = c[0]!;
    if (e === 0) return [ctx.zerosLike(x), undefined];
    if (e === 1) local = dy!;
    else if (e === 2) local = ctx.op('Mul', [dy!, ctx.op('Mul', [x, ctx.scalarLike(2, x)])]);
    else local = ctx.op('Mul', [dy!, ctx.op('Mul', [ctx.op('Pow', [x, ctx.scalarLike(e - 1, x)]), ctx.scalarLike(e, x)])]);
  } else {
    const pc = ctx.dtype(p) === ctx.dtype(x) ? p : ctx.op('CastLike', [p, x]);
    local = ctx.op('Mul', [dy!, ctx.op('Mul', [ctx.op('Pow', [x, ctx.op('Sub', [pc, ctx.scalarLike(1, x)])]), pc])]);
  }
  return [ctx.unbroadcast(local, out, x, node), undefined];
};

/** The arithmetic rules, by ONNX op type. */
export const ARITHMETIC_GRADS: Readonly<Record<string, GradRule>> = {
  Add: addGrad,
  Sub: subGrad,
  Mul: mulGrad,
  Div: divGrad,
  Sum: sumGrad,
  Pow: powGrad,
};
