/**
 * SeTAR's low-rank rule (SPEC §2) and the SeTAR+FT LoRA split (SPEC §7).
 *
 * For a weight `W` (out x in, nn.Linear layout) with SVD `W = U S Vᵀ` and full rank
 * `m = min(out, in)`, a ratio gives the number of dropped singular triplets
 * `r = round(m · ratio)` (Python's half-to-even `round`; a ratio >= 1 is an absolute rank).
 * Mode `small` (the SeTAR default) drops the r smallest, `large` the r largest, `random` a seeded
 * random set of r. `r = 0` leaves the weight untouched; `r = m` is an error.
 *
 * @example
 * const factors = svd(weight, 3072, 768);               // or await getSvd(weight, [3072, 768])
 * for (const ratio of [0.05, 0.1, 0.15]) {
 *   const pruned = lowRankApprox({ weight, shape: [3072, 768], ratio, factors }); // Float32Array [3072*768]
 * }
 */
import { mulberry32 } from '../rng.js';
import { gemmNT, svd, type SvdFactors } from './svd.js';

/** Which singular triplets to drop: the smallest (SeTAR), the largest, or a seeded random set. */
export type PruneMode = 'small' | 'large' | 'random';
export const PRUNE_MODES: readonly PruneMode[] = ['small', 'large', 'random'];

/**
 * Python 3's `round(x)` for a float: nearest integer, ties to even, decided on the exact float64
 * value (so `round(2.5) = 2`, `round(3.5) = 4`, and `30 * 0.15 = 4.5` rounds to 4).
 * Throws a RangeError for NaN and ±Infinity (Python raises too).
 */
export function pythonRound(x: number): number {
  if (!Number.isFinite(x)) throw new RangeError(`pythonRound: cannot round ${x} to an integer`);
  const f = Math.floor(x);
  const frac = x - f; // exact for every double
  let r: number;
  if (frac > 0.5) r = f + 1;
  else if (frac < 0.5) r = f;
  else r = f % 2 === 0 ? f : f + 1;
  return r === 0 ? 0 : r; // no -0
}

/**
 * Number of singular triplets to drop from a weight of full rank `fullRank` (SPEC §2):
 * `ratio` in [0, 1) → `pythonRound(fullRank * ratio)`; an integer `ratio >= 1` is the rank
 * itself. The result is in [0, fullRank − 1]; 0 means "leave the weight as it is".
 *
 * @example dropRank(50, 0.25) // 12 (12.5 rounds half to even); dropRank(768, 0.4) // 307
 */
export function dropRank(fullRank: number, ratio: number): number {
  if (!Number.isInteger(fullRank) || fullRank < 1) {
    throw new RangeError(`'fullRank' passed to 'dropRank' must be an integer >= 1, got ${fullRank}`);
  }
  if (typeof ratio !== 'number' || !Number.isFinite(ratio) || ratio < 0) {
    throw new RangeError(`ratio must be a finite number >= 0 (a fraction in [0, 1) or an integer rank >= 1), got ${ratio}`);
  }
  let r: number;
  if (ratio < 1) {
    r = pythonRound(fullRank * ratio);
  } else {
    if (!Number.isInteger(ratio)) {
      throw new RangeError(`ratio ${ratio} is >= 1, so it is read as an absolute rank and must be an integer`);
    }
    r = ratio;
  }
  if (r >= fullRank) {
    throw new RangeError(
      `ratio ${ratio} gives a dropped rank of ${r} for a weight of full rank ${fullRank}; ` +
        `the dropped rank must be in [0, ${fullRank - 1}]`,
    );
  }
  return r;
}

/** Parameters of {@link lowRankApprox} and {@link loraSplit}. */
export interface LowRankParams {
  /** Row-major weight, nn.Linear layout `[out, in]`. */
  readonly weight: Float32Array;
  /** `[out, in]`. */
  readonly shape: readonly [number, number];
  /** Fraction of the full rank to drop (or an absolute rank if >= 1), see {@link dropRank}. */
  readonly ratio: number;
  /** Default `'small'`. */
  readonly mode?: PruneMode;
  /** Seed of the `random` mode's PRNG (mulberry32); default 0. */
  readonly seed?: number;
  /** SVD of `weight` (from {@link svd} or `getSvd`), reused across ratios; computed if absent. */
  readonly factors?: SvdFactors;
  /** Name of the weight for error messages, e.g. `vision_model.encoder.layers.11.mlp.fc1.weight`. */
  readonly name?: string;
}

/**
 * The pruned weight `W' = Σ_{i kept} sᵢ uᵢ vᵢᵀ` as float32 (SPEC §2); ratio 0 (or any ratio
 * giving rank 0) returns a copy of `weight`. Computed in float64 as the kept sum or as
 * `W − Σ_{i dropped}`, whichever has fewer terms.
 *
 * @example
 * const w = lowRankApprox({ weight, shape: [3072, 768], ratio: 0.1, factors }); // drops 77 smallest
 */
export function lowRankApprox(params: LowRankParams): Float32Array {
  const plan = planPrune(params, 'lowRankApprox');
  if (!plan) return params.weight.slice();
  return reconstructKept(params.weight, plan.factors, plan.dropped);
}

/** Result of {@link loraSplit}: `pruned + loraB·loraA = weight` (up to rounding). */
export interface LoraSplit {
  /** The frozen base `W'`, `[out, in]` float32 (as {@link lowRankApprox}). */
  readonly pruned: Float32Array;
  /** `diag(√s_d)·V_dᵀ`, `[r, in]` float32, dropped components in ascending index order. */
  readonly loraA: Float32Array;
  /** `U_d·diag(√s_d)`, `[out, r]` float32. */
  readonly loraB: Float32Array;
  /** Number of dropped components r (0: empty `loraA`/`loraB`). */
  readonly rank: number;
}

/**
 * SeTAR+FT's split (SPEC §7, the reference's `svd_init`): the dropped components become a LoRA
 * adapter with `A = diag(√s_d)·V_dᵀ` and `B = U_d·diag(√s_d)`, so `W' + B·A = W` at the start
 * (LoRA scaling 1). With the default `small` mode the dropped components are the minor ones.
 * Singular vectors are defined up to sign, so `loraA`/`loraB` may differ in sign per component
 * from another SVD routine; `B·A` does not.
 */
export function loraSplit(params: LowRankParams): LoraSplit {
  const plan = planPrune(params, 'loraSplit');
  if (!plan) return { pruned: params.weight.slice(), loraA: new Float32Array(0), loraB: new Float32Array(0), rank: 0 };
  const [out, inp] = params.shape;
  const r = plan.dropped.length;
  const { u, s, vh, k } = plan.factors;
  const loraA = new Float32Array(r * inp);
  const loraB = new Float32Array(out * r);
  for (let t = 0; t < r; t++) {
    const c = plan.dropped[t];
    const root = Math.sqrt(s[c]);
    for (let j = 0; j < inp; j++) loraA[t * inp + j] = root * vh[c * inp + j];
    for (let i = 0; i < out; i++) loraB[i * r + t] = u[i * k + c] * root;
  }
  return { pruned: reconstructKept(params.weight, plan.factors, plan.dropped), loraA, loraB, rank: r };
}

/**
 * Indices (ascending) of the singular triplets that `mode` drops among `fullRank`, `rank` of
 * them. `random` draws a partial Fisher–Yates shuffle from mulberry32(`seed`) — deterministic for
 * a seed, but not the reference's `torch.randperm` sequence.
 */
export function droppedIndices(fullRank: number, rank: number, mode: PruneMode, seed = 0): Int32Array {
  const out = new Int32Array(rank);
  if (mode === 'small') {
    for (let t = 0; t < rank; t++) out[t] = fullRank - rank + t;
  } else if (mode === 'large') {
    for (let t = 0; t < rank; t++) out[t] = t;
  } else {
    const perm = Int32Array.from({ length: fullRank }, (_, i) => i);
    const rand = mulberry32(seed);
    for (let t = 0; t < rank; t++) {
      const j = t + Math.floor(rand() * (fullRank - t));
      const tmp = perm[t];
      perm[t] = perm[j];
      perm[j] = tmp;
    }
    out.set(perm.subarray(0, rank));
    out.sort();
  }
  return out;
}


interface PrunePlan {
  readonly factors: SvdFactors;
  readonly dropped: Int32Array;
}

/** Validates the parameters once, at the op boundary, and decides what to drop (null: nothing). */
function planPrune(params: LowRankParams, op: string): PrunePlan | null {
  const { weight, shape, ratio, mode = 'small', seed = 0, name } = params;
  const what = name ? ` for '${name}'` : '';
  if (!(weight instanceof Float32Array)) {
    throw new TypeError(`'weight' passed to '${op}'${what} must be a Float32Array`);
  }
  if (!Array.isArray(shape) || shape.length !== 2 || !shape.every((d) => Number.isInteger(d) && d >= 1)) {
    throw new RangeError(`'shape' passed to '${op}'${what} must be [out, in] with integers >= 1, got ${JSON.stringify(shape)}`);
  }
  const [out, inp] = shape;
  if (weight.length !== out * inp) {
    throw new RangeError(
      `'weight' passed to '${op}'${what} must have ${out}*${inp} = ${out * inp} elements for shape [${out}, ${inp}], got ${weight.length}`,
    );
  }
  if (!PRUNE_MODES.includes(mode)) {
    throw new TypeError(`'mode' passed to '${op}'${what} must be one of ${PRUNE_MODES.map((x) => `'${x}'`).join(', ')}, got ${JSON.stringify(mode)}`);
  }
  if (!Number.isInteger(seed)) throw new TypeError(`'seed' passed to '${op}'${what} must be an integer, got ${seed}`);
  const m = Math.min(out, inp);
  let r: number;
  try {
    r = dropRank(m, ratio);
  } catch (err) {
    throw new RangeError(`'ratio' passed to '${op}'${what}: ${(err as Error).message}`);
  }
  const given = params.factors;
  if (given && (given.rows !== out || given.cols !== inp || given.k !== m)) {
    throw new RangeError(
      `'factors' passed to '${op}'${what} are for a [${given.rows}, ${given.cols}] matrix, the weight is [${out}, ${inp}]`,
    );
  }
  if (r === 0) return null;
  return { factors: given ?? svd(weight, out, inp), dropped: droppedIndices(m, r, mode, seed) };
}

/**
 * `W − Σ_{i∈dropped} sᵢ uᵢ vᵢᵀ`, or equivalently `Σ_{i kept} sᵢ uᵢ vᵢᵀ` when that has fewer
 * terms, in float64 with the blocked kernel, rounded to float32.
 */
function reconstructKept(weight: Float32Array, factors: SvdFactors, dropped: Int32Array): Float32Array {
  const { u, s, vh, rows, cols, k } = factors;
  const isDropped = new Uint8Array(k);
  for (const i of dropped) isDropped[i] = 1;
  const subtract = dropped.length <= k - dropped.length;
  const terms: number[] = [];
  for (let i = 0; i < k; i++) if (Boolean(isDropped[i]) === subtract) terms.push(i);
  const t = terms.length;
  // C = X·Yᵀ with X[i][l] = u[i][terms[l]]·s[terms[l]] (rows x t), Y[j][l] = vh[terms[l]][j] (cols x t).
  const X = new Float64Array(rows * t);
  const Y = new Float64Array(cols * t);
  for (let l = 0; l < t; l++) {
    const c = terms[l];
    const sc = s[c];
    for (let i = 0; i < rows; i++) X[i * t + l] = u[i * k + c] * sc;
    for (let j = 0; j < cols; j++) Y[j * t + l] = vh[c * cols + j];
  }
  const C = new Float64Array(rows * cols);
  if (t > 0) gemmNT(X, rows, Y, cols, t, C, false);
  const out = new Float32Array(rows * cols);
  if (subtract) for (let i = 0; i < out.length; i++) out[i] = weight[i] - C[i];
  else out.set(C);
  return out;
}
