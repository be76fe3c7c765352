/**
 * IEEE 754 binary16 ("half", ONNX FLOAT16) ↔ float32, bit-exact: round to nearest, ties to even,
 * gradual underflow to subnormals, overflow to ±Infinity. Node 20 has no Float16Array, so halves
 * travel as their bit patterns in a Uint16Array.
 */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** Largest finite half: 65504. Values from 65520 up round to Infinity. */
export const FLOAT16_MAX = 65504;

/**
 * The binary16 bit pattern nearest to `x` (ties to even).
 * @example float32ToFloat16Bits(1) === 0x3c00; float32ToFloat16Bits(65520) === 0x7c00 // +Infinity
 */
export function float32ToFloat16Bits(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Infinity, or a quiet NaN
  if (exp > 112) {
    // a normal half (or overflow): 5-bit exponent, 10-bit mantissa; a rounding carry may step
    // into the exponent, which is exactly the next representable value (or Infinity)
    const h = ((exp - 112) << 10) | (mant >>> 13);
    const rest = mant & 0x1fff;
    const up = rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1);
    return sign | Math.min(0x7c00, h + (up ? 1 : 0));
  }
  // subnormal half: value = m · 2^-24, m = significand · 2^(exp - 126)
  const shift = 126 - exp;
  if (shift > 25) return sign; // below half the smallest subnormal: ±0
  const sig = mant | 0x800000;
  const m = sig >>> shift;
  const rest = sig & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  const up = rest > halfway || (rest === halfway && (m & 1) === 1);
  return sign | (m + (up ? 1 : 0)); // m + 1 = 0x400 is the smallest normal, encoded as such
}

/** The value of a binary16 bit pattern. */
export function float16BitsToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** Every element of `a` as binary16 bits. */
export function toFloat16Array(a: ArrayLike<number>): Uint16Array {
  const out = new Uint16Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = float32ToFloat16Bits(a[i]!);
  return out;
}

/** binary16 bits → float32 values. */
export function fromFloat16Array(h: ArrayLike<number>): Float32Array {
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) out[i] = float16BitsToFloat32(h[i]!);
  return out;
}
