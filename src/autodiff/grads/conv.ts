import type { GradContext, GradRule, IntVal } from '../context.js';
import type { NodeView } from '../../onnx/graph-builder.js';
import { attrInt, attrInts, attrString } from '../shapes.js';

/**
 * Conv, groups = 1 only (a grouped or depthwise Conv is an error). Gradients for the input, the
 * weight and the bias.
 */

interface ConvParams {
  readonly s: number;
  readonly kernel: number[];
  readonly strides: number[];
  readonly dilations: number[];
  readonly pads: number[];
}

function convParams(ctx: GradContext, node: NodeView, x: string, w: string): ConvParams {
  if (attrInt(node, 'group', 1) !== 1) throw ctx.error(node, x, `Conv gradients support group = 1 only (group = ${attrInt(node, 'group', 1)})`);
  const auto = attrString(node, 'auto_pad', 'NOTSET');
  if (auto !== 'NOTSET' && auto !== 'VALID') throw ctx.error(node, x, `Conv gradients do not support auto_pad '${auto}' (give explicit pads)`);
  const s = ctx.rank(w, node) - 2;
  const kernel = attrInts(node, 'kernel_shape') ?? ctx.staticDims(w)?.slice(2);
  if (!kernel) throw ctx.error(node, w, 'Conv gradients need a static kernel size (kernel_shape or a weight of static shape)');
  return {
    s,
    kernel,
    strides: attrInts(node, 'strides') ?? Array<number>(s).fill(1),
    dilations: attrInts(node, 'dilations') ?? Array<number>(s).fill(1),
    pads: auto === 'VALID' ? Array<number>(2 * s).fill(0) : (attrInts(node, 'pads') ?? Array<number>(2 * s).fill(0)),
  };
}

const convGrad: GradRule = (ctx, node, [dy], needs) => {
  const [x, w, b] = node.inputs as [string, string, string | undefined];
  const p = convParams(ctx, node, x, w);
  const spatialAxes = Array.from({ length: p.s }, (_, i) => i + 2);
  const db = needs[2] && b ? ctx.reduceSum(dy!, [0, ...spatialAxes], false) : undefined;
  const fast = patchifyGrad(ctx, x, w, dy!, p, needs);
  if (fast) return [fast[0], fast[1], db];
  return [needs[0] ? inputGrad(ctx, node, x, w, dy!, p) : undefined, needs[1] ? weightGrad(ctx, node, x, dy!, p) : undefined, db];
};

/**
 * Non-overlapping 2-D patches (stride = kernel, no padding, no dilation, sizes divisible — ViT
 * and Swin patch embeddings): the Conv is a GEMM of the patch matrix P [N·gh·gw, C·p·q] with the
 * weight [O, C·p·q], so dW = Dᵀ·P and dX = D·W (D = dy as [N·gh·gw, O]), refolded. Cheaper than
 * the general transposed convolutions and exact in any float type. Undefined when not applicable.
 */
function patchifyGrad(ctx: GradContext, x: string, w: string, dy: string, p: ConvParams, needs: readonly boolean[]): [string | undefined, string | undefined] | undefined {
  if (p.s !== 2 || p.pads.some((v) => v !== 0) || p.dilations.some((v) => v !== 1) || p.strides.some((v, i) => v !== p.kernel[i])) return undefined;
  const wd = ctx.staticDims(w);
  const xs = ctx.shape(x);
  const [ph, pw] = p.kernel as [number, number];
  const [hh, ww] = [xs?.[2], xs?.[3]];
  if (!wd || typeof hh !== 'number' || typeof ww !== 'number' || hh % ph !== 0 || ww % pw !== 0) return undefined;
  const [o, c] = wd as [number, number];
  const [gh, gw] = [hh / ph, ww / pw];
  const d = ctx.op('Reshape', [ctx.op('Transpose', [dy], { perm: [0, 2, 3, 1] }), ctx.ints([-1, o])]);
  let dw: string | undefined;
  let dx: string | undefined;
  if (needs[1]) {
    const patches = ctx.op('Reshape', [
      ctx.op('Transpose', [ctx.op('Reshape', [x, ctx.ints([-1, c, gh, ph, gw, pw])])], { perm: [0, 2, 4, 1, 3, 5] }),
      ctx.ints([-1, c * ph * pw]),
    ]);
    dw = ctx.op('Reshape', [ctx.op('Gemm', [d, patches], { transA: 1 }), ctx.ints([o, c, ph, pw])]);
  }
  if (needs[0]) {
    const g = ctx.op('Gemm', [d, ctx.op('Reshape', [w, ctx.ints([o, c * ph * pw])])]);
    const folded = ctx.op('Transpose', [ctx.op('Reshape', [g, ctx.ints([-1, gh, gw, c, ph, pw])])], { perm: [0, 3, 1, 4, 2, 5] });
    dx = ctx.op('Reshape', [folded, ctx.intVector([-1, c, hh, ww])]);
  }
  return [dx, dw];
}

/**
 * dX = ConvTranspose(dy, W) with the forward strides, dilations and pads. Input rows that no
 * output reads (a remainder the strides skip) get zero gradient through output_padding. When the
 * input size is known only at run time, the transposed conv keeps everything after the begin
 * pads and a trailing Pad fits it to the input (negative: crops rows that were end padding).
 */
function inputGrad(ctx: GradContext, node: NodeView, x: string, w: string, dy: string, p: ConvParams): string {
  const span = (i: number) => p.dilations[i]! * (p.kernel[i]! - 1) + 1;
  const rem: IntVal[] = [];
  for (let i = 0; i < p.s; i++) {
    rem.push(ctx.imod(ctx.isub(ctx.iadd(ctx.dim(x, i + 2), p.pads[i]! + p.pads[i + p.s]!), span(i)), p.strides[i]!));
  }
  const attrs: Record<string, number[]> = { strides: p.strides, dilations: p.dilations, kernel_shape: p.kernel };
  if (rem.every((r) => typeof r === 'number')) {
    if (rem.some((r) => r !== 0)) attrs.output_padding = rem as number[];
    return ctx.op('ConvTranspose', [dy, w], { ...attrs, pads: p.pads });
  }
  const begin = p.pads.slice(0, p.s);
  const t = ctx.op('ConvTranspose', [dy, w], { ...attrs, pads: [...begin, ...begin.map(() => 0)] });
  const end: IntVal[] = [];
  for (let i = 0; i < p.s; i++) {
    const covered = ctx.iadd(ctx.imul(ctx.isub(ctx.dim(node.outputs[0]!, i + 2), 1), p.strides[i]!), span(i) - begin[i]!);
    end.push(ctx.isub(ctx.dim(x, i + 2), covered));
  }
  return ctx.op('Pad', [t, ctx.intVector([0, 0, ...begin.map(() => 0), 0, 0, ...end])]);
}

/**
 * dW[o, c, k] = Σ_{n,i} dy[n, o, i]·x[n, c, i·stride + k·dilation − pad]: a Conv of x with
 * batch and channels swapped ([C, N, …]) by dy as the kernel ([O, N, …]), stride and dilation
 * exchanged, then cropped to the kernel size (the end pad may yield extra taps) and swapped back.
 */
function weightGrad(ctx: GradContext, node: NodeView, x: string, dy: string, p: ConvParams): string {
  const perm = [1, 0, ...Array.from({ length: p.s }, (_, i) => i + 2)];
  const xt = ctx.op('Transpose', [x], { perm });
  const dyt = ctx.op('Transpose', [dy], { perm });
  let c = ctx.op('Conv', [xt, dyt], { strides: p.dilations, dilations: p.strides, pads: p.pads });
  const xs = ctx.shape(x);
  const ys = ctx.shape(node.outputs[0]!);
  const exact = p.kernel.every((k, i) => {
    const [h, oh] = [xs?.[i + 2], ys?.[i + 2]];
    if (typeof h !== 'number' || typeof oh !== 'number') return false;
    const taps = Math.floor((h + p.pads[i]! + p.pads[i + p.s]! - p.strides[i]! * (oh - 1) - 1) / p.dilations[i]!) + 1;
    return taps === k;
  });
  if (!exact) {
    const axes = Array.from({ length: p.s }, (_, i) => i + 2);
    c = ctx.op('Slice', [c, ctx.ints(axes.map(() => 0)), ctx.ints(p.kernel), ctx.ints(axes)]);
  }
  return ctx.op('Transpose', [c], { perm });
}

/** The convolution rules, by ONNX op type. */
export const CONV_GRADS: Readonly<Record<string, GradRule>> = {
  Conv: convGrad,
};
