import type { GradRule } from './context.js';
import { ARITHMETIC_GRADS } from './grads/arithmetic.js';
import { UNARY_GRADS } from './grads/unary.js';
import { MATMUL_GRADS } from './grads/matmul.js';
import { CONV_GRADS } from './grads/conv.js';
import { NORMALIZATION_GRADS } from './grads/normalization.js';
import { REDUCE_GRADS } from './grads/reduce.js';
import { LAYOUT_GRADS } from './grads/layout.js';
import { SLICING_GRADS } from './grads/slicing.js';
import { GATHER_GRADS } from './grads/gather.js';
import { SELECTION_GRADS } from './grads/selection.js';

/**
 * Every gradient rule, by ONNX op type (default domain, opset 13–17 semantics): the union of the
 * tables in grads/, one file per operator group. Adding an op means writing its rule in grads/
 * and listing it in that file's table.
 */
export const GRADIENT_RULES: Readonly<Record<string, GradRule>> = {
  ...ARITHMETIC_GRADS,
  ...UNARY_GRADS,
  ...MATMUL_GRADS,
  ...CONV_GRADS,
  ...NORMALIZATION_GRADS,
  ...REDUCE_GRADS,
  ...LAYOUT_GRADS,
  ...SLICING_GRADS,
  ...GATHER_GRADS,
  ...SELECTION_GRADS,
};

/**
 * Ops whose outputs carry no gradient even when float: piecewise constant, so the gradient is
 * zero almost everywhere (as tf.stop_gradient would make it). Ops with integer or bool outputs
 * (Shape, Equal, ArgMax, TopK's indices, …) need no listing: only float values carry gradients.
 */
export const ZERO_GRADIENT_OPS: ReadonlySet<string> = new Set(['Floor', 'Ceil', 'Round', 'Sign', 'ConstantOfShape', 'EyeLike', 'RandomNormalLike', 'RandomUniformLike']);
