import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import {
  SCORERS,
  SCORER_NAMES,
  computeScores,
  energy_score,
  entropy_score,
  getScorer,
  gl_mcm_score,
  l_mcm_score,
  mcm_score,
  var_score,
  type Logits,
} from '../../src/ood/scores.js';
import { fixture } from '../helpers/fixtures.js';

interface ScorerCase {
  name: string;
  temperature: number;
  B: number;
  H: number;
  W: number;
  C: number;
  logits_global: number[][];
  logits_local: number[][][][];
  expected_float32_reference: Record<string, number[]>;
  expected_float64: Record<string, number[]>;
}
const data = JSON.parse(readFileSync(fixture('scorers', 'cases.json'), 'utf8')) as {
  scorers: string[];
  cases: ScorerCase[];
};

function globalOf(c: ScorerCase): Logits {
  return { data: Float32Array.from(c.logits_global.flat()), dims: [c.B, c.C] };
}
function localOf(c: ScorerCase, as4d = false): Logits {
  const dims = as4d ? [c.B, c.H, c.W, c.C] : [c.B, c.H * c.W, c.C];
  return { data: Float32Array.from(c.logits_local.flat(3)), dims };
}

function byName(name: string, c: ScorerCase, as4d = false): Float64Array {
  const g = globalOf(c);
  const l = localOf(c, as4d);
  const T = c.temperature;
  switch (name) {
    case 'mcm_score':
      return mcm_score(g, T);
    case 'l_mcm_score':
      return l_mcm_score(l, T);
    case 'gl_mcm_score':
      return gl_mcm_score(g, l, T);
    case 'energy_score':
      return energy_score(g, T);
    case 'entropy_score':
      return entropy_score(g, T);
    case 'var_score':
      return var_score(g, T);
  }
  throw new Error('no scorer ' + name);
}

/** Largest |got - want| / (abs + rel·|want|) ratio; ≤ 1 passes. */
function worst(got: ArrayLike<number>, want: number[], abs: number, rel: number): number {
  assert.equal(got.length, want.length);
  let w = 0;
  for (let i = 0; i < want.length; i++) w = Math.max(w, Math.abs(got[i]! - want[i]!) / (abs + rel * Math.abs(want[i]!)));
  return w;
}

describe('scorers fixture', () => {
  it('lists the fixture scorers in SCORERS', () => {
    assert.deepEqual([...SCORER_NAMES].sort(), [...data.scorers].sort());
    assert.deepEqual(Object.keys(SCORERS), SCORER_NAMES);
  });

  for (const c of data.cases) {
    describe(c.name, () => {
      for (const name of data.scorers) {
        it(`${name} matches float64 to 1e-12 and float32 reference to 1e-6 + 1e-6·|x|`, () => {
          const got = byName(name, c);
          assert.ok(got instanceof Float64Array);
          assert.ok(worst(got, c.expected_float64[name]!, 1e-12, 1e-12) <= 1, `float64 ${name}: ${got} vs ${c.expected_float64[name]}`);
          assert.ok(worst(got, c.expected_float32_reference[name]!, 1e-6, 1e-6) <= 1, `float32 ${name}`);
        });
        it(`${name} via computeScores, local as [N, H, W, C]`, () => {
          const got = computeScores(name, { global: globalOf(c), local: localOf(c, true) }, c.temperature);
          assert.deepEqual(Array.from(got), Array.from(byName(name, c)));
        });
      }
      it('accepts Float64Array logits with identical results', () => {
        const g = { data: Float64Array.from(c.logits_global.flat()), dims: [c.B, c.C] };
        assert.deepEqual(Array.from(mcm_score(g, c.temperature)), Array.from(mcm_score(globalOf(c), c.temperature)));
      });
    });
  }
});

describe('scores: semantics and stability', () => {
  it('uniform rows: mcm -1/C, entropy ln C, var -0, energy -(x + T ln C)', () => {
    const g = { data: new Float64Array([3, 3, 3, 3]), dims: [1, 4] };
    assert.equal(mcm_score(g, 1)[0], -0.25);
    assert.ok(Math.abs(entropy_score(g, 1)[0]! - Math.log(4)) < 1e-15);
    assert.ok(Object.is(var_score(g, 1)[0], -0));
    assert.ok(Math.abs(energy_score(g, 1)[0]! + 3 + Math.log(4)) < 1e-14);
  });
  it('is stable for huge logits (no NaN/Inf)', () => {
    const g = { data: new Float64Array([1e6, -1e6, 0, 5e5]), dims: [1, 4] };
    const l = { data: new Float64Array([1e6, -1e6, 0, 5e5, 0, 0, 0, 0]), dims: [1, 2, 4] };
    for (const name of SCORER_NAMES) {
      const v = computeScores(name, { global: g, local: l }, 1)[0]!;
      assert.ok(Number.isFinite(v), `${name} = ${v}`);
    }
    assert.equal(mcm_score(g, 1)[0], -1);
    assert.equal(energy_score(g, 1)[0], -1e6);
    assert.equal(entropy_score(g, 1)[0], 0);
  });
  it('gl_mcm is the sum of mcm and l_mcm', () => {
    const c = data.cases[1]!;
    const a = mcm_score(globalOf(c), 100);
    const b = l_mcm_score(localOf(c), 100);
    const s = gl_mcm_score(globalOf(c), localOf(c), 100);
    for (let i = 0; i < s.length; i++) assert.equal(s[i], a[i]! + b[i]!);
  });
  it('N = 0 gives an empty result', () => {
    assert.equal(mcm_score({ data: new Float32Array(0), dims: [0, 5] }, 100).length, 0);
  });
  it('SCORERS records the needed inputs', () => {
    assert.deepEqual(SCORERS.mcm_score.needs, { global: true, local: false });
    assert.deepEqual(SCORERS.l_mcm_score.needs, { global: false, local: true });
    assert.deepEqual(SCORERS.gl_mcm_score.needs, { global: true, local: true });
    assert.deepEqual(SCORERS.energy_score.needs, { global: true, local: false });
  });
});

describe('scores: errors', () => {
  const g = { data: new Float32Array([1, 2, 3, 4, 5, 6]), dims: [2, 3] };
  const l = { data: new Float32Array(2 * 2 * 3), dims: [2, 2, 3] };
  it('unknown scorer name lists the valid names', () => {
    assert.throws(() => getScorer('msp'), /unknown scorer "msp"; valid scorers: mcm_score, l_mcm_score, gl_mcm_score, energy_score, entropy_score, var_score/);
    assert.throws(() => computeScores('toString', { global: g }, 1), /unknown scorer "toString"/);
  });
  it('missing inputs are named', () => {
    assert.throws(() => computeScores('gl_mcm_score', { global: g }, 100), /gl_mcm_score needs local logits \[N, P, C\]/);
    assert.throws(() => computeScores('mcm_score', { local: l }, 100), /mcm_score needs global logits \[N, C\]/);
  });
  it('bad shapes', () => {
    assert.throws(() => mcm_score({ data: g.data, dims: [2, 2] }, 1), /shape \[2, 2\] needs 4 values, data has 6/);
    assert.throws(() => mcm_score({ data: g.data, dims: [6] }, 1), /expected shape \[N, C\]/);
    assert.throws(() => l_mcm_score(g, 1), /expected shape \[N, P, C\] or \[N, H, W, C\]/);
    assert.throws(() => gl_mcm_score(g, { data: new Float32Array(8), dims: [2, 1, 4] }, 1), /disagree on N or C/);
    assert.throws(() => mcm_score({ data: [1, 2] as unknown as Float32Array, dims: [1, 2] }, 1), /Float32Array or Float64Array/);
  });
  it('non-finite logits name the input and index', () => {
    const bad = Float32Array.from(g.data);
    bad[4] = NaN;
    assert.throws(() => mcm_score({ data: bad, dims: [2, 3] }, 1), /global logits: non-finite value NaN at index \[1, 1\]/);
    const badL = new Float32Array(12);
    badL[7] = Infinity;
    assert.throws(() => l_mcm_score({ data: badL, dims: [2, 2, 3] }, 1), /local logits: non-finite value Infinity at index \[1, 0, 1\]/);
  });
  it('bad temperature', () => {
    assert.throws(() => mcm_score(g, 0), /temperature must be a finite number > 0, got 0/);
    assert.throws(() => energy_score(g, NaN), /temperature/);
  });
});
