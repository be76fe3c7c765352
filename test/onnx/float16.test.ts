import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { float16BitsToFloat32, float32ToFloat16Bits, FLOAT16_MAX, fromFloat16Array, toFloat16Array } from '../../src/onnx/float16.js';

describe('binary16 conversion', () => {
  it('encodes known values (IEEE 754 binary16 table)', () => {
    const cases: [number, number][] = [
      [0, 0x0000], [-0, 0x8000], [1, 0x3c00], [-2, 0xc000], [0.5, 0x3800], [FLOAT16_MAX, 0x7bff],
      [2 ** -14, 0x0400], // smallest normal
      [2 ** -24, 0x0001], // smallest subnormal
      [1 / 3, 0x3555], [0.1, 0x2e66], [Infinity, 0x7c00], [-Infinity, 0xfc00],
      [65519, 0x7bff], [65520, 0x7c00], // 65520 is halfway to 2^16: ties to even = Infinity
      [1e6, 0x7c00], [1e-9, 0x0000],
    ];
    for (const [x, h] of cases) assert.equal(float32ToFloat16Bits(x), h, `${x} → 0x${h.toString(16)}`);
    assert.equal(float32ToFloat16Bits(NaN) & 0x7c00, 0x7c00);
    assert.ok(Number.isNaN(float16BitsToFloat32(float32ToFloat16Bits(NaN))));
  });

  it('round-trips every finite half exactly', () => {
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00) continue; // Infinity and NaN
      assert.equal(float32ToFloat16Bits(float16BitsToFloat32(h)), h, `0x${h.toString(16)}`);
    }
  });

  it('rounds to nearest, ties to even, in the normal and the subnormal range', () => {
    // between consecutive positive halves a < b: the midpoint goes to the one with an even
    // mantissa, anything off the midpoint to the nearer one
    for (let h = 0; h < 0x7bff; h++) {
      const a = float16BitsToFloat32(h);
      const b = float16BitsToFloat32(h + 1);
      const mid = (a + b) / 2; // exact in float32: halves have 11 significant bits
      assert.equal(Math.fround(mid), mid);
      assert.equal(float32ToFloat16Bits(mid), h % 2 === 0 ? h : h + 1, `midpoint of 0x${h.toString(16)}`);
      const below = Math.fround(mid - (b - a) / 8);
      const above = Math.fround(mid + (b - a) / 8);
      assert.equal(float32ToFloat16Bits(below), h, `just below the midpoint of 0x${h.toString(16)}`);
      assert.equal(float32ToFloat16Bits(above), h + 1, `just above the midpoint of 0x${h.toString(16)}`);
      assert.equal(float32ToFloat16Bits(-below), h | 0x8000);
    }
    // half the smallest subnormal is a tie with 0 (even); a little more rounds up to it
    assert.equal(float32ToFloat16Bits(2 ** -25), 0);
    assert.equal(float32ToFloat16Bits(1.5 * 2 ** -25), 1);
  });

  it('converts arrays', () => {
    const x = Float32Array.of(1, -0.25, 3.140625, 1e-3);
    const back = fromFloat16Array(toFloat16Array(x));
    for (let i = 0; i < x.length; i++) assert.ok(Math.abs(back[i]! - x[i]!) <= Math.abs(x[i]!) * 2 ** -11, `${x[i]} → ${back[i]}`);
    assert.equal(back[2], 3.140625); // exactly representable
  });
});
