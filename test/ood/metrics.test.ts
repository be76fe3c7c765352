import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import { accuracy, aupr, auroc, benchmarkTable, fprAtRecall, oodMetrics } from '../../src/ood/metrics.js';
import { fixture } from '../helpers/fixtures.js';

interface MetricsCase {
  name: string;
  recall_level: number;
  n_id: number;
  n_ood: number;
  id_scores: number[];
  ood_scores: number[];
  expected: { auroc: number; aupr: number; fpr: number; cutoff: number };
  diagnostics: {
    recall_at_cutoff: number;
    fps_at_cutoff: number;
    tps_at_cutoff: number;
  };
}
const data = JSON.parse(readFileSync(fixture('metrics', 'cases.json'), 'utf8')) as { cases: MetricsCase[] };

/** |got - want| ≤ 1e-9 (percent values; the README's tolerance, 1000× tighter than the brief's 1e-6). */
function close(got: number, want: number, what: string, tol = 1e-9): void {
  assert.ok(Math.abs(got - want) <= tol, `${what}: got ${got}, want ${want} (diff ${got - want})`);
}

describe('metrics fixture (Metrics.compute_metrics)', () => {
  it('has all 30 cases', () => assert.equal(data.cases.length, 30));
  for (const c of data.cases) {
    it(c.name, () => {
      assert.equal(c.id_scores.length, c.n_id);
      assert.equal(c.ood_scores.length, c.n_ood);
      const m = oodMetrics(c.id_scores, c.ood_scores, { recallLevel: c.recall_level });
      close(m.AUROC, c.expected.auroc, 'AUROC');
      close(m.AUPR, c.expected.aupr, 'AUPR');
      close(m.FPR, c.expected.fpr, 'FPR');
      assert.ok(m.cutoff === c.expected.cutoff, `cutoff: got ${m.cutoff}, want ${c.expected.cutoff}`);
      // -0.0 in all_equal_zero_4_4 comes through with its sign
      if (Object.is(c.expected.cutoff, -0)) assert.ok(Object.is(m.cutoff, -0));

      const f = fprAtRecall(Float64Array.from(c.id_scores), Float64Array.from(c.ood_scores), c.recall_level);
      assert.equal(f.fpr * 100, m.FPR);
      assert.equal(f.cutoff, m.cutoff);
      assert.equal(f.recall, c.diagnostics.recall_at_cutoff);
      assert.equal(f.tps, c.diagnostics.tps_at_cutoff);
      assert.equal(f.fps, c.diagnostics.fps_at_cutoff);
      close(auroc(c.id_scores, c.ood_scores) * 100, c.expected.auroc, 'auroc()');
      close(aupr(c.id_scores, c.ood_scores) * 100, c.expected.aupr, 'aupr()');
    });
  }
  it('order inside the inputs never matters (reversed and shuffled inputs give the same metrics)', () => {
    for (const c of data.cases) {
      const want = oodMetrics(c.id_scores, c.ood_scores, { recallLevel: c.recall_level });
      const got = oodMetrics([...c.id_scores].reverse(), [...c.ood_scores].reverse(), { recallLevel: c.recall_level });
      assert.deepEqual(got, want, c.name);
    }
  });
});

describe('metrics: semantics', () => {
  it('small hand example', () => {
    assert.equal(auroc([-0.9, -0.8], [-0.1, -0.85]), 0.75);
    close(aupr([-0.9, -0.8], [-0.1, -0.85]), 0.5 + 0.5 * (2 / 3), 'aupr', 1e-15);
  });
  it('ties between ID and OOD count 1/2 in AUROC', () => {
    assert.equal(auroc([1], [1]), 0.5);
    // -score: ID {0, -1}, OOD {-1, -2}: pairs 1 + 1 + 0.5 (the tie at -1) + 1
    assert.equal(auroc([0, 1], [1, 2]), 3.5 / 4);
  });
  it('default recall level is 0.95', () => {
    const c = data.cases.find((x) => x.name === 'normal_100_100')!;
    assert.deepEqual(oodMetrics(c.id_scores, c.ood_scores), oodMetrics(c.id_scores, c.ood_scores, { recallLevel: 0.95 }));
    assert.deepEqual(fprAtRecall(c.id_scores, c.ood_scores), fprAtRecall(c.id_scores, c.ood_scores, 0.95));
  });
  it('handles 50,000 ID + 50,000 OOD float32 scores with many ties, and agrees with brute-force AUROC', () => {
    let s = 12345;
    const rnd = () => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
    const id = new Float32Array(50_000).map(() => -0.001 - rnd() * 0.0002);
    const ood = new Float32Array(50_000).map(() => -0.001 - rnd() * 0.00015);
    const m = oodMetrics(id, ood);
    assert.ok(m.AUROC > 50 && m.AUROC < 100);
    // AUROC by brute-force rank counting on a subsample agrees with the sorted version
    const idS = id.subarray(0, 700);
    const oodS = ood.subarray(0, 900);
    let u = 0;
    for (const a of idS) for (const b of oodS) u += -a > -b ? 1 : -a === -b ? 0.5 : 0;
    close(auroc(idS, oodS), u / (idS.length * oodS.length), 'brute-force AUROC', 1e-15);
  });
});

describe('metrics: errors', () => {
  it('NaN / Inf name the input and index', () => {
    assert.throws(() => oodMetrics([0.1, NaN], [0.2]), (e: unknown) => e instanceof RangeError && /idScores\[1\] is NaN/.test(e.message));
    assert.throws(() => auroc([0.1], [0.2, 0.3, Infinity]), /oodScores\[2\] is Infinity/);
    assert.throws(() => aupr([-Infinity], [0.2]), /idScores\[0\] is -Infinity/);
    assert.throws(() => fprAtRecall(new Float64Array([0.1]), new Float64Array([NaN])), /oodScores\[0\] is NaN/);
  });
  it('empty lists are refused (the reference raises ValueError)', () => {
    assert.throws(() => oodMetrics([], [0.1]), /idScores is empty/);
    assert.throws(() => oodMetrics([0.1], new Float64Array(0)), /oodScores is empty/);
  });
  it('bad recall level', () => {
    assert.throws(() => oodMetrics([0.1], [0.2], { recallLevel: 95 }), /recallLevel must be in \[0, 1\], got 95/);
    assert.throws(() => fprAtRecall([0.1], [0.2], NaN), /recallLevel/);
  });
});

describe('accuracy', () => {
  it('top-1 in percent; first maximum wins ties', () => {
    const logits = { data: new Float32Array([1, 2, 3, 0, 5, 5]), dims: [3, 2] };
    assert.equal(accuracy(logits, [1, 0, 0]), 100);
    assert.equal(accuracy(logits, [1, 1, 1]), (1 / 3) * 100);
  });
  it('errors', () => {
    const logits = { data: new Float32Array([1, 2, 3, 0]), dims: [2, 2] };
    assert.throws(() => accuracy(logits, [1]), /labels has 1 entries, logits have 2 rows/);
    assert.throws(() => accuracy(logits, [1, 2]), /labels\[1\] = 2 is not a class index in \[0, 2\)/);
    assert.throws(() => accuracy({ data: logits.data, dims: [4] }, [1]), /logits: expected shape \[N, C\]/);
  });
});

describe('benchmarkTable', () => {
  it('appends an Avg row with the unrounded means', () => {
    const rows = [
      { name: 'iNaturalist', FPR: 30.004, AUROC: 94.6, AUPR: 98.7, cutoff: 0.0011 },
      { name: 'SUN', FPR: 37.005, AUROC: 92.5, AUPR: 98.0, cutoff: 0.0012 },
      { name: 'Places', FPR: 43.1, AUROC: 89.9, AUPR: 97.2 },
      { name: 'Texture', FPR: 57.8, AUROC: 86.1, AUPR: 97.0 },
    ];
    const t = benchmarkTable(rows);
    assert.equal(t.length, 5);
    assert.deepEqual(t.slice(0, 4), rows);
    assert.notEqual(t[0], rows[0]);
    const avg = t[4]!;
    assert.equal(avg.name, 'Avg');
    close(avg.FPR, (30.004 + 37.005 + 43.1 + 57.8) / 4, 'FPR', 1e-12);
    close(avg.AUROC, (94.6 + 92.5 + 89.9 + 86.1) / 4, 'AUROC', 1e-12);
    close(avg.AUPR, (98.7 + 98.0 + 97.2 + 97.0) / 4, 'AUPR', 1e-12);
    assert.equal(avg.cutoff, undefined);
  });
  it('errors', () => {
    assert.throws(() => benchmarkTable([]), /at least one row/);
    assert.throws(() => benchmarkTable([{ name: 'Avg', FPR: 1, AUROC: 2, AUPR: 3 }]), /already named "Avg"/);
    assert.throws(() => benchmarkTable([{ name: 'SUN', FPR: NaN, AUROC: 2, AUPR: 3 }]), /row 0 \(SUN\): FPR is NaN/);
  });
});
