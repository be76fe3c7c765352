/** Shared by the low-rank tests: the fixture's types, small dense linear algebra and a seeded PRNG. */
import { readFileSync } from 'node:fs';
import { fixture } from '../helpers/fixtures.js';
import type { SvdFactors } from '../../src/lowrank/svd.js';
import { mulberry32 } from '../../src/rng.js';
export { mulberry32 };

/** `shared/fixtures/lowrank/cases.json`, see its README. */
export interface LowRankCases {
  ratios: number[];
  matrices: Array<{
    name: string;
    shape: [number, number];
    full_rank: number;
    weight: number[][];
    singular_values: number[];
    configs: Array<{
      ratio: number;
      rank: number;
      full_rank_times_ratio: number;
      small: ModeCase & { lora_A: number[][]; lora_B: number[][] };
      large: ModeCase;
    }>;
  }>;
  rank_rounding: Array<{ full_rank: number; ratio: number; product: number; python_round: number; js_math_round: number; differs: boolean }>;
}
export interface ModeCase {
  pruned: number[][];
  dropped_rank: number;
  kept_rank: number;
  dropped_singular_values: number[];
  frobenius_error: number;
  max_abs_diff_vs_torch_float32_svd: number;
}

let cached: LowRankCases | undefined;
export function lowRankCases(): LowRankCases {
  cached ??= JSON.parse(readFileSync(fixture('lowrank', 'cases.json'), 'utf8')) as LowRankCases;
  return cached;
}


export function gaussian(rows: number, cols: number, seed: number): Float64Array {
  const rand = mulberry32(seed);
  return Float64Array.from({ length: rows * cols }, () => Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand()));
}

/** Row-major `a (p x q) · b (q x r)`. */
export function matmul(a: ArrayLike<number>, b: ArrayLike<number>, p: number, q: number, r: number): Float64Array {
  const c = new Float64Array(p * r);
  for (let i = 0; i < p; i++) {
    for (let l = 0; l < q; l++) {
      const x = a[i * q + l];
      if (x === 0) continue;
      for (let j = 0; j < r; j++) c[i * r + j] += x * b[l * r + j];
    }
  }
  return c;
}

/** `u · diag(s) · vh`. */
export function reconstruct(f: SvdFactors): Float64Array {
  const us = new Float64Array(f.rows * f.k);
  for (let i = 0; i < f.rows; i++) for (let l = 0; l < f.k; l++) us[i * f.k + l] = f.u[i * f.k + l] * f.s[l];
  return matmul(us, f.vh, f.rows, f.k, f.cols);
}

/** `max |xᵢ·xⱼ − δᵢⱼ|` over the `count` vectors of length `len` at `x[i*stride_i + l*stride_l]`. */
function orthoDefect(x: Float64Array, count: number, len: number, at: (i: number, l: number) => number): number {
  let worst = 0;
  for (let i = 0; i < count; i++) {
    for (let j = i; j < count; j++) {
      let d = 0;
      for (let l = 0; l < len; l++) d += x[at(i, l)] * x[at(j, l)];
      worst = Math.max(worst, Math.abs(d - (i === j ? 1 : 0)));
    }
  }
  return worst;
}

/** `max |UᵀU − I|` for the columns of `u` (`[rows, k]`). */
export function orthoDefectU(f: SvdFactors): number {
  return orthoDefect(f.u, f.k, f.rows, (i, l) => l * f.k + i);
}

/** `max |Vh·Vhᵀ − I|` for the rows of `vh` (`[k, cols]`). */
export function orthoDefectVh(f: SvdFactors): number {
  return orthoDefect(f.vh, f.k, f.cols, (i, l) => i * f.cols + l);
}

export function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** `max |a − b|` with the index where it occurs. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): { max: number; index: number } {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let max = 0;
  let index = -1;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (d > max || Number.isNaN(d)) {
      max = d;
      index = i;
    }
  }
  return { max, index };
}

/** A matrix `rows x cols` with prescribed singular values `s` (descending), built from random orthogonal factors. */
export function withSpectrum(rows: number, cols: number, s: readonly number[], seed: number): Float64Array {
  const k = s.length;
  const q1 = orthonormalColumns(rows, k, seed);
  const q2 = orthonormalColumns(cols, k, seed + 1);
  const a = new Float64Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      let x = 0;
      for (let l = 0; l < k; l++) x += q1[i * k + l] * s[l] * q2[j * k + l];
      a[i * cols + j] = x;
    }
  }
  return a;
}

/** `n x k` with orthonormal columns: modified Gram–Schmidt, twice, on a Gaussian matrix. */
function orthonormalColumns(n: number, k: number, seed: number): Float64Array {
  const q = gaussian(n, k, seed);
  for (let j = 0; j < k; j++) {
    for (let pass = 0; pass < 2; pass++) {
      for (let p = 0; p < j; p++) {
        let d = 0;
        for (let i = 0; i < n; i++) d += q[i * k + p] * q[i * k + j];
        for (let i = 0; i < n; i++) q[i * k + j] -= d * q[i * k + p];
      }
    }
    let norm = 0;
    for (let i = 0; i < n; i++) norm += q[i * k + j] ** 2;
    norm = Math.sqrt(norm);
    for (let i = 0; i < n; i++) q[i * k + j] /= norm;
  }
  return q;
}
