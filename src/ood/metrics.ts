/**
 * OOD detection metrics (SPEC §4), matching SeTAR's `svd_ood/metrics.py`
 * `Metrics(recall_level).compute_metrics(id_scores, ood_scores)`.
 *
 * Conventions:
 * - scores are "lower = more in-distribution" (as {@link ./scores.js} returns them);
 * - ID is the positive class and the detector value is `-score`;
 * - values are grouped by exact equality, so order inside a tie group never matters;
 * - `auroc`, `aupr` and `fprAtRecall` return fractions in `[0, 1]` (as scikit-learn does);
 *   `oodMetrics` reports them in percent, as the reference's tables do. `cutoff` is never in
 *   percent and lives in the negated-score space (for `mcm_score` it is a positive max-softmax).
 *
 * Cost: two typed-array sorts (O(n log n)) and linear passes; 50,000 ID + 10,000s of OOD scores
 * take milliseconds.
 *
 * @example
 * ```ts
 * import { oodMetrics } from './metrics.js';
 * const m = oodMetrics(idScores, oodScores);           // recallLevel 0.95
 * console.log(m.FPR.toFixed(2), m.AUROC.toFixed(2));   // percent
 * ```
 */

import { globalView, type Logits } from './scores.js';

/** Scores accepted by the metrics: any array-like of numbers (Float64Array, Float32Array, number[]). */
export type Scores = ArrayLike<number>;

/** One point per distinct detector value, from the highest value down. */
interface Curve {
  /** distinct detector values (`-score`), descending */
  thresholds: Float64Array;
  /** cumulative ID count at each threshold (value ≥ threshold) */
  tps: Float64Array;
  /** cumulative OOD count at each threshold */
  fps: Float64Array;
  nId: number;
  nOod: number;
}

/** Copies, validates and negates scores; NaN/±Inf or an empty list throw a RangeError. */
function negated(scores: Scores, what: string): Float64Array {
  if (scores === null || typeof scores !== 'object' || typeof scores.length !== 'number') {
    throw new TypeError(`${what}: expected an array of numbers`);
  }
  const n = scores.length;
  if (n === 0) throw new RangeError(`${what} is empty: need at least one score`);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const v = scores[i];
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new RangeError(`${what}[${i}] is ${String(v)}: scores must be finite numbers`);
    }
    out[i] = -v;
  }
  return out;
}

/**
 * Sign of the zero that the reference reports when the cutoff's tie group is the value 0: numpy
 * sorts stably, so the last element of the group in descending order is the group's earliest
 * element of `concat(pos, neg)`. Only the sign of ±0 can differ inside a tie group.
 */
function zeroOfGroup(pos: Float64Array, neg: Float64Array): number {
  for (const arr of [pos, neg]) {
    for (let i = 0; i < arr.length; i++) if (arr[i] === 0) return arr[i]!;
  }
  return 0;
}

/**
 * sklearn's `_binary_clf_curve` over the negated scores: one point per distinct value, at the
 * end of each tie group, with cumulative ID (tps) and OOD (fps) counts.
 */
function curve(idScores: Scores, oodScores: Scores): Curve {
  const pos = negated(idScores, 'idScores');
  const neg = negated(oodScores, 'oodScores');
  const nId = pos.length;
  const nOod = neg.length;
  const a = Float64Array.from(pos).sort(); // ascending (typed-array sort is numeric)
  const b = Float64Array.from(neg).sort();
  const thresholds = new Float64Array(nId + nOod);
  const tps = new Float64Array(nId + nOod);
  const fps = new Float64Array(nId + nOod);
  let i = nId - 1;
  let j = nOod - 1;
  let tp = 0;
  let fp = 0;
  let k = 0;
  let zero: number | undefined;
  while (i >= 0 || j >= 0) {
    // the next (largest remaining) value; -0 and +0 are one group, as with np.diff != 0
    const va = i >= 0 ? a[i]! : -Infinity;
    const vb = j >= 0 ? b[j]! : -Infinity;
    let v = va >= vb ? va : vb;
    while (i >= 0 && a[i] === v) {
      tp++;
      i--;
    }
    while (j >= 0 && b[j] === v) {
      fp++;
      j--;
    }
    if (v === 0) v = zero ??= zeroOfGroup(pos, neg);
    thresholds[k] = v;
    tps[k] = tp;
    fps[k] = fp;
    k++;
  }
  return { thresholds: thresholds.subarray(0, k), tps: tps.subarray(0, k), fps: fps.subarray(0, k), nId, nOod };
}

function aurocOf(c: Curve): number {
  // Exact Mann-Whitney U (ties count 1/2), kept in integers: 2U = Σ_g neg_g · (2·pos_before_g + pos_g).
  // 2U ≤ 2·nId·nOod, exact in float64 far beyond realistic sizes. sklearn's trapezoid agrees to ~1e-15.
  let twoU = 0;
  let prevTp = 0;
  let prevFp = 0;
  for (let k = 0; k < c.tps.length; k++) {
    const tp = c.tps[k]!;
    const fp = c.fps[k]!;
    twoU += (fp - prevFp) * (prevTp + tp);
    prevTp = tp;
    prevFp = fp;
  }
  return twoU / (2 * c.nId * c.nOod);
}

function auprOf(c: Curve): number {
  // sklearn average_precision_score: Σ_k (R_k − R_{k−1}) · P_k over distinct thresholds, descending.
  let ap = 0;
  let prevR = 0;
  for (let k = 0; k < c.tps.length; k++) {
    const tp = c.tps[k]!;
    const r = tp / c.nId;
    if (r !== prevR) {
      ap += (r - prevR) * (tp / (tp + c.fps[k]!));
      prevR = r;
    }
  }
  return ap;
}

function fprOf(c: Curve, recallLevel: number): FprAtRecall {
  // Reference fpr_and_fdr_at_recall: keep the points down to the FIRST one with tps == nId
  // (last_ind), reverse them (lowest threshold first), append a (recall 1, fps 0) sentinel that
  // can never win (index 0 already has recall exactly 1), and take the first argmin of
  // |tps / nId − level| computed in float64.
  let last = 0;
  while (c.tps[last]! !== c.nId) last++;
  let best = last;
  let bestDist = Math.abs(c.tps[last]! / c.nId - recallLevel);
  for (let k = last - 1; k >= 0; k--) {
    const d = Math.abs(c.tps[k]! / c.nId - recallLevel);
    if (d < bestDist) {
      bestDist = d;
      best = k;
    }
  }
  return {
    fpr: c.fps[best]! / c.nOod,
    cutoff: c.thresholds[best]!,
    recall: c.tps[best]! / c.nId,
    tps: c.tps[best]!,
    fps: c.fps[best]!,
  };
}

function checkRecall(recallLevel: number): void {
  if (typeof recallLevel !== 'number' || !(recallLevel >= 0 && recallLevel <= 1)) {
    throw new RangeError(`recallLevel must be in [0, 1], got ${recallLevel}`);
  }
}

/**
 * Area under the ROC curve with ID as the positive class and `-score` as the detector value
 * (`sklearn.metrics.roc_auc_score`); an ID/OOD tie counts 1/2.
 * @param idScores ID scores `[n_id]` (lower = more ID)
 * @param oodScores OOD scores `[n_ood]`
 * @returns a fraction in `[0, 1]` (×100 for percent)
 * @throws RangeError for an empty list or a NaN/±Inf score (naming the input and index)
 * @example auroc([-0.9, -0.8], [-0.1, -0.85]) // 0.75
 */
export function auroc(idScores: Scores, oodScores: Scores): number {
  return aurocOf(curve(idScores, oodScores));
}

/**
 * Average precision with ID positive (AUPR-In, `sklearn.metrics.average_precision_score`):
 * `Σ_k (R_k − R_{k−1}) · P_k` over distinct thresholds in descending order, ties grouped, no
 * interpolation.
 * @param idScores ID scores `[n_id]` (lower = more ID)
 * @param oodScores OOD scores `[n_ood]`
 * @returns a fraction in `[0, 1]` (×100 for percent)
 * @throws RangeError for an empty list or a NaN/±Inf score
 * @example aupr([-0.9, -0.8], [-0.1, -0.85]) // (1/2)·1 + (1/2)·(2/3) ≈ 0.8333
 */
export function aupr(idScores: Scores, oodScores: Scores): number {
  return auprOf(curve(idScores, oodScores));
}

/** Result of {@link fprAtRecall}. */
export interface FprAtRecall {
  /** false-positive rate (OOD share at or above the cutoff), a fraction in `[0, 1]` */
  fpr: number;
  /** the chosen threshold, in `-score` space (not percent) */
  cutoff: number;
  /** the ID recall actually reached there (the nearest to the requested level) */
  recall: number;
  /** ID count at or above the cutoff */
  tps: number;
  /** OOD count at or above the cutoff */
  fps: number;
}

/**
 * FPR at a recall level, exactly as the reference's `fpr_and_fdr_at_recall` (SPEC §4): over
 * distinct thresholds of `-score`, the point whose recall `tps/n_id` is NEAREST to the level
 * (first argmin in the reversed, lowest-threshold-first order, so among equal recalls the lowest
 * threshold — the largest FPR — wins). With n_id = 10 this is really the FPR at 90 % recall.
 * @param idScores ID scores `[n_id]` (lower = more ID)
 * @param oodScores OOD scores `[n_ood]`
 * @param recall the recall level (default 0.95)
 * @returns `{ fpr, cutoff, recall, tps, fps }`, fpr a fraction
 * @throws RangeError for an empty list or a NaN/±Inf score
 * @example fprAtRecall(idScores, oodScores, 0.95).fpr * 100 // FPR95 in percent
 */
export function fprAtRecall(idScores: Scores, oodScores: Scores, recall = 0.95): FprAtRecall {
  checkRecall(recall);
  return fprOf(curve(idScores, oodScores), recall);
}

/** The metrics of one ID/OOD pair, as the reference reports them. */
export interface OodMetrics {
  /** FPR at the recall level, percent */
  FPR: number;
  /** AUROC, percent */
  AUROC: number;
  /** AUPR-In (average precision, ID positive), percent */
  AUPR: number;
  /** the threshold chosen for FPR, in `-score` space, not percent */
  cutoff: number;
}

/**
 * AUROC, AUPR and FPR@recall in percent plus the cutoff: the reference's
 * `Metrics(recall_level).compute_metrics(id_scores, ood_scores)` (one sort shared by all three).
 * @param idScores ID scores `[n_id]` (lower = more ID)
 * @param oodScores OOD scores `[n_ood]`
 * @param options.recallLevel recall level for FPR (default 0.95)
 * @throws RangeError for an empty list or a NaN/±Inf score (naming the input and index)
 * @example
 * ```ts
 * const { FPR, AUROC, AUPR, cutoff } = oodMetrics(mcm(idLogits), mcm(oodLogits), { recallLevel: 0.95 });
 * ```
 */
export function oodMetrics(
  idScores: Scores,
  oodScores: Scores,
  options: { recallLevel?: number } = {},
): OodMetrics {
  const recallLevel = options.recallLevel ?? 0.95;
  checkRecall(recallLevel);
  const c = curve(idScores, oodScores);
  const f = fprOf(c, recallLevel);
  return { FPR: f.fpr * 100, AUROC: aurocOf(c) * 100, AUPR: auprOf(c) * 100, cutoff: f.cutoff };
}

/**
 * Top-1 accuracy in percent: `mean(argmax(logits) == labels) · 100` (argmax takes the first
 * maximum).
 * @param logits logits `[N, C]`
 * @param labels integer labels `[N]` in `[0, C)`
 * @returns percent in `[0, 100]`
 * @example accuracy({ data: new Float32Array([1, 2, 3, 0]), dims: [2, 2] }, [1, 1]) // 50
 */
export function accuracy(logits: Logits, labels: ArrayLike<number>): number {
  const g = globalView(logits, 'logits');
  if (labels.length !== g.n) {
    throw new RangeError(`labels has ${labels.length} entries, logits have ${g.n} rows`);
  }
  if (g.n === 0) throw new RangeError('accuracy of an empty set');
  let correct = 0;
  for (let i = 0; i < g.n; i++) {
    const y = labels[i]!;
    if (!Number.isInteger(y) || y < 0 || y >= g.c) {
      throw new RangeError(`labels[${i}] = ${y} is not a class index in [0, ${g.c})`);
    }
    const off = i * g.c;
    let arg = 0;
    for (let j = 1; j < g.c; j++) if (g.data[off + j]! > g.data[off + arg]!) arg = j;
    if (arg === y) correct++;
  }
  return (correct / g.n) * 100;
}

/** One row of a per-benchmark table: an OOD set and its metrics (percent; cutoff optional). */
export interface BenchmarkRow {
  name: string;
  FPR: number;
  AUROC: number;
  AUPR: number;
  cutoff?: number;
}

/**
 * Per-benchmark table: the rows (copied, in order) plus an `Avg` row with the mean FPR, AUROC
 * and AUPR of the rows. Values are not rounded (the reference averages unrounded values, then
 * rounds to 2 decimals for display). The `Avg` row has no cutoff.
 * @param rows one row per OOD set
 * @throws RangeError for no rows or a row already named `Avg`
 * @example
 * ```ts
 * benchmarkTable([{ name: 'iNaturalist', ...m1 }, { name: 'SUN', ...m2 }]).at(-1)
 * // { name: 'Avg', FPR: (m1.FPR + m2.FPR) / 2, AUROC: …, AUPR: … }
 * ```
 */
export function benchmarkTable(rows: readonly BenchmarkRow[]): BenchmarkRow[] {
  if (rows.length === 0) throw new RangeError('benchmarkTable needs at least one row');
  let fpr = 0;
  let au = 0;
  let ap = 0;
  rows.forEach((r, i) => {
    if (r.name === 'Avg') throw new RangeError(`row ${i} is already named "Avg"`);
    for (const k of ['FPR', 'AUROC', 'AUPR'] as const) {
      if (typeof r[k] !== 'number' || !Number.isFinite(r[k])) {
        throw new RangeError(`row ${i} (${r.name}): ${k} is ${String(r[k])}`);
      }
    }
    fpr += r.FPR;
    au += r.AUROC;
    ap += r.AUPR;
  });
  const n = rows.length;
  return [...rows.map((r) => ({ ...r })), { name: 'Avg', FPR: fpr / n, AUROC: au / n, AUPR: ap / n }];
}

/** The FPR column's name at a recall level: `FPR95` at 0.95, `FPR90` at 0.9, `FPR92.5` at 0.925. */
export function fprColumn(recallLevel: number): string {
  return `FPR${Number((recallLevel * 100).toFixed(6))}`;
}
