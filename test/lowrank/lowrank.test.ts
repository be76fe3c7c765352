import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { droppedIndices, dropRank, loraSplit, lowRankApprox, pythonRound } from '../../src/lowrank/lowrank.js';
import { svd } from '../../src/lowrank/svd.js';
import { gaussian, lowRankCases, matmul, maxAbs, maxAbsDiff } from './helpers.js';

/**
 * Pruned weights vs the fixture: the fixture is float64 (numpy), ours is float64 rounded to
 * float32, so per element `|ours − ref| ≤ 2⁻²⁴·|ref|` (float32 rounding, half an ulp) +
 * `1e-9·max|ref|` (float64 SVD difference, the fixture README's figure). Measured float64 error
 * before rounding is ~1e-15·max|ref|, far inside the brief's looser 1e-6·max|ref|.
 */
function assertCloseF32(ours: ArrayLike<number>, ref: ArrayLike<number>, label: string): void {
  assert.equal(ours.length, ref.length, `${label}: length`);
  const atol = 1e-9 * maxAbs(ref);
  for (let i = 0; i < ref.length; i++) {
    const tol = atol + 2 ** -24 * Math.abs(ref[i]);
    const d = Math.abs(ours[i] - ref[i]);
    if (!(d <= tol)) assert.fail(`${label}: element ${i}: ${ours[i]} vs ${ref[i]}, |diff| ${d} > tol ${tol}`);
  }
}

describe('pythonRound and dropRank (rank_rounding cases)', () => {
  const cases = lowRankCases().rank_rounding;
  it(`pythonRound(full_rank * ratio) equals Python's round on all ${cases.length} cases`, () => {
    for (const c of cases) {
      const product = c.full_rank * c.ratio;
      assert.equal(product, c.product, `float product ${c.full_rank}*${c.ratio}`);
      assert.equal(pythonRound(product), c.python_round, `round(${product})`);
      assert.equal(Math.round(product) !== c.python_round, c.differs, `Math.round differs for ${product}`);
    }
  });
  it('dropRank(full_rank, ratio) equals Python round on every case', () => {
    for (const c of cases) assert.equal(dropRank(c.full_rank, c.ratio), c.python_round, `dropRank(${c.full_rank}, ${c.ratio})`);
  });
  it('ties go to even, negatives too; NaN and infinities throw', () => {
    assert.deepEqual([0.5, 1.5, 2.5, 3.5, -0.5, -1.5, -2.5, 0.49999999999999994, 2.5000000000000004].map(pythonRound), [0, 2, 2, 4, 0, -2, -2, 0, 3]);
    assert.ok(Object.is(pythonRound(-0.4), 0), 'no negative zero');
    assert.throws(() => pythonRound(Number.NaN), { name: 'RangeError', message: /cannot round NaN/ });
    assert.throws(() => pythonRound(Number.POSITIVE_INFINITY), RangeError);
  });
  it('a ratio >= 1 is an absolute rank (so 1.0 means rank 1)', () => {
    assert.equal(dropRank(768, 1), 1);
    assert.equal(dropRank(768, 100), 100);
    assert.throws(() => dropRank(768, 1.5), { name: 'RangeError', message: /ratio 1\.5 is >= 1, so it is read as an absolute rank and must be an integer/ });
  });
  it('r = full rank is an error stating the allowed interval', () => {
    assert.throws(() => dropRank(10, 0.96), { name: 'RangeError', message: /ratio 0\.96 gives a dropped rank of 10 for a weight of full rank 10; the dropped rank must be in \[0, 9\]/ });
    assert.throws(() => dropRank(10, 10), /must be in \[0, 9\]/);
    assert.throws(() => dropRank(10, 11), /must be in \[0, 9\]/);
  });
  it('negative or NaN ratio is an error naming the ratio', () => {
    for (const bad of [-0.1, Number.NaN, Number.POSITIVE_INFINITY]) {
      assert.throws(() => dropRank(10, bad), { name: 'RangeError', message: new RegExp(`ratio must be a finite number >= 0 .*got ${bad}`) });
    }
    assert.throws(() => dropRank(0, 0.1), { name: 'RangeError', message: /'fullRank' passed to 'dropRank' must be an integer >= 1, got 0/ });
  });
});

describe('lowRankApprox vs the fixture (every matrix x ratio x mode small/large)', () => {
  for (const m of lowRankCases().matrices) {
    it(`${m.name}`, () => {
      const [out, inp] = m.shape;
      const weight = Float32Array.from(m.weight.flat());
      const factors = svd(weight, out, inp);
      for (const c of m.configs) {
        assert.equal(dropRank(m.full_rank, c.ratio), c.rank, `${m.name} ratio ${c.ratio}: rank`);
        for (const mode of ['small', 'large'] as const) {
          const ref = c[mode];
          const label = `${m.name} ratio ${c.ratio} ${mode}`;
          const pruned = lowRankApprox({ weight, shape: [out, inp], ratio: c.ratio, mode, factors });
          assert.ok(pruned instanceof Float32Array);
          assertCloseF32(pruned, ref.pruned.flat(), label);
          // Dropped singular values and the Frobenius error ‖W − W'‖ = √Σ s_dropped².
          const dropped = droppedIndices(m.full_rank, c.rank, mode);
          assert.equal(dropped.length, ref.dropped_rank);
          dropped.forEach((i, t) => assert.ok(Math.abs(factors.s[i] - ref.dropped_singular_values[t]) <= 1e-12, `${label}: dropped s[${i}]`));
          let frob = 0;
          for (let i = 0; i < weight.length; i++) frob += (weight[i] - pruned[i]) ** 2;
          assert.ok(Math.abs(Math.sqrt(frob) - ref.frobenius_error) <= 1e-6 * ref.frobenius_error + 1e-7, `${label}: frobenius ${Math.sqrt(frob)} vs ${ref.frobenius_error}`);
        }
      }
    });
  }

  it('computes the SVD itself when no factors are given (same result)', () => {
    const m = lowRankCases().matrices[0];
    const weight = Float32Array.from(m.weight.flat());
    const a = lowRankApprox({ weight, shape: m.shape, ratio: 0.25 });
    const b = lowRankApprox({ weight, shape: m.shape, ratio: 0.25, factors: svd(weight, m.shape[0], m.shape[1]) });
    assert.deepEqual(a, b);
  });

  it('dropping more than it keeps (ratio 0.8) sums the kept triplets: same as Σ kept computed here', () => {
    const weight = Float32Array.from(gaussian(40, 25, 5));
    const f = svd(weight, 40, 25);
    for (const mode of ['small', 'large'] as const) {
      const dropped = new Set(droppedIndices(25, 20, mode));
      const expected = new Float64Array(40 * 25);
      for (let l = 0; l < 25; l++) {
        if (dropped.has(l)) continue;
        for (let i = 0; i < 40; i++) for (let j = 0; j < 25; j++) expected[i * 25 + j] += f.u[i * 25 + l] * f.s[l] * f.vh[l * 25 + j];
      }
      assertCloseF32(lowRankApprox({ weight, shape: [40, 25], ratio: 0.8, mode, factors: f }), expected, `ratio 0.8 ${mode}`);
    }
  });

  it('ratio 0, or a ratio that rounds to rank 0, returns an unchanged copy', () => {
    const weight = Float32Array.from(gaussian(10, 6, 1));
    for (const ratio of [0, 0.05]) {
      // round(6 * 0.05) = round(0.3) = 0
      const out = lowRankApprox({ weight, shape: [10, 6], ratio });
      assert.notEqual(out, weight);
      assert.deepEqual(out, weight);
    }
  });
});

describe('lowRankApprox random mode', () => {
  const weight = Float32Array.from(gaussian(30, 20, 2));
  const factors = svd(weight, 30, 20);
  it('drops exactly r components chosen by the seed, deterministically', () => {
    const idx = droppedIndices(20, 5, 'random', 7);
    assert.equal(idx.length, 5);
    assert.equal(new Set(idx).size, 5);
    assert.ok(idx.every((i) => i >= 0 && i < 20));
    assert.deepEqual(droppedIndices(20, 5, 'random', 7), idx, 'same seed, same set');
    assert.notDeepEqual(droppedIndices(20, 5, 'random', 8), idx, 'another seed, another set');
    const pruned = lowRankApprox({ weight, shape: [30, 20], ratio: 0.25, mode: 'random', seed: 7, factors });
    // W − W' must be exactly the dropped components: its singular values are s[idx].
    const diff = Float64Array.from(weight, (w, i) => w - pruned[i]);
    const sd = svd(diff, 30, 20).s;
    const expected = Array.from(idx, (i) => factors.s[i]).sort((a, b) => b - a);
    expected.forEach((s, t) => assert.ok(Math.abs(sd[t] - s) <= 1e-5 * factors.s[0], `dropped singular value ${t}: ${sd[t]} vs ${s}`));
    assert.ok(sd[5] <= 1e-5 * factors.s[0], 'nothing else dropped');
  });
});

describe('loraSplit (SeTAR+FT, SPEC §7) vs the fixture', () => {
  for (const m of lowRankCases().matrices) {
    it(`${m.name}: shapes, B·A + pruned = W, B·A and A, B up to sign vs lora_B·lora_A`, () => {
      const [out, inp] = m.shape;
      const weight = Float32Array.from(m.weight.flat());
      const factors = svd(weight, out, inp);
      for (const c of m.configs) {
        const label = `${m.name} ratio ${c.ratio}`;
        const { pruned, loraA, loraB, rank } = loraSplit({ weight, shape: [out, inp], ratio: c.ratio, factors });
        assert.equal(rank, c.rank);
        assert.equal(loraA.length, rank * inp, `${label}: lora_A is [r, in]`);
        assert.equal(loraB.length, out * rank, `${label}: lora_B is [out, r]`);
        assertCloseF32(pruned, c.small.pruned.flat(), `${label} pruned`);
        const ba = matmul(loraB, loraA, out, rank, inp);
        const refBA = matmul(c.small.lora_B.flat(), c.small.lora_A.flat(), out, rank, inp);
        // A and B are float32 (relative rounding 2⁻²⁴ each), so each term B[i][t]·A[t][j] is off by
        // at most 2⁻²³·|B[i][t]·A[t][j]| ≤ 2⁻²³·s_t (|uᵢₜ|, |vₜⱼ| ≤ 1); plus 1e-9·max for the
        // float64 SVDs (fixture README).
        const sumDropped = c.small.dropped_singular_values.reduce((x, y) => x + y, 0);
        const tol = 2 ** -23 * sumDropped + 1e-9 * maxAbs(refBA);
        const d = maxAbsDiff(ba, refBA);
        assert.ok(d.max <= tol, `${label}: B·A vs fixture, max diff ${d.max} at ${d.index} > ${tol}`);
        const sum = maxAbsDiff(Float64Array.from(ba, (x, i) => x + pruned[i]), weight);
        assert.ok(sum.max <= tol + 2 ** -24 * maxAbs(weight), `${label}: W' + B·A vs W, max diff ${sum.max}`);
        // Per component: singular vectors are unique up to sign (distinct spectra), so each row of
        // A and the matching column of B equal the fixture's or both are negated.
        for (let t = 0; t < rank; t++) {
          const refA = c.small.lora_A[t];
          const sign = Math.sign(loraA[t * inp] * refA[0]) || 1;
          for (let j = 0; j < inp; j++) assert.ok(Math.abs(sign * loraA[t * inp + j] - refA[j]) <= 1e-6, `${label}: A[${t}][${j}]`);
          for (let i = 0; i < out; i++) assert.ok(Math.abs(sign * loraB[i * rank + t] - c.small.lora_B[i][t]) <= 1e-6, `${label}: B[${i}][${t}]`);
        }
      }
    });
  }

  it('rank 0 gives empty adapters and an unchanged copy', () => {
    const weight = Float32Array.from(gaussian(8, 4, 3));
    const s = loraSplit({ weight, shape: [8, 4], ratio: 0 });
    assert.equal(s.rank, 0);
    assert.equal(s.loraA.length, 0);
    assert.equal(s.loraB.length, 0);
    assert.deepEqual(s.pruned, weight);
  });
});

describe('lowRankApprox argument checks', () => {
  const weight = new Float32Array(12);
  it('names the weight and the shape', () => {
    assert.throws(() => lowRankApprox({ weight, shape: [5, 3], ratio: 0.1, name: 'mlp.fc1.weight' }), {
      name: 'RangeError',
      message: /'weight' passed to 'lowRankApprox' for 'mlp\.fc1\.weight' must have 5\*3 = 15 elements for shape \[5, 3\], got 12/,
    });
    assert.throws(() => lowRankApprox({ weight, shape: [12] as unknown as [number, number], ratio: 0.1 }), /'shape' passed to 'lowRankApprox' must be \[out, in\]/);
  });
  it('rejects a bad ratio, naming the op, the weight and the interval', () => {
    assert.throws(() => lowRankApprox({ weight, shape: [4, 3], ratio: 3, name: 'w' }), {
      name: 'RangeError',
      message: /'ratio' passed to 'lowRankApprox' for 'w': ratio 3 gives a dropped rank of 3 for a weight of full rank 3; the dropped rank must be in \[0, 2\]/,
    });
    assert.throws(() => loraSplit({ weight, shape: [4, 3], ratio: -1 }), /'ratio' passed to 'loraSplit': ratio must be a finite number >= 0/);
  });
  it('rejects an unknown mode, listing the allowed ones', () => {
    assert.throws(() => lowRankApprox({ weight, shape: [4, 3], ratio: 0.5, mode: 'minor' as never }), {
      name: 'TypeError',
      message: /'mode' passed to 'lowRankApprox' must be one of 'small', 'large', 'random', got "minor"/,
    });
  });
  it('rejects factors of another shape', () => {
    const factors = svd(new Float64Array(12), 3, 4);
    assert.throws(() => lowRankApprox({ weight, shape: [4, 3], ratio: 0.5, factors }), /'factors' passed to 'lowRankApprox' are for a \[3, 4\] matrix, the weight is \[4, 3\]/);
  });
});
