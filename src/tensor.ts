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

/** Concatenates float32 tensors along the first axis. */
export function concatBatch(parts: readonly Tensor<'float32'>[]): Tensor<'float32'> {
  if (parts.length === 1) return parts[0]!;
  const rest = parts[0]!.dims.slice(1);
  const total = parts.reduce((a, p) => a + p.dims[0]!, 0);
  const data = new Float32Array(parts.reduce((a, p) => a + p.data.length, 0));
  let off = 0;
  for (const p of parts) {
    data.set(p.data, off);
    off += p.data.length;
  }
  return tensor('float32', data, [total, ...rest]);
}

/** Rows [start, start + n) of a tensor, as a view. */
export function sliceBatch(t: Tensor<'float32'>, start: number, n: number): Tensor<'float32'> {
  const per = t.data.length / t.dims[0]!;
  return tensor('float32', t.data.subarray(start * per, (start + n) * per), [n, ...t.dims.slice(1)]);
}

/** A tensor, or an object whose values are tensors with a common first axis. */
type Batched = Tensor<'float32'> | object;

/**
 * Runs `f` on consecutive chunks of at most `chunk` rows and concatenates its outputs (a tensor,
 * or an object of tensors) along the first axis. Sessions keep an arena sized for the largest
 * batch they saw, so chunking bounds resident memory whatever the caller's batch.
 */
export async function byChunks<T extends Batched>(input: Tensor<'float32'>, chunk: number, f: (part: Tensor<'float32'>) => Promise<T>): Promise<T> {
  const b = input.dims[0]!;
  if (b <= chunk) return f(input);
  const parts: T[] = [];
  for (let s = 0; s < b; s += chunk) parts.push(await f(sliceBatch(input, s, Math.min(chunk, b - s))));
  if ('dims' in parts[0]!) return concatBatch(parts as Tensor<'float32'>[]) as T;
  const out: Record<string, Tensor<'float32'>> = {};
  for (const k of Object.keys(parts[0]!)) out[k] = concatBatch(parts.map((p) => (p as unknown as Record<string, Tensor<'float32'>>)[k]!));
  return out as unknown as T;
}
