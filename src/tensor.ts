/** Element types of tensors crossing module boundaries, mapped to their typed arrays. */
export interface DTypeMap {
  float32: Float32Array;
  float64: Float64Array;
  int32: Int32Array;
  int64: BigInt64Array;
  uint8: Uint8Array;
}
export type DType = keyof DTypeMap;

/** A dense row-major tensor on the host. */
export interface Tensor<D extends DType = DType> {
  readonly dtype: D;
  readonly data: DTypeMap[D];
  readonly dims: readonly number[];
}

/** Product of dims (1 for a scalar). */
export function numel(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

/**
 * Makes a tensor, checking that `data` holds exactly the elements `dims` describes.
 * @param name used in the error message, e.g. 'pixel_values'.
 */
export function tensor<D extends DType>(dtype: D, data: DTypeMap[D], dims: readonly number[], name = 'tensor'): Tensor<D> {
  if (!dims.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new RangeError(`'${name}': dims [${dims.join(', ')}] must be non-negative integers`);
  }
  const n = numel(dims);
  if (data.length !== n) {
    throw new RangeError(`'${name}': ${data.length} elements given, dims [${dims.join(', ')}] need ${n}`);
  }
  return { dtype, data, dims: Object.freeze([...dims]) };
}

/** Formats a shape for messages: `[32, 197, 768]`. */
export function shapeString(dims: readonly number[]): string {
  return `[${dims.join(', ')}]`;
}
