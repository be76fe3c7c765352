import type { GradRule } from '../context.js';
import { attrFloat, attrInt, normAxis } from '../shapes.js';

/** LayerNormalization, Softmax and LogSoftmax. */

/**
 * LayerNormalization over axes [axis, rank). With x̂ = (x − μ)·σ⁻¹ and g = dy·scale:
 * dx = σ⁻¹·(g − mean(g) − x̂·mean(g·x̂)), dscale = Σ dy·x̂, dbias = Σ dy (sums over the leading
 * axes). μ and σ⁻¹ are recomputed: the forward node's optional Mean/InvStdDev outputs are float
 * (stash_type) even for double inputs, and recovering x̂ from y would divide by scale.
 */
const layerNormalizationGrad: GradRule = (ctx, node, dys, needs) => {
  const [dy, dMean, dInv] = dys;
  const [x, scale, bias] = node.inputs as [string, string, string | undefined];
  if (dMean || dInv) throw ctx.error(node, (dMean ? node.outputs[1] : node.outputs[2])!, "gradients through LayerNormalization's Mean/InvStdDev outputs are not supported");
  if (!dy) return node.inputs.map(() => undefined);
  const r = ctx.rank(x, node);
  const a = normAxis(attrInt(node, 'axis', -1), r);
  const axes = Array.from({ length: r - a }, (_, i) => a + i);
  // ORT reads epsilon as the float32 attribute value.
  const eps = ctx.scalarLike(Math.fround(attrFloat(node, 'epsilon', 1e-5)), x);
  const xc = ctx.op('Sub', [x, ctx.reduceMean(x, axes, true)]);
  const inv = ctx.op('Reciprocal', [ctx.op('Sqrt', [ctx.op('Add', [ctx.reduceMean(ctx.op('Mul', [xc, xc]), axes, true), eps])])]);
  const xhat = ctx.op('Mul', [xc, inv]);
  const out = ctx.shape(node.outputs[0]!);
  let dx: string | undefined;
  if (needs[0]) {
    const gx = ctx.op('Mul', [dy, scale]);
    const m1 = ctx.reduceMean(gx, axes, true);
    const m2 = ctx.reduceMean(ctx.op('Mul', [gx, xhat]), axes, true);
    dx = ctx.op('Mul', [ctx.op('Sub', [ctx.op('Sub', [gx, m1]), ctx.op('Mul', [xhat, m2])]), inv]);
  }
  const dScale = needs[1] ? ctx.unbroadcast(ctx.op('Mul', [dy, xhat]), out, scale, node) : undefined;
  const dBias = needs[2] && bias ? ctx.unbroadcast(dy, out, bias, node) : undefined;
  return [dx, dScale, dBias];
};

/** dx = y·(dy − Σ dy·y) along the axis (opset ≥ 13 semantics: one axis). */
const softmaxGrad: GradRule = (ctx, node, [dy]) => {
  const y = node.outputs[0]!;
  const axis = attrInt(node, 'axis', -1);
  const s = ctx.reduceSum(ctx.op('Mul', [dy!, y]), [axis], true);
  return [ctx.op('Mul', [y, ctx.op('Sub', [dy!, s])])];
};

/** dx = dy − softmax(x)·Σ dy, with softmax(x) = exp(y). */
const logSoftmaxGrad: GradRule = (ctx, node, [dy]) => {
  const y = node.outputs[0]!;
  const axis = attrInt(node, 'axis', -1);
  return [ctx.op('Sub', [dy!, ctx.op('Mul', [ctx.op('Exp', [y]), ctx.reduceSum(dy!, [axis], true)])])];
};

/** The normalisation rules, by ONNX op type. */
export const NORMALIZATION_GRADS: Readonly<Record<string, GradRule>> = {
  LayerNormalization: layerNormalizationGrad,
  Softmax: softmaxGrad,
  LogSoftmax: logSoftmaxGrad,
};
