/** Round half to even, as ONNX's Round, QuantizeLinear and DynamicQuantizeLinear do. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x); // ties towards +Infinity: one too high at odd ties
  return (Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r) + 0; // + 0: no −0
}

/** A [K, N] MatMul weight quantised per output channel (column), symmetric int8. */
export interface QuantizedWeight {
  /** q[k·N + n] ∈ [−127, 127]. */
  readonly q: Int8Array;
  /** scale[n] = max_k |w[k, n]| / 127 (1 for an all-zero column), float32. */
  readonly scale: Float32Array;
}

/**
 * Symmetric per-column int8: w[k, n] ≈ q[k, n] · scale[n], q = round_half_even(w / scale)
 * clipped to ±127, so the zero point is 0 — MatMulInteger's default `b_zero_point`, hence none is
 * stored. Signed weights are what ORT's VNNI kernels multiply fastest (uint8 × int8: measured
 * 2.2× the uint8 × uint8 kernel on these CPUs); ±127 rather than −128 keeps the grid symmetric.
 * @example quantizeWeightPerColumn(Float32Array.of(127, 2.5), 2, 1) // q [127, 2], scale [1]
 */
export function quantizeWeightPerColumn(w: Float32Array, k: number, n: number): QuantizedWeight {
  if (w.length !== k * n) throw new RangeError(`'weight' passed to 'quantizeWeightPerColumn' has ${w.length} elements, [${k}, ${n}] needs ${k * n}`);
  const scale = new Float32Array(n);
  for (let j = 0; j < n; j++) {
    let m = 0;
    for (let i = 0; i < k; i++) m = Math.max(m, Math.abs(w[i * n + j]!));
    scale[j] = m > 0 ? m / 127 : 1;
  }
  const q = new Int8Array(k * n);
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < n; j++) q[i * n + j] = Math.max(-127, Math.min(127, roundHalfEven(w[i * n + j]! / scale[j]!)));
  }
  return { q, scale };
}
