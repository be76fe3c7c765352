import { setBatchSize } from './batch-size.js';
import { weightsToFloat16 } from './fp16-weights.js';
import { decodeModel, encodeModel } from './model-proto.js';
import { quantizeMatMuls } from './quantize.js';

/** How a finished model stores (and, for int8, computes) its weights. */
export type Precision = 'fp32' | 'fp16' | 'int8';

/** The precisions, in order of size. */
export const PRECISIONS: readonly Precision[] = ['fp32', 'fp16', 'int8'];

/** Checks a precision name (a flag value, a manifest field), listing the valid ones when it is not. */
export function parsePrecision(value: string, what = 'precision'): Precision {
  if (!(PRECISIONS as readonly string[]).includes(value)) throw new RangeError(`${what} must be one of ${PRECISIONS.join(', ')}, got ${JSON.stringify(value)}`);
  return value as Precision;
}

/**
 * ONNX model bytes at another precision: `fp32` unchanged; `fp16` weights stored in half precision,
 * computed in float32 ({@link weightsToFloat16}); `int8` MatMul weights int8 per output channel
 * with dynamic activation quantisation ({@link quantizeMatMuls}), taking one image per run
 * ({@link setBatchSize}): activation scales come from the whole input tensor, so batching images
 * would make each one's result depend on the others.
 */
export function convertPrecision(bytes: Uint8Array, precision: Precision): Uint8Array {
  if (precision === 'fp32') return bytes;
  const model = decodeModel(bytes);
  return encodeModel(precision === 'fp16' ? weightsToFloat16(model) : setBatchSize(quantizeMatMuls(model), 1));
}
