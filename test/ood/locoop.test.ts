import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';

import { inTopK, locoop_loss, locoop_loss_batched, pseudoOodMetrics, pseudoOodScores } from '../../src/ood/locoop.js';
import type { Logits } from '../../src/ood/scores.js';
import { fixture } from '../helpers/fixtures.js';

interface Batch {
  logits_global: number[][];
  logits_local: number[][][];
  labels: number[];
}
interface PerBatch {
  batch_size: number;
  labels_pred: number[];
  is_ood_patch: boolean[][];
  loss_id: number;
  loss_ood: number;
  locoop_loss: number;
  acc: number;
  ood_patch_percent: number;
  loss_id_float64: number;
  loss_ood_float64: number;
  locoop_loss_float64: number;
}
type Metric = { auroc: number; aupr: number; fpr: number; cutoff: number } | { error: string };
interface LocoopCase {
  name: string;
  P: number;
  C: number;
  top_k: number;
  lambda: number;
  use_pred_label: boolean;
  temperature: number;
  recall_level: number;
  batch_sizes: number[];
  batches: Batch[];
  expected: {
    per_batch: PerBatch[];
    loss_averaged: { locoop_loss: number; loss_id: number; loss_ood: number; acc: number; ood_patch_percent: number };
    loss_averaged_float64: { locoop_loss: number; loss_id: number; loss_ood: number };
    contrast_not_reference?: { loss_ood_pooled_over_all_ood_patches: number };
    pseudo_ood: {
      id_scores: Record<string, number[]>;
      ood_scores: Record<string, number[]>;
      ood_score_source_image_patch: [number, number][];
      id_scores_float64: Record<string, number[]>;
      ood_scores_float64: Record<string, number[]>;
      metrics: Record<string, Metric>;
      metrics_from_float64_scores: Record<string, Metric>;
    };
  };
}
const data = JSON.parse(readFileSync(fixture('locoop', 'cases.json'), 'utf8')) as { scorers: string[]; cases: LocoopCase[] };

function logitsOf(batches: Batch[], C: number, P: number): { global: Logits; local: Logits; labels: number[] } {
  const n = batches.reduce((a, b) => a + b.labels.length, 0);
  return {
    global: { data: Float32Array.from(batches.flatMap((b) => b.logits_global.flat())), dims: [n, C] },
    local: { data: Float32Array.from(batches.flatMap((b) => b.logits_local.flat(2))), dims: [n, P, C] },
    labels: batches.flatMap((b) => b.labels),
  };
}

/*
 * Tolerances. setar computes in float64 from the exact float32 logits, as the fixture's
 * *_float64 values do: those must agree to 1e-12 (observed ≤ ~5e-16). The reference ran in
 * torch float32, whose rounding moves the losses by up to ~3e-7 (README) and the percentages by
 * up to ~5e-6 (66.66667175 vs 66.666666…): float32 values are compared at 1e-6 + 1e-6·|x| for
 * losses and 1e-5 for percentages. Scores: float64 1e-12, float32 2e-7. auroc/aupr/fpr do not
 * depend on the precision (README) and match to 1e-9; the cutoff matches float64 to 1e-12 and
 * the float32 reference to 1e-6.
 */
function close(got: number, want: number, abs: number, rel: number, what: string): void {
  assert.ok(Math.abs(got - want) <= abs + rel * Math.abs(want), `${what}: got ${got}, want ${want} (diff ${got - want})`);
}

const opts = (c: LocoopCase) => ({ topK: c.top_k, lambda: c.lambda, usePredLabel: c.use_pred_label });

describe('locoop fixture', () => {
  it('has the expected cases', () => assert.equal(data.cases.length, 7));
  for (const c of data.cases) {
    describe(c.name, () => {
      it('per batch: mask, predictions, losses, acc, OOD-patch percent', () => {
        c.batches.forEach((b, k) => {
          const e = c.expected.per_batch[k]!;
          const { global, local, labels } = logitsOf([b], c.C, c.P);
          const r = locoop_loss(global, local, labels, opts(c));
          assert.deepEqual(Array.from(r.labels_pred), e.labels_pred);
          assert.deepEqual(Array.from(r.oodMask, (v) => v === 1), e.is_ood_patch.flat());
          assert.equal(r.n_ood_patches, e.is_ood_patch.flat().filter(Boolean).length);
          close(r.loss_id, e.loss_id_float64, 1e-12, 1e-12, 'loss_id f64');
          close(r.loss_ood, e.loss_ood_float64, 1e-12, 1e-12, 'loss_ood f64');
          close(r.locoop, e.locoop_loss_float64, 1e-12, 1e-12, 'locoop f64');
          close(r.loss_id, e.loss_id, 1e-6, 1e-6, 'loss_id f32');
          close(r.loss_ood, e.loss_ood, 1e-6, 1e-6, 'loss_ood f32');
          close(r.locoop, e.locoop_loss, 1e-6, 1e-6, 'locoop f32');
          close(r.acc, e.acc, 1e-5, 0, 'acc');
          close(r.ood_patch_percent, e.ood_patch_percent, 1e-5, 0, 'ood_patch_percent');
        });
      });

      it('whole set as one batch', () => {
        const { global, local, labels } = logitsOf(c.batches, c.C, c.P);
        const r = locoop_loss(global, local, labels, opts(c));
        const avg = c.expected.loss_averaged;
        // loss_id, acc and OOD-patch share do not depend on the batching
        close(r.loss_id, c.expected.loss_averaged_float64.loss_id, 1e-12, 1e-12, 'loss_id');
        close(r.acc, avg.acc, 1e-5, 0, 'acc');
        close(r.ood_patch_percent, avg.ood_patch_percent, 1e-5, 0, 'ood_patch_percent');
        if (c.batches.length === 1) {
          close(r.loss_ood, c.expected.loss_averaged_float64.loss_ood, 1e-12, 1e-12, 'loss_ood');
          close(r.locoop, c.expected.loss_averaged_float64.locoop_loss, 1e-12, 1e-12, 'locoop');
        } else {
          // setar's definition: mean over ALL OOD patches (not the reference's batch-size-dependent value)
          const pooled = c.expected.contrast_not_reference!.loss_ood_pooled_over_all_ood_patches;
          close(r.loss_ood, pooled, 1e-6, 1e-6, 'pooled loss_ood');
          assert.ok(Math.abs(r.loss_ood - c.expected.loss_averaged_float64.loss_ood) > 1e-4);
          close(r.locoop, r.loss_id + c.lambda * r.loss_ood, 1e-15, 0, 'locoop');
        }
      });

      it('locoop_loss_batched reproduces the reference average', () => {
        const { global, local, labels } = logitsOf(c.batches, c.C, c.P);
        const r = locoop_loss_batched(global, local, labels, opts(c), c.batch_sizes[0]!);
        assert.deepEqual(r.perBatch.map((b) => b.labels_pred.length), c.batch_sizes);
        const f64 = c.expected.loss_averaged_float64;
        const f32 = c.expected.loss_averaged;
        close(r.averaged.loss_id, f64.loss_id, 1e-12, 1e-12, 'loss_id');
        close(r.averaged.loss_ood, f64.loss_ood, 1e-12, 1e-12, 'loss_ood');
        close(r.averaged.locoop, f64.locoop_loss, 1e-12, 1e-12, 'locoop');
        close(r.averaged.locoop, f32.locoop_loss, 1e-6, 1e-6, 'locoop f32');
        close(r.averaged.acc, f32.acc, 1e-5, 0, 'acc');
        close(r.averaged.ood_patch_percent, f32.ood_patch_percent, 1e-5, 0, 'ood_patch_percent');
      });

      it('pseudo-OOD scores and metrics', () => {
        const { global, local, labels } = logitsOf(c.batches, c.C, c.P);
        const r = locoop_loss(global, local, labels, opts(c));
        const e = c.expected.pseudo_ood;
        for (const s of data.scorers) {
          const sc = pseudoOodScores(global, local, r.oodMask, s, c.temperature);
          assert.equal(sc.id.length, e.id_scores_float64[s]!.length);
          assert.equal(sc.ood.length, e.ood_scores_float64[s]!.length);
          sc.id.forEach((v, i) => close(v, e.id_scores_float64[s]![i]!, 1e-12, 1e-12, `${s} id[${i}]`));
          sc.ood.forEach((v, i) => close(v, e.ood_scores_float64[s]![i]!, 1e-12, 1e-12, `${s} ood[${i}]`));
          sc.id.forEach((v, i) => close(v, e.id_scores[s]![i]!, 2e-7, 0, `${s} id f32[${i}]`));
          sc.ood.forEach((v, i) => close(v, e.ood_scores[s]![i]!, 2e-7, 0, `${s} ood f32[${i}]`));
          const pairs: [number, number][] = [];
          for (let k = 0; k < sc.oodSource.length; k += 2) pairs.push([sc.oodSource[k]!, sc.oodSource[k + 1]!]);
          assert.deepEqual(pairs, e.ood_score_source_image_patch);
        }
        const want32 = e.metrics;
        const want64 = e.metrics_from_float64_scores;
        if ('error' in want32[data.scorers[0]!]!) {
          assert.throws(
            () => pseudoOodMetrics(global, local, r.oodMask, data.scorers, { temperature: c.temperature, recallLevel: c.recall_level }),
            /no OOD patches/,
          );
          return;
        }
        const m = pseudoOodMetrics(global, local, r.oodMask, data.scorers, { temperature: c.temperature, recallLevel: c.recall_level });
        for (const s of data.scorers) {
          const a = want32[s] as Exclude<Metric, { error: string }>;
          const b = want64[s] as Exclude<Metric, { error: string }>;
          for (const [k, w] of [['AUROC', 'auroc'], ['AUPR', 'aupr'], ['FPR', 'fpr']] as const) {
            close(m[s]![k], a[w], 1e-9, 0, `${s} ${k} (f32)`);
            close(m[s]![k], b[w], 1e-9, 0, `${s} ${k} (f64)`);
          }
          close(m[s]!.cutoff, b.cutoff, 1e-12, 1e-12, `${s} cutoff f64`);
          close(m[s]!.cutoff, a.cutoff, 1e-6, 0, `${s} cutoff f32`);
        }
      });
    });
  }
});

describe('top-K membership (torch.topk on CUDA)', () => {
  it('strictly larger values always rank first', () => {
    const row = [0.5, 3, 1, 2];
    assert.equal(inTopK(row, 0, 4, 1, 1), true);
    assert.equal(inTopK(row, 0, 4, 3, 1), false);
    assert.equal(inTopK(row, 0, 4, 3, 2), true);
    assert.equal(inTopK(row, 0, 4, 0, 3), false);
    assert.equal(inTopK(row, 0, 4, 0, 4), true);
  });
  it('ties at the boundary: lower class index first', () => {
    const row = [1, 2, 2, 2, 0];
    assert.equal(inTopK(row, 0, 5, 1, 2), true);
    assert.equal(inTopK(row, 0, 5, 2, 2), true);
    assert.equal(inTopK(row, 0, 5, 3, 2), false);
    assert.equal(inTopK(row, 0, 5, 3, 3), true);
    // all equal: top-K = the first K classes
    const flat = [7, 7, 7, 7];
    assert.deepEqual([0, 1, 2, 3].map((y) => inTopK(flat, 0, 4, y, 2)), [true, true, false, false]);
  });
  it('+0 ranks above -0 (CUDA radix order)', () => {
    assert.equal(inTopK([-0, 0], 0, 2, 0, 1), false);
    assert.equal(inTopK([-0, 0], 0, 2, 1, 1), true);
    assert.equal(inTopK([0, -0], 0, 2, 0, 1), true);
  });
  it('respects the row offset', () => {
    assert.equal(inTopK([9, 9, 9, 1, 5, 3], 3, 3, 1, 1), true);
    assert.equal(inTopK([9, 9, 9, 1, 5, 3], 3, 3, 0, 2), false);
  });
  it('decides the OOD mask of locoop_loss with ties', () => {
    // one image, 3 patches, C = 4, label 2, K = 2
    const global = { data: new Float64Array([0, 0, 1, 0]), dims: [1, 4] };
    const local = { data: new Float64Array([5, 5, 5, 0, 0, 5, 5, 5, 5, 0, 5, 0]), dims: [1, 3, 4] };
    const r = locoop_loss(global, local, [2], { topK: 2, lambda: 0.1 });
    // [5,5,5,0]: classes 0, 1 come before 2 -> OOD; [0,5,5,5]: only 1 before -> ID; [5,0,5,0]: only 0 before -> ID
    assert.deepEqual(Array.from(r.oodMask), [1, 0, 0]);
  });
});

describe('locoop_loss: semantics', () => {
  it('use_pred_label switches the OOD label but not loss_id/acc', () => {
    const global = { data: new Float64Array([0, 10, 0]), dims: [1, 3] }; // predicts 1, label 0
    const local = { data: new Float64Array([9, 1, 0, 0, 9, 1]), dims: [1, 2, 3] };
    const a = locoop_loss(global, local, [0], { topK: 1, lambda: 1 });
    const b = locoop_loss(global, local, [0], { topK: 1, lambda: 1, usePredLabel: true });
    assert.deepEqual(Array.from(a.oodMask), [0, 1]);
    assert.deepEqual(Array.from(b.oodMask), [1, 0]);
    assert.equal(a.loss_id, b.loss_id);
    assert.equal(a.acc, 0);
    assert.equal(b.acc, 0);
  });
  it('no OOD patch: loss_ood 0 and locoop == loss_id', () => {
    const global = { data: new Float64Array([1, 2]), dims: [1, 2] };
    const local = { data: new Float64Array([1, 2, 3, 4]), dims: [1, 2, 2] };
    const r = locoop_loss(global, local, [1], { topK: 2, lambda: 0.5 });
    assert.equal(r.loss_ood, 0);
    assert.equal(r.locoop, r.loss_id);
    assert.equal(r.ood_patch_percent, 0);
  });
  it('uniform OOD patch: loss_ood = Σ (1/C)·log(1/C + 1e-5); stable for huge logits', () => {
    const global = { data: new Float64Array([1e4, -1e4, 0, 0]), dims: [1, 4] };
    const local = { data: new Float64Array([3, 3, 3, 3, 9e3, -9e3, 0, 0]), dims: [1, 2, 4] };
    const r = locoop_loss(global, local, [1], { topK: 1, lambda: 1 });
    assert.equal(r.loss_id, 2e4);
    assert.deepEqual(Array.from(r.oodMask), [1, 1]);
    close(r.loss_ood, (Math.log(0.25 + 1e-5) + Math.log(1 + 1e-5)) / 2, 1e-14, 0, 'loss_ood');
  });
});

describe('locoop: errors', () => {
  const global = { data: new Float32Array([1, 2, 3, 4, 5, 6]), dims: [2, 3] };
  const local = { data: new Float32Array(2 * 2 * 3), dims: [2, 2, 3] };
  it('top-K outside [1, C]', () => {
    assert.throws(() => locoop_loss(global, local, [0, 1], { topK: 4, lambda: 0.1 }), /topK must be an integer in \[1, C = 3\], got 4/);
    assert.throws(() => locoop_loss(global, local, [0, 1], { topK: 0, lambda: 0.1 }), /topK must be an integer/);
  });
  it('labels', () => {
    assert.throws(() => locoop_loss(global, local, [0], { topK: 1, lambda: 0.1 }), /labels has 1 entries, logits have N = 2 images/);
    assert.throws(() => locoop_loss(global, local, [0, 3], { topK: 1, lambda: 0.1 }), /labels\[1\] = 3 is not a class index in \[0, 3\)/);
  });
  it('shapes and values', () => {
    assert.throws(() => locoop_loss(global, { data: new Float32Array(8), dims: [2, 1, 4] }, [0, 1], { topK: 1, lambda: 0.1 }), /disagree on N or C/);
    const bad = new Float32Array(12);
    bad[11] = NaN;
    assert.throws(() => locoop_loss(global, { data: bad, dims: [2, 2, 3] }, [0, 1], { topK: 1, lambda: 0.1 }), /local logits: non-finite value NaN at index \[1, 1, 2\]/);
    assert.throws(() => locoop_loss(global, local, [0, 1], { topK: 1, lambda: NaN }), /lambda must be a finite number/);
    assert.throws(() => locoop_loss_batched(global, local, [0, 1], { topK: 1, lambda: 0.1 }, 0), /batchSize must be an integer ≥ 1/);
  });
  it('pseudo-OOD: no OOD patches, unknown scorer, bad mask', () => {
    const g = { data: new Float64Array([1, 2]), dims: [1, 2] };
    const l = { data: new Float64Array([1, 2, 3, 4]), dims: [1, 2, 2] };
    assert.throws(() => pseudoOodMetrics(g, l, [0, 0], ['mcm_score'], { temperature: 100 }), /no OOD patches/);
    assert.throws(() => pseudoOodMetrics(g, l, [1, 0], ['msp'], { temperature: 100 }), /unknown scorer "msp"; valid scorers: mcm_score/);
    assert.throws(() => pseudoOodScores(g, l, [1], 'mcm_score', 100), /oodMask has 1 entries, expected N·P = 2/);
    assert.throws(() => pseudoOodScores(g, l, [1, 0], 'mcm_score', 0), /temperature must be a finite number > 0/);
  });
});
