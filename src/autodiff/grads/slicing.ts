import type { GradContext, GradRule, IntVal } from '../context.js';
import { attrInt, attrString, normAxis } from '../shapes.js';

/** Slice, Pad, Concat, Split: the gradient is cut or padded back into place. */

// Slice bounds such as INT64_MAX do not survive a round trip through doubles; anything this
// large means "to the end" and is clamped before any arithmetic.
const BIG = 2 ** 40;

/** [start, end) of a positive-step slice along an axis of size d, clamped as ONNX does. */
function clampedRange(ctx: GradContext, s: number, e: number, d: IntVal): { start: IntVal; end: IntVal } {
  const bound = (v: number): IntVal => {
    if (v >= BIG) return d;
    if (v <= -BIG) return 0;
    return v >= 0 ? ctx.imin(v, d) : ctx.imax(ctx.iadd(d, v), 0);
  };
  return { start: s === 0 ? 0 : bound(s), end: bound(e) };
}

/**
 * Slice with constant starts/ends/axes/steps (steps > 0). The gradient is dy padded with zeros
 * back to the input's extent (one Pad; negative end pads crop). A step k > 1 first interleaves
 * k − 1 zeros after each element along that axis (Unsqueeze, Pad, Reshape) — no index tensors
 * or scatters, so a strided slice (Swin's patch merging) costs one copy of the gradient.
 */
const sliceGrad: GradRule = (ctx, node, [dy]) => {
  const [x, startsV, endsV, axesV, stepsV] = node.inputs as [string, string, string, string | undefined, string | undefined];
  const starts = ctx.constInts(startsV);
  const ends = ctx.constInts(endsV);
  const axes = axesV ? ctx.constInts(axesV) : starts?.map((_, i) => i);
  const steps = stepsV ? ctx.constInts(stepsV) : starts?.map(() => 1);
  if (!starts || !ends || !axes || !steps) throw ctx.error(node, x, 'Slice gradients need constant starts, ends, axes and steps');
  const r = ctx.rank(x, node);
  const begin: IntVal[] = Array<IntVal>(r).fill(0);
  const end: IntVal[] = Array<IntVal>(r).fill(0);
  let cur = dy!;
  axes.forEach((axis, i) => {
    const a = normAxis(axis, r);
    const step = steps[i]!;
    if (step <= 0) throw ctx.error(node, x, `Slice gradients need positive steps (axis ${axis} has step ${step})`);
    const d = ctx.dim(x, a);
    const range = clampedRange(ctx, starts[i]!, ends[i]!, d);
    const count = ctx.imax(ctx.idiv(ctx.iadd(ctx.isub(range.end, range.start), step - 1), step), 0);
    if (step > 1) {
      const u = ctx.op('Unsqueeze', [cur, ctx.ints([a + 1])]);
      const pads = Array<number>(2 * (r + 1)).fill(0);
      pads[r + 1 + a + 1] = step - 1;
      const kvec = Array<number>(r).fill(1);
      kvec[a] = step;
      const shape = ctx.op('Mul', [ctx.op('Shape', [cur]), ctx.ints(kvec)]);
      cur = ctx.op('Reshape', [ctx.op('Pad', [u, ctx.ints(pads)]), shape]);
    }
    begin[a] = range.start;
    end[a] = ctx.isub(ctx.isub(d, range.start), ctx.imul(count, step));
  });
  const pads = [...begin, ...end];
  if (pads.every((p) => p === 0)) return [cur];
  return [ctx.op('Pad', [cur, ctx.intVector(pads)])];
};

/** Constant-mode Pad: the gradient is the inverse Pad (negative pads crop; forward crops pad back with zeros). */
const padGrad: GradRule = (ctx, node, [dy], needs) => {
  const [x, padsV, cval, axesV] = node.inputs as [string, string, string | undefined, string | undefined];
  const mode = attrString(node, 'mode', 'constant');
  if (mode !== 'constant') throw ctx.error(node, x, `Pad gradients support mode 'constant' only, not '${mode}'`);
  if (needs[2]) throw ctx.error(node, cval!, "the gradient with respect to Pad's constant_value is not supported");
  const pads = ctx.constInts(padsV);
  const neg = pads ? ctx.ints(pads.map((p) => -p)) : ctx.op('Neg', [padsV]);
  return [ctx.op('Pad', axesV ? [dy!, neg, '', axesV] : [dy!, neg])];
};

/**
 * Concat: one Split of the gradient when every input needs its part, else a Slice per input
 * that does, so a large constant operand costs nothing.
 */
const concatGrad: GradRule = (ctx, node, [dy], needs) => {
  const r = ctx.rank(node.inputs[0]!, node);
  const a = normAxis(attrInt(node, 'axis', 0), r);
  const sizes = node.inputs.map((x) => ctx.dim(x, a));
  if (needs.every(Boolean) && node.inputs.length > 1) {
    return ctx.g.opN('Split', [dy!, ctx.intVector(sizes)], { axis: a }, { outputs: node.inputs.length });
  }
  let offset: IntVal = 0;
  return node.inputs.map((_, i) => {
    const start = offset;
    offset = ctx.iadd(offset, sizes[i]!);
    return needs[i] ? ctx.op('Slice', [dy!, ctx.intVector([start]), ctx.intVector([offset]), ctx.ints([a])]) : undefined;
  });
};

/** Split: the output gradients concatenated back, zeros for outputs that received none. */
const splitGrad: GradRule = (ctx, node, dys) => {
  const x = node.inputs[0]!;
  const a = normAxis(attrInt(node, 'axis', 0), ctx.rank(x, node));
  const parts = node.outputs.map((o, k) => dys[k] ?? ctx.zerosLike(o));
  return [parts.length === 1 ? parts[0] : ctx.op('Concat', parts, { axis: a }), undefined];
};

/** The slicing and padding rules, by ONNX op type. */
export const SLICING_GRADS: Readonly<Record<string, GradRule>> = {
  Slice: sliceGrad,
  Pad: padGrad,
  Concat: concatGrad,
  Split: splitGrad,
};
