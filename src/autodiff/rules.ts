import type { GradRule } from './context.js';
import { addGrad, divGrad, mulGrad, powGrad, subGrad, sumGrad } from './ops/arithmetic.js';
import { convGrad } from './ops/conv.js';
import { gatherElementsGrad, gatherGrad } from './ops/gather.js';
import { castGrad, expandGrad, identityGrad, reshapeGrad, transposeGrad, triluGrad } from './ops/layout.js';
import { gemmGrad, matMulGrad } from './ops/matmul.js';
import { layerNormalizationGrad, logSoftmaxGrad, softmaxGrad } from './ops/normalization.js';
import { globalAveragePoolGrad, reduceL2Grad, reduceLogSumExpGrad, reduceMaxGrad, reduceMeanGrad, reduceMinGrad, reduceSumGrad, reduceSumSquareGrad } from './ops/reduce.js';
import { concatGrad, padGrad, sliceGrad, splitGrad } from './ops/slicing.js';
import { clipGrad, maxGrad, minGrad, whereGrad } from './ops/selection.js';
import { absGrad, erfGrad, expGrad, logGrad, negGrad, reciprocalGrad, reluGrad, sigmoidGrad, sqrtGrad, tanhGrad } from './ops/unary.js';

/**
 * Every gradient rule, by ONNX op type (default domain, opset 13–17 semantics). This table is
 * the only registry: adding an op means writing its rule under ops/ and listing it here.
 */
export const GRADIENT_RULES: Readonly<Record<string, GradRule>> = {
  // arithmetic
  Add: addGrad,
  Sub: subGrad,
  Mul: mulGrad,
  Div: divGrad,
  Sum: sumGrad,
  Pow: powGrad,
  // unary
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
  // linear algebra
  MatMul: matMulGrad,
  Gemm: gemmGrad,
  Conv: convGrad,
  // normalisation
  LayerNormalization: layerNormalizationGrad,
  Softmax: softmaxGrad,
  LogSoftmax: logSoftmaxGrad,
  // reductions
  ReduceSum: reduceSumGrad,
  ReduceMean: reduceMeanGrad,
  ReduceMax: reduceMaxGrad,
  ReduceMin: reduceMinGrad,
  ReduceL2: reduceL2Grad,
  ReduceSumSquare: reduceSumSquareGrad,
  ReduceLogSumExp: reduceLogSumExpGrad,
  GlobalAveragePool: globalAveragePoolGrad,
  // layout
  Identity: identityGrad,
  Cast: castGrad,
  Transpose: transposeGrad,
  Reshape: reshapeGrad,
  Flatten: reshapeGrad,
  Squeeze: reshapeGrad,
  Unsqueeze: reshapeGrad,
  Expand: expandGrad,
  Trilu: triluGrad,
  // slicing and indexing
  Slice: sliceGrad,
  Pad: padGrad,
  Concat: concatGrad,
  Split: splitGrad,
  Gather: gatherGrad,
  GatherElements: gatherElementsGrad,
  // selection
  Where: whereGrad,
  Clip: clipGrad,
  Max: maxGrad,
  Min: minGrad,
};

/**
 * Ops whose outputs carry no gradient even when float: piecewise constant, so the gradient is
 * zero almost everywhere (as tf.stop_gradient would make it). Ops with integer or bool outputs
 * (Shape, Equal, ArgMax, TopK's indices, …) need no listing: only float values carry gradients.
 */
export const ZERO_GRADIENT_OPS: ReadonlySet<string> = new Set(['Floor', 'Ceil', 'Round', 'Sign', 'ConstantOfShape', 'EyeLike', 'RandomNormalLike', 'RandomUniformLike']);
