import { pythonRound } from '../lowrank/lowrank.js';
/**
 * The LoCoOp objective of the SeTAR search (SPEC §5) and the pseudo-OOD detection metrics the
 * search can use instead, matching SeTAR's `LoCoOpLoss` and `CLIP.compute_metrics_loss`
 * (`svd_ood/model_hub.py`), computed in float64.
 *
 * setar treats the whole validation set as ONE batch: `loss_id` is the mean over all images and
 * `loss_ood` the mean over all OOD patches of all images (the reference's value whenever its
 * batch holds the whole set). {@link locoop_loss_batched} reproduces the reference's batch-size
 * dependent average for comparison.
 *
 * Logits are already multiplied by `exp(logit_scale)` (CLIP) — the losses apply NO temperature;
 * only the pseudo-OOD scores use one.
 *
 * @example
 * ```ts
 * import { locoop_loss, pseudoOodMetrics } from './locoop.js';
 * const r = locoop_loss(global, local, labels, { topK: 300, lambda: 0.1 }); // ImageNet defaults
 * r.locoop; r.loss_id; r.loss_ood; r.acc; r.ood_patch_percent; r.oodMask;
 * const m = pseudoOodMetrics(global, local, r.oodMask, ['mcm_score', 'gl_mcm_score'], { temperature: 100 });
 * m.gl_mcm_score.AUROC;
 * ```
 */

import { oodMetrics, type OodMetrics } from './metrics.js';
import { getScorer, globalView, localView, type FloatArray, type Logits } from './scores.js';

/** Options of {@link locoop_loss}. */
export interface LocoopOptions {
  /** K of the top-K test: a patch is OOD when the label is not among its K largest logits
   * [300 ImageNet, 4 VOC, 700 Swin]; 1 ≤ K ≤ C. */
  topK: number;
  /** weight of `loss_ood` [0.10 ImageNet, 0.05 VOC, 0.01 Swin] */
  lambda: number;
  /** choose OOD patches with the predicted class (argmax of the global logits) instead of the
   * label (`use_pred_label`); `loss_id` and `acc` always use the true labels. Default false. */
  usePredLabel?: boolean;
}

/** Result of {@link locoop_loss}. */
export interface LocoopResult {
  /** `loss_id + lambda · loss_ood` */
  locoop: number;
  /** mean cross-entropy of the global logits against the labels */
  loss_id: number;
  /** mean over all OOD patches of `Σ_c p·log(p + 1e-5)` (= −entropy; 0 if there is none) */
  loss_ood: number;
  /** top-1 accuracy of the global logits, percent */
  acc: number;
  /** share of OOD patches among all N·P patches, percent */
  ood_patch_percent: number;
  /** `[N·P]` (row-major `[N, P]`): 1 where the patch is OOD */
  oodMask: Uint8Array;
  /** `[N]` argmax of the global logits (first maximum) */
  labels_pred: Int32Array;
  /** number of OOD patches */
  n_ood_patches: number;
}

/**
 * Whether class `label` is among the `k` largest of `c` values at `row[off..off+c)`, as
 * `torch.topk(...).indices` membership on the reference's device (CUDA `gatherTopK`): values
 * strictly above the k-th value are in, and among values EQUAL to it the lower class indices
 * fill the remaining places first. As in CUDA's radix ordering, +0 ranks above −0. (CPU torch
 * does not guarantee any order inside a tie; the fixtures contain no ties at the boundary.)
 * @example inTopK([1, 2, 2, 2, 0], 0, 5, 2, 2) // true: ranks 1 (after class 1)
 * @example inTopK([1, 2, 2, 2, 0], 0, 5, 3, 2) // false: classes 1 and 2 come first
 */
export function inTopK(row: ArrayLike<number>, off: number, c: number, label: number, k: number): boolean {
  const v = row[off + label]!;
  const vNegZero = v === 0 && Object.is(v, -0);
  let rank = 0;
  for (let j = 0; j < c; j++) {
    if (j === label) continue;
    const w = row[off + j]!;
    let above: boolean;
    if (w > v) above = true;
    else if (w < v) above = false;
    else if (w === 0 && Object.is(w, -0) !== vNegZero) above = vNegZero; // +0 vs −0
    else above = j < label; // equal: lower index first
    if (above && ++rank >= k) return false;
  }
  return true;
}

function argmaxRow(data: FloatArray, off: number, c: number): number {
  let arg = 0;
  for (let j = 1; j < c; j++) if (data[off + j]! > data[off + arg]!) arg = j;
  return arg;
}

function checkLabels(labels: ArrayLike<number>, n: number, c: number): void {
  if (!labels || typeof labels.length !== 'number') throw new TypeError('labels: expected an array of class indices');
  if (labels.length !== n) throw new RangeError(`labels has ${labels.length} entries, logits have N = ${n} images`);
  for (let i = 0; i < n; i++) {
    const y = labels[i]!;
    if (!Number.isInteger(y) || y < 0 || y >= c) {
      throw new RangeError(`labels[${i}] = ${y} is not a class index in [0, ${c})`);
    }
  }
}

function checkPair(g: { n: number; c: number }, l: { n: number; c: number }): void {
  if (g.n !== l.n || g.c !== l.c) {
    throw new RangeError(`global logits [${g.n}, ${g.c}] and local logits [${l.n}, …, ${l.c}] disagree on N or C`);
  }
}

/**
 * The LoCoOp objective over the whole set as one batch (SPEC §5).
 * - OOD patch: `y` (or the predicted class with `usePredLabel`) is not among the patch's top-K
 *   local logits ({@link inTopK}).
 * - `loss_id = mean_n CE(global[n], y[n])` (no temperature).
 * - `loss_ood = mean over OOD patches of Σ_c p·log(p + 1e-5)`, `p = softmax(local)` (no
 *   temperature); 0 if there is no OOD patch.
 * - `locoop = loss_id + lambda · loss_ood`.
 * @param global global logits `[N, C]`, already scaled by `exp(logit_scale)`
 * @param local local logits `[N, P, C]` (or `[N, H, W, C]`), same scaling
 * @param labels class indices `[N]`
 * @param options `{ topK, lambda, usePredLabel }`
 * @throws RangeError for mismatched shapes, bad labels, K outside `[1, C]`, non-finite logits
 * @example
 * ```ts
 * const r = locoop_loss({ data: g, dims: [N, C] }, { data: l, dims: [N, 196, C] }, labels,
 *                       { topK: 300, lambda: 0.1 });
 * console.log(r.locoop, r.acc, r.ood_patch_percent);
 * ```
 */
export function locoop_loss(global: Logits, local: Logits, labels: ArrayLike<number>, options: LocoopOptions): LocoopResult {
  const g = globalView(global);
  const l = localView(local);
  checkPair(g, l);
  const { n, c } = g;
  const p = l.p;
  if (n === 0) throw new RangeError('locoop_loss of an empty set (N = 0)');
  checkLabels(labels, n, c);
  const { topK, lambda } = options;
  if (!Number.isInteger(topK) || topK < 1 || topK > c) {
    throw new RangeError(`topK must be an integer in [1, C = ${c}], got ${topK}`);
  }
  if (typeof lambda !== 'number' || !Number.isFinite(lambda)) throw new RangeError(`lambda must be a finite number, got ${lambda}`);
  const usePred = options.usePredLabel ?? false;

  const labelsPred = new Int32Array(n);
  let ce = 0;
  let correct = 0;
  for (let i = 0; i < n; i++) {
    const off = i * c;
    const y = labels[i]!;
    let m = -Infinity;
    for (let j = 0; j < c; j++) if (g.data[off + j]! > m) m = g.data[off + j]!;
    let s = 0;
    for (let j = 0; j < c; j++) s += Math.exp(g.data[off + j]! - m);
    ce += m + Math.log(s) - g.data[off + y]!;
    const pred = argmaxRow(g.data, off, c);
    labelsPred[i] = pred;
    if (pred === y) correct++;
  }
  const loss_id = ce / n;

  const oodMask = new Uint8Array(n * p);
  let nOod = 0;
  let sumNegEnt = 0;
  for (let i = 0; i < n; i++) {
    const y = usePred ? labelsPred[i]! : labels[i]!;
    for (let q = 0; q < p; q++) {
      const off = (i * p + q) * c;
      if (inTopK(l.data, off, c, y, topK)) continue;
      oodMask[i * p + q] = 1;
      nOod++;
      let m = -Infinity;
      for (let j = 0; j < c; j++) if (l.data[off + j]! > m) m = l.data[off + j]!;
      let s = 0;
      for (let j = 0; j < c; j++) s += Math.exp(l.data[off + j]! - m);
      let acc = 0;
      for (let j = 0; j < c; j++) {
        const pj = Math.exp(l.data[off + j]! - m) / s;
        acc += pj * Math.log(pj + 1e-5);
      }
      sumNegEnt += acc;
    }
  }
  const loss_ood = nOod === 0 ? 0 : sumNegEnt / nOod;
  return {
    locoop: loss_id + lambda * loss_ood,
    loss_id,
    loss_ood,
    acc: (correct / n) * 100,
    ood_patch_percent: (nOod / (n * p)) * 100,
    oodMask,
    labels_pred: labelsPred,
    n_ood_patches: nOod,
  };
}

/** Result of {@link locoop_loss_batched}. */
export interface LocoopBatchedResult {
  /** the reference's average: `Σ_b B_b · value_b / N` for each value */
  averaged: { locoop: number; loss_id: number; loss_ood: number; acc: number; ood_patch_percent: number };
  /** {@link locoop_loss} of each batch */
  perBatch: LocoopResult[];
}

/**
 * The reference's batched evaluation, for comparison with its logs: consecutive batches of
 * `batchSize` images (the last may be smaller), each a {@link locoop_loss}, averaged weighted by
 * batch size. Only `loss_ood` (and so `locoop`) differs from {@link locoop_loss} of the whole set:
 * each batch normalises by its own OOD-patch count. setar's search uses {@link locoop_loss}.
 * @param batchSize images per batch (≥ 1)
 * @example locoop_loss_batched(global, local, labels, { topK: 300, lambda: 0.1 }, 100).averaged.locoop
 */
export function locoop_loss_batched(
  global: Logits,
  local: Logits,
  labels: ArrayLike<number>,
  options: LocoopOptions,
  batchSize: number,
): LocoopBatchedResult {
  const g = globalView(global);
  const l = localView(local);
  checkPair(g, l);
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError(`batchSize must be an integer ≥ 1, got ${batchSize}`);
  if (g.n === 0) throw new RangeError('locoop_loss_batched of an empty set (N = 0)');
  checkLabels(labels, g.n, g.c);
  const perBatch: LocoopResult[] = [];
  const avg = { locoop: 0, loss_id: 0, loss_ood: 0, acc: 0, ood_patch_percent: 0 };
  const gStride = g.c;
  const lStride = l.p * l.c;
  for (let start = 0; start < g.n; start += batchSize) {
    const b = Math.min(batchSize, g.n - start);
    const r = locoop_loss(
      { data: g.data.subarray(start * gStride, (start + b) * gStride), dims: [b, g.c] },
      { data: l.data.subarray(start * lStride, (start + b) * lStride), dims: [b, l.p, l.c] },
      Array.from({ length: b }, (_, i) => labels[start + i]!),
      options,
    );
    perBatch.push(r);
    for (const k of Object.keys(avg) as (keyof typeof avg)[]) avg[k] += b * r[k];
  }
  for (const k of Object.keys(avg) as (keyof typeof avg)[]) avg[k] /= g.n;
  return { averaged: avg, perBatch };
}

/** Pseudo-OOD scores of one scorer (see {@link pseudoOodScores}). */
export interface PseudoOodScores {
  /** `[N]` one score per ID image */
  id: Float64Array;
  /** `[n_ood_patches]` one score per OOD patch, image by image, patches in order */
  ood: Float64Array;
  /** `[n_ood_patches · 2]` the (image, patch) of each OOD score, flattened pairs */
  oodSource: Int32Array;
}

/**
 * Pseudo-OOD scores as the reference builds them:
 * - ID: one score per image from its global logits and ALL its P patches as local logits;
 * - OOD: each OOD patch (per `oodMask`) becomes an "image" whose global logits are that patch's
 *   logits and whose local logits are all OOD patches of the same image. So for `gl_mcm_score`,
 *   `ood(patch j of image i) = −max softmax(patch_j / T) − max over OOD patches k of image i of
 *   max softmax(patch_k / T)`. Images without OOD patches add no OOD score.
 * @param global global logits `[N, C]`
 * @param local local logits `[N, P, C]` (or `[N, H, W, C]`)
 * @param oodMask `[N·P]` nonzero = OOD patch (e.g. {@link LocoopResult.oodMask})
 * @param scorer a name from `SCORERS`
 * @param temperature T (100 for CLIP, 1 for Swin)
 * @example const s = pseudoOodScores(global, local, r.oodMask, 'gl_mcm_score', 100); // s.id, s.ood
 */
export function pseudoOodScores(
  global: Logits,
  local: Logits,
  oodMask: ArrayLike<number | boolean>,
  scorer: string,
  temperature: number,
): PseudoOodScores {
  const spec = getScorer(scorer);
  if (typeof temperature !== 'number' || !Number.isFinite(temperature) || temperature <= 0) {
    throw new RangeError(`temperature must be a finite number > 0, got ${temperature}`);
  }
  const g = globalView(global);
  const l = localView(local);
  checkPair(g, l);
  const { n, c } = g;
  const p = l.p;
  if (oodMask.length !== n * p) throw new RangeError(`oodMask has ${oodMask.length} entries, expected N·P = ${n * p}`);
  const T = temperature;

  // ID scores: global part over [N, C] + local part over [N, P, C].
  let id: Float64Array | undefined;
  if (spec.globalPart) id = spec.globalPart(g.data, n, c, T);
  if (spec.localPart) {
    const b = spec.localPart(l.data, n, p, c, T);
    if (id) for (let i = 0; i < n; i++) id[i] = id[i]! + b[i]!;
    else id = b;
  }

  let nOod = 0;
  for (let k = 0; k < n * p; k++) if (oodMask[k]) nOod++;
  const ood = new Float64Array(nOod);
  const src = new Int32Array(nOod * 2);
  const buf = new Float64Array(p * c);
  let o = 0;
  for (let i = 0; i < n; i++) {
    let m = 0;
    for (let q = 0; q < p; q++) {
      if (!oodMask[i * p + q]) continue;
      buf.set(l.data.subarray((i * p + q) * c, (i * p + q + 1) * c), m * c);
      src[(o + m) * 2] = i;
      src[(o + m) * 2 + 1] = q;
      m++;
    }
    if (m === 0) continue;
    const rows = buf.subarray(0, m * c);
    const part = spec.globalPart ? spec.globalPart(rows, m, c, T) : new Float64Array(m);
    // local part: one "image" whose patches are the m OOD patches; the same value for each of them
    const shared = spec.localPart ? spec.localPart(rows, 1, m, c, T)[0]! : 0;
    for (let k = 0; k < m; k++) ood[o + k] = spec.localPart ? (spec.globalPart ? part[k]! + shared : shared) : part[k]!;
    o += m;
  }
  return { id: id!, ood, oodSource: src };
}

/**
 * Pseudo-OOD detection metrics: for each scorer, {@link pseudoOodScores} pooled over the whole
 * set, then {@link oodMetrics} once (ID images vs OOD patches; percent).
 * @param global global logits `[N, C]`
 * @param local local logits `[N, P, C]`
 * @param oodMask `[N·P]` OOD patches (e.g. {@link LocoopResult.oodMask})
 * @param scorers scorer names, e.g. `['mcm_score', 'gl_mcm_score']`
 * @param options `temperature` (100 for CLIP, 1 for Swin), `recallLevel` (default 0.95)
 * @returns `{ [scorer]: { FPR, AUROC, AUPR, cutoff } }`
 * @throws Error `no OOD patches …` when the mask is empty (the reference raises ValueError);
 *   Error for an unknown scorer name (listing the valid ones)
 * @example pseudoOodMetrics(global, local, r.oodMask, ['gl_mcm_score'], { temperature: 100 }).gl_mcm_score.FPR
 */
export function pseudoOodMetrics(
  global: Logits,
  local: Logits,
  oodMask: ArrayLike<number | boolean>,
  scorers: readonly string[],
  options: { temperature: number; recallLevel?: number },
): Record<string, OodMetrics> {
  for (const s of scorers) getScorer(s);
  const out: Record<string, OodMetrics> = {};
  for (const s of scorers) {
    const { id, ood } = pseudoOodScores(global, local, oodMask, s, options.temperature);
    if (ood.length === 0) {
      throw new Error(
        'no OOD patches: every patch has its label among its top-K classes, so pseudo-OOD metrics are undefined ' +
          '(the reference raises ValueError here); lower topK or use the loss objective',
      );
    }
    out[s] = oodMetrics(id, ood, { recallLevel: options.recallLevel ?? 0.95 });
  }
  return out;
}

/**
 * The default K of the OOD-patch rule (SPEC §5) for a dataset of `classes` classes: the
 * reference's share of the classes (0.3 for CLIP: 300 of ImageNet's 1,000, 4 of VOC's 14),
 * rounded half to even as Python's round(), at least 1.
 */
export function defaultTopK(share: number, classes: number): number {
  return Math.max(1, Math.min(classes, pythonRound(share * classes)));
}
