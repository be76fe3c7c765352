import { shapeString } from '../tensor.js';

/**
 * Checks a replacement weight before a model keeps it: the element count of `shape` and finite
 * values only (a NaN would otherwise surface much later as a NaN score). Shared by every model family.
 */
export function checkReplacement(name: string, shape: readonly number[], value: Float32Array): void {
  const n = shape.reduce((a, b) => a * b, 1);
  if (value.length !== n) throw new RangeError(`setWeight('${name}'): ${value.length} values given, shape ${shapeString(shape)} needs ${n}`);
  for (let i = 0; i < value.length; i++) {
    if (!Number.isFinite(value[i]!)) throw new RangeError(`setWeight('${name}'): value at flat index ${i} is ${value[i]}`);
  }
}
