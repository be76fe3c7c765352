import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { svd, type SvdFactors } from '../../src/lowrank/svd.js';
import { gaussian, lowRankCases, matmul, maxAbsDiff, orthoDefectU, orthoDefectVh, reconstruct, withSpectrum } from './helpers.js';

/**
 * Tolerances (float64 throughout):
 * - reconstruction `max|A − U S Vh| ≤ 1e-13·s_max`: the Gram route keeps `U S = A V` with `V`
 *   orthogonal to machine precision, so the error is a few ε·s_max (measured ≤ 1.3e-15·s_max);
 * - orthonormality `max|UᵀU − I|`, `max|Vh Vhᵀ − I|` ≤ 2e-12: the Jacobi refinement's target is
 *   τ = 2⁻⁴⁰ ≈ 9.1e-13 (measured ≤ 9.1e-13, typically 1e-14);
 * - singular values vs the fixture (numpy float64 LAPACK): relative 1e-10 (measured ≤ 7e-15).
 */
const RECON_TOL = 1e-13;
const ORTHO_TOL = 2e-12;

function checkInvariants(a: ArrayLike<number>, f: SvdFactors, label: string): void {
  const { rows, cols, k, u, s, vh } = f;
  assert.equal(k, Math.min(rows, cols), `${label}: k`);
  assert.equal(u.length, rows * k, `${label}: u is [rows, k]`);
  assert.equal(s.length, k, `${label}: s is [k]`);
  assert.equal(vh.length, k * cols, `${label}: vh is [k, cols]`);
  for (let i = 0; i < k; i++) {
    assert.ok(s[i] >= 0, `${label}: s[${i}] = ${s[i]} is negative`);
    if (i > 0) assert.ok(s[i] <= s[i - 1], `${label}: s not descending at ${i}: ${s[i - 1]}, ${s[i]}`);
  }
  const scale = Math.max(s[0], Number.MIN_VALUE);
  const recon = maxAbsDiff(reconstruct(f), a);
  assert.ok(recon.max <= RECON_TOL * scale, `${label}: reconstruction error ${recon.max} at ${recon.index} > ${RECON_TOL}·s_max`);
  const du = orthoDefectU(f);
  const dv = orthoDefectVh(f);
  assert.ok(du <= ORTHO_TOL, `${label}: max|UᵀU − I| = ${du}`);
  assert.ok(dv <= ORTHO_TOL, `${label}: max|Vh·Vhᵀ − I| = ${dv}`);
}

describe('svd on the fixture matrices (shared/fixtures/lowrank)', () => {
  for (const m of lowRankCases().matrices) {
    it(`${m.name} [${m.shape.join(', ')}]: invariants and singular values vs LAPACK (rel 1e-10)`, () => {
      const [rows, cols] = m.shape;
      const a = Float32Array.from(m.weight.flat());
      const f = svd(a, rows, cols);
      checkInvariants(a, f, m.name);
      assert.equal(f.k, m.singular_values.length);
      m.singular_values.forEach((ref, i) => {
        const rel = Math.abs(f.s[i] - ref) / ref;
        assert.ok(rel <= 1e-10, `${m.name}: s[${i}] = ${f.s[i]}, LAPACK ${ref}, relative error ${rel}`);
      });
    });
  }
});

describe('svd invariants on random matrices', () => {
  const cases: Array<[label: string, rows: number, cols: number, make: () => Float64Array]> = [
    ['tall gaussian 60x40', 60, 40, () => gaussian(60, 40, 1)],
    ['wide gaussian 40x60', 40, 60, () => gaussian(40, 60, 2)],
    ['square gaussian 50x50', 50, 50, () => gaussian(50, 50, 3)],
    ['square gaussian 130x130 (the 4x4 tiles leave a remainder)', 130, 130, () => gaussian(130, 130, 4)],
    ['tall 203x97 with a spread spectrum (1 .. 1e-6)', 203, 97, () => withSpectrum(203, 97, Array.from({ length: 97 }, (_, i) => 10 ** (-6 * i / 96)), 5)],
    ['wide 31x77 with a spread spectrum (1 .. 1e-12)', 31, 77, () => withSpectrum(31, 77, Array.from({ length: 31 }, (_, i) => 10 ** (-12 * i / 30)), 6)],
    ['row vector 1x9', 1, 9, () => gaussian(1, 9, 7)],
    ['column vector 9x1', 9, 1, () => gaussian(9, 1, 8)],
    ['1x1', 1, 1, () => Float64Array.of(-3)],
    ['clustered singular values (1, 1, 1, 0.5, 0.5, ...)', 24, 12, () => withSpectrum(24, 12, [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.1, 0.1, 0.1, 0.1], 9)],
  ];
  for (const [label, rows, cols, make] of cases) {
    it(label, () => {
      const a = make();
      checkInvariants(a, svd(a, rows, cols), label);
    });
  }

  it('rank-deficient 80x30 of rank 5: 5 nonzero singular values, the rest ~0, bases still orthonormal', () => {
    const a = matmul(gaussian(80, 5, 10), gaussian(5, 30, 11), 80, 5, 30);
    const f = svd(a, 80, 30);
    checkInvariants(a, f, 'rank 5');
    assert.ok(f.s[4] > 1e-3 * f.s[0], `s[4] = ${f.s[4]}`);
    for (let i = 5; i < 30; i++) assert.ok(f.s[i] <= 1e-13 * f.s[0], `s[${i}] = ${f.s[i]} should be ~0`);
  });

  it('exact zeros: a zero matrix and a matrix with zero rows and columns', () => {
    const z = new Float64Array(6 * 4);
    const fz = svd(z, 6, 4);
    assert.deepEqual(Array.from(fz.s), [0, 0, 0, 0]);
    assert.ok(orthoDefectU(fz) <= 1e-15 && orthoDefectVh(fz) <= 1e-15, 'bases of the zero matrix are orthonormal');
    // Only a 2x2 block is nonzero.
    const a = new Float64Array(5 * 7);
    a[1 * 7 + 2] = 3;
    a[3 * 7 + 5] = -4;
    a[1 * 7 + 5] = 1;
    const f = svd(a, 5, 7);
    checkInvariants(a, f, 'sparse');
    assert.equal(f.s[2], 0);
  });

  it('float32 input is read exactly (same result as its float64 copy)', () => {
    const a32 = Float32Array.from(gaussian(20, 12, 12));
    const f32 = svd(a32, 20, 12);
    const f64 = svd(Float64Array.from(a32), 20, 12);
    assert.deepEqual(f32.s, f64.s);
    assert.deepEqual(f32.u, f64.u);
    assert.deepEqual(f32.vh, f64.vh);
  });

  it('scale invariant: no overflow for entries near 1e200, no underflow near 1e-200', () => {
    const base = gaussian(15, 10, 13);
    const ref = svd(base, 15, 10);
    for (const scale of [1e200, 1e-200]) {
      const f = svd(base.map((x) => x * scale), 15, 10);
      for (let i = 0; i < 10; i++) {
        assert.ok(Math.abs(f.s[i] / scale - ref.s[i]) <= 1e-14 * ref.s[0], `scale ${scale}: s[${i}]`);
      }
    }
  });
});

describe('svd argument checks', () => {
  it('rejects a length that does not match the shape', () => {
    assert.throws(() => svd(new Float64Array(5), 2, 3), { name: 'RangeError', message: /'a' passed to 'svd' must have rows\*cols = 2\*3 = 6 elements, got 5/ });
  });
  it('rejects a non-integer or empty shape', () => {
    assert.throws(() => svd(new Float64Array(0), 0, 3), { name: 'RangeError', message: /must be integers >= 1, got \[0, 3\]/ });
    assert.throws(() => svd(new Float64Array(3), 1.5, 2), RangeError);
  });
  it('rejects NaN and infinities, naming the position', () => {
    const a = new Float64Array(6);
    a[4] = Number.NaN;
    assert.throws(() => svd(a, 2, 3), { name: 'RangeError', message: /must be finite, got NaN at index 4 \(row 1, col 1\)/ });
    a[4] = Number.NEGATIVE_INFINITY;
    assert.throws(() => svd(a, 2, 3), /got -Infinity at index 4/);
  });
});
