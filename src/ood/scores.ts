/**
 * OOD scores over classifier logits (SPEC §3), matching SeTAR's `svd_ood/scorers.py`
 * `Scorers(scorers, temperature).cal_scores(logits_global, logits_local)`.
 *
 * Every score is "lower = more in-distribution". All arithmetic is float64 (inputs may be
 * Float32Array; their values are read exactly), with a max-shifted softmax / logsumexp, so rows
 * such as `[1e4, -1e4, ...]` neither overflow nor underflow to NaN.
 *
 * Layouts (row-major, as ONNX Runtime returns them):
 * - global logits `[N, C]`: one row of C class logits per image;
 * - local logits `[N, P, C]` (or `[N, H, W, C]`, read as `P = H·W` patches): one row per patch.
 *
 * The temperature T divides the logits before the softmax: T = 100 for CLIP logits that already
 * include `exp(logit_scale)` (so the softmax is over raw cosine similarities), T = 1 for Swin.
 *
 * @example
 * ```ts
 * import { mcm_score, gl_mcm_score, computeScores } from './scores.js';
 * const global = { data: new Float32Array([25, 20, 21, 30]), dims: [2, 2] };          // [N=2, C=2]
 * const local = { data: new Float32Array(2 * 4 * 2).fill(20), dims: [2, 4, 2] };     // [N, P=4, C]
 * mcm_score(global, 100);                      // Float64Array [2]
 * gl_mcm_score(global, local, 100);            // Float64Array [2]
 * computeScores('energy_score', { global }, 1); // by name, e.g. from a CLI flag
 * ```
 */

/** A float32 or float64 buffer. */
export type FloatArray = Float32Array | Float64Array;

/**
 * Logits with an explicit shape: `data` is row-major, `dims` its shape (`[N, C]` for global,
 * `[N, P, C]` or `[N, H, W, C]` for local logits). An ONNX Runtime float tensor has this shape
 * (`{ data, dims }`), so it can be passed directly.
 */
export interface Logits {
  readonly data: FloatArray;
  readonly dims: readonly number[];
}

/** Validated view of logits as `n` images × `rows` rows (1 for global, P for local) × `c` classes. */
interface LogitsView {
  data: FloatArray;
  n: number;
  rows: number;
  c: number;
}

function shapeStr(dims: readonly number[]): string {
  return '[' + dims.join(', ') + ']';
}

/** Checks a dims value and the buffer length; `what` names the input in error messages. */
function view(logits: Logits, kind: 'global' | 'local', what: string): LogitsView {
  if (logits === null || typeof logits !== 'object' || !('data' in logits) || !('dims' in logits)) {
    throw new TypeError(`${what}: expected { data: Float32Array | Float64Array, dims: number[] }`);
  }
  const { data, dims } = logits;
  if (!(data instanceof Float32Array || data instanceof Float64Array)) {
    throw new TypeError(`${what}: data must be a Float32Array or Float64Array`);
  }
  const ok = kind === 'global' ? dims.length === 2 : dims.length === 3 || dims.length === 4;
  if (!ok) {
    const want = kind === 'global' ? '[N, C]' : '[N, P, C] or [N, H, W, C]';
    throw new RangeError(`${what}: expected shape ${want}, got ${shapeStr(dims)}`);
  }
  for (const d of dims) {
    if (!Number.isInteger(d) || d < 0) throw new RangeError(`${what}: invalid shape ${shapeStr(dims)}`);
  }
  const size = dims.reduce((a, b) => a * b, 1);
  if (size !== data.length) {
    throw new RangeError(`${what}: shape ${shapeStr(dims)} needs ${size} values, data has ${data.length}`);
  }
  const n = dims[0]!;
  const c = dims[dims.length - 1]!;
  const rows = kind === 'global' ? 1 : dims.slice(1, -1).reduce((a, b) => a * b, 1);
  if (c < 1) throw new RangeError(`${what}: need at least one class, got shape ${shapeStr(dims)}`);
  if (kind === 'local' && rows < 1 && n > 0) {
    throw new RangeError(`${what}: need at least one patch, got shape ${shapeStr(dims)}`);
  }
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (!Number.isFinite(v)) {
      const idx: number[] = [];
      let r = i;
      for (let d = dims.length - 1; d >= 0; d--) {
        idx.unshift(r % dims[d]!);
        r = Math.floor(r / dims[d]!);
      }
      throw new RangeError(`${what}: non-finite value ${v} at index [${idx.join(', ')}] (flat ${i})`);
    }
  }
  return { data, n, rows, c };
}

/** @internal Validates global logits `[N, C]`; exported for the other ood modules. */
export function globalView(logits: Logits, what = 'global logits'): { data: FloatArray; n: number; c: number } {
  const v = view(logits, 'global', what);
  return { data: v.data, n: v.n, c: v.c };
}

/** @internal Validates local logits `[N, P, C]` / `[N, H, W, C]`; exported for the other ood modules. */
export function localView(logits: Logits, what = 'local logits'): { data: FloatArray; n: number; p: number; c: number } {
  const v = view(logits, 'local', what);
  return { data: v.data, n: v.n, p: v.rows, c: v.c };
}

function checkTemperature(T: number): void {
  if (typeof T !== 'number' || !Number.isFinite(T) || T <= 0) {
    throw new RangeError(`temperature must be a finite number > 0, got ${T}`);
  }
}

/**
 * Softmax of `row / T` for the row of `c` values at `data[off..off+c)`, written into `out`
 * (length ≥ c). Computed as torch does: `x = z / T`, `exp(x - max x) / Σ exp(x - max x)`.
 * Returns `Σ exp(x - max x)` (so the largest probability is `1 / sum`).
 */
function softmaxRow(data: FloatArray, off: number, c: number, T: number, out: Float64Array): number {
  let m = -Infinity;
  for (let j = 0; j < c; j++) {
    const x = data[off + j]! / T;
    out[j] = x;
    if (x > m) m = x;
  }
  let s = 0;
  for (let j = 0; j < c; j++) {
    const e = Math.exp(out[j]! - m);
    out[j] = e;
    s += e;
  }
  for (let j = 0; j < c; j++) out[j] = out[j]! / s;
  return s;
}

/** Largest softmax probability of `row / T`: `1 / Σ exp(x - max x)`. */
function maxSoftmax(data: FloatArray, off: number, c: number, T: number): number {
  let m = -Infinity;
  for (let j = 0; j < c; j++) {
    const x = data[off + j]! / T;
    if (x > m) m = x;
  }
  let s = 0;
  for (let j = 0; j < c; j++) s += Math.exp(data[off + j]! / T - m);
  return 1 / s;
}

/** @internal Per-row part of MCM on validated rows: `-max softmax(row / T)`. */
export function mcmRows(data: FloatArray, nRows: number, c: number, T: number): Float64Array {
  const out = new Float64Array(nRows);
  for (let i = 0; i < nRows; i++) out[i] = -maxSoftmax(data, i * c, c, T);
  return out;
}

/** @internal Per-image part of L-MCM on validated rows: `-max over the image's P rows of max softmax`. */
export function lmcmRows(data: FloatArray, n: number, p: number, c: number, T: number): Float64Array {
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    let best = -Infinity;
    for (let q = 0; q < p; q++) {
      const v = maxSoftmax(data, (i * p + q) * c, c, T);
      if (v > best) best = v;
    }
    out[i] = -best;
  }
  return out;
}

function energyRows(data: FloatArray, nRows: number, c: number, T: number): Float64Array {
  const out = new Float64Array(nRows);
  for (let i = 0; i < nRows; i++) {
    const off = i * c;
    let m = -Infinity;
    for (let j = 0; j < c; j++) {
      const x = data[off + j]! / T;
      if (x > m) m = x;
    }
    let s = 0;
    for (let j = 0; j < c; j++) s += Math.exp(data[off + j]! / T - m);
    out[i] = -T * (m + Math.log(s));
  }
  return out;
}

function entropyRows(data: FloatArray, nRows: number, c: number, T: number): Float64Array {
  const out = new Float64Array(nRows);
  const p = new Float64Array(c);
  for (let i = 0; i < nRows; i++) {
    softmaxRow(data, i * c, c, T, p);
    // scipy.stats.entropy: re-normalise by the sum, then Σ entr(pk) with entr(0) = 0.
    let s = 0;
    for (let j = 0; j < c; j++) s += p[j]!;
    let h = 0;
    for (let j = 0; j < c; j++) {
      const pk = p[j]! / s;
      if (pk > 0) h -= pk * Math.log(pk);
    }
    out[i] = h;
  }
  return out;
}

function varRows(data: FloatArray, nRows: number, c: number, T: number): Float64Array {
  const out = new Float64Array(nRows);
  const p = new Float64Array(c);
  for (let i = 0; i < nRows; i++) {
    softmaxRow(data, i * c, c, T, p);
    // numpy.var (ddof = 0): mean of squared deviations from the mean.
    let s = 0;
    for (let j = 0; j < c; j++) s += p[j]!;
    const mean = s / c;
    let v = 0;
    for (let j = 0; j < c; j++) {
      const d = p[j]! - mean;
      v += d * d;
    }
    out[i] = -(v / c);
  }
  return out;
}

/**
 * MCM (maximum concept matching): `-max_c softmax(global / T)`.
 * @param global global logits `[N, C]`
 * @param T temperature (100 for CLIP logits that include `exp(logit_scale)`, 1 for Swin, where
 *   this is MSP)
 * @returns Float64Array `[N]`, in `[-1, -1/C]`
 * @example mcm_score({ data: new Float32Array([30, 20]), dims: [1, 2] }, 100) // ≈ [-0.525]
 */
export function mcm_score(global: Logits, T: number): Float64Array {
  checkTemperature(T);
  const g = globalView(global);
  return mcmRows(g.data, g.n, g.c, T);
}

/**
 * L-MCM (local MCM): `-max over patches and classes of softmax(local / T)`, the single largest
 * patch probability of each image.
 * @param local local logits `[N, P, C]` (or `[N, H, W, C]`)
 * @param T temperature (100 for CLIP, 1 for Swin)
 * @returns Float64Array `[N]`
 * @example l_mcm_score({ data: new Float32Array([30, 20, 20, 20]), dims: [1, 2, 2] }, 100) // ≈ [-0.525]
 */
export function l_mcm_score(local: Logits, T: number): Float64Array {
  checkTemperature(T);
  const l = localView(local);
  return lmcmRows(l.data, l.n, l.p, l.c, T);
}

/**
 * GL-MCM: `mcm + l_mcm` (a sum, in `[-2, -2/C]`).
 * @param global global logits `[N, C]`
 * @param local local logits `[N, P, C]` (or `[N, H, W, C]`) with the same N and C
 * @param T temperature (100 for CLIP, 1 for Swin)
 * @returns Float64Array `[N]`
 * @example gl_mcm_score(global, local, 100) // Float64Array [N]
 */
export function gl_mcm_score(global: Logits, local: Logits, T: number): Float64Array {
  checkTemperature(T);
  const g = globalView(global);
  const l = localView(local);
  checkPair(g, l);
  const a = mcmRows(g.data, g.n, g.c, T);
  const b = lmcmRows(l.data, l.n, l.p, l.c, T);
  for (let i = 0; i < a.length; i++) a[i] = a[i]! + b[i]!;
  return a;
}

function checkPair(g: { n: number; c: number }, l: { n: number; c: number }): void {
  if (g.n !== l.n || g.c !== l.c) {
    throw new RangeError(
      `global logits [${g.n}, ${g.c}] and local logits [${l.n}, …, ${l.c}] disagree on N or C`,
    );
  }
}

/**
 * Energy: `-T · logsumexp(global / T)` (from the logits, always the global ones).
 * @param global global logits `[N, C]`
 * @param T temperature (100 for CLIP, 1 for Swin)
 * @returns Float64Array `[N]`
 * @example energy_score({ data: new Float64Array([1, 1]), dims: [1, 2] }, 1) // [-(1 + ln 2)]
 */
export function energy_score(global: Logits, T: number): Float64Array {
  checkTemperature(T);
  const g = globalView(global);
  return energyRows(g.data, g.n, g.c, T);
}

/**
 * Entropy of `p = softmax(global / T)` in nats, as `scipy.stats.entropy(p, axis=1)` (which
 * re-normalises p by its sum first). Positive; higher = more OOD.
 * @param global global logits `[N, C]`
 * @param T temperature (100 for CLIP, 1 for Swin)
 * @returns Float64Array `[N]`, in `[0, ln C]`
 * @example entropy_score({ data: new Float64Array([1, 1]), dims: [1, 2] }, 1) // [ln 2]
 */
export function entropy_score(global: Logits, T: number): Float64Array {
  checkTemperature(T);
  const g = globalView(global);
  return entropyRows(g.data, g.n, g.c, T);
}

/**
 * Variance score: `-var(p)` with `p = softmax(global / T)` and the population variance
 * (`np.var`, ddof = 0). A uniform row gives `-0`.
 * @param global global logits `[N, C]`
 * @param T temperature (100 for CLIP, 1 for Swin)
 * @returns Float64Array `[N]`
 * @example var_score({ data: new Float64Array([1, 1]), dims: [1, 2] }, 1) // [-0]
 */
export function var_score(global: Logits, T: number): Float64Array {
  checkTemperature(T);
  const g = globalView(global);
  return varRows(g.data, g.n, g.c, T);
}

/** Names of the scorers, as the reference spells them. */
export type ScorerName = 'mcm_score' | 'l_mcm_score' | 'gl_mcm_score' | 'energy_score' | 'entropy_score' | 'var_score';

/** Inputs for {@link computeScores}: whichever of the two a scorer needs (see {@link ScorerSpec.needs}). */
export interface ScoreInputs {
  /** global logits `[N, C]` */
  global?: Logits;
  /** local logits `[N, P, C]` or `[N, H, W, C]` */
  local?: Logits;
}

/**
 * A scorer in {@link SCORERS}. A score is the sum of a per-row global part (over `[rows, C]`) and
 * a per-image local part (over `[N, P, C]`); a scorer has one or both parts, and needs exactly
 * the inputs of the parts it has. The split lets callers such as the pseudo-OOD metrics reuse the
 * parts on rearranged logits.
 */
export interface ScorerSpec {
  readonly name: ScorerName;
  /** Which logits the scorer reads. */
  readonly needs: { readonly global: boolean; readonly local: boolean };
  /** Global part: one value per row of validated `[nRows, c]` data. */
  readonly globalPart?: (data: FloatArray, nRows: number, c: number, T: number) => Float64Array;
  /** Local part: one value per image of validated `[n, p, c]` data. */
  readonly localPart?: (data: FloatArray, n: number, p: number, c: number, T: number) => Float64Array;
  /** A one-line description. */
  readonly description: string;
}

/**
 * The scorers by name, with the logits each needs. `Object.keys(SCORERS)` lists the valid
 * names (for error messages and CLI help).
 * @example
 * ```ts
 * SCORERS.gl_mcm_score.needs // { global: true, local: true }
 * Object.keys(SCORERS)       // ['mcm_score', 'l_mcm_score', 'gl_mcm_score', 'energy_score', 'entropy_score', 'var_score']
 * ```
 */
export const SCORERS: Readonly<Record<ScorerName, ScorerSpec>> = Object.freeze({
  mcm_score: {
    name: 'mcm_score',
    needs: { global: true, local: false },
    globalPart: mcmRows,
    description: '-max softmax(global / T) (MSP at T = 1)',
  },
  l_mcm_score: {
    name: 'l_mcm_score',
    needs: { global: false, local: true },
    localPart: lmcmRows,
    description: '-max over patches and classes of softmax(local / T)',
  },
  gl_mcm_score: {
    name: 'gl_mcm_score',
    needs: { global: true, local: true },
    globalPart: mcmRows,
    localPart: lmcmRows,
    description: 'mcm_score + l_mcm_score',
  },
  energy_score: {
    name: 'energy_score',
    needs: { global: true, local: false },
    globalPart: energyRows,
    description: '-T * logsumexp(global / T)',
  },
  entropy_score: {
    name: 'entropy_score',
    needs: { global: true, local: false },
    globalPart: entropyRows,
    description: 'entropy of softmax(global / T), nats',
  },
  var_score: {
    name: 'var_score',
    needs: { global: true, local: false },
    globalPart: varRows,
    description: '-population variance of softmax(global / T)',
  },
} satisfies Record<ScorerName, ScorerSpec>);

/** The valid scorer names, in registry order. */
export const SCORER_NAMES: readonly ScorerName[] = Object.freeze(Object.keys(SCORERS) as ScorerName[]);

/**
 * Looks a scorer up by name.
 * @throws Error `unknown scorer "x"; valid scorers: mcm_score, l_mcm_score, …`
 * @example getScorer('mcm_score').needs.local // false
 */
export function getScorer(name: string): ScorerSpec {
  if (!Object.prototype.hasOwnProperty.call(SCORERS, name)) {
    throw new Error(`unknown scorer ${JSON.stringify(name)}; valid scorers: ${SCORER_NAMES.join(', ')}`);
  }
  return SCORERS[name as ScorerName];
}

/**
 * Computes a scorer by name.
 * @param name one of {@link SCORER_NAMES}
 * @param inputs the logits the scorer needs (`global` `[N, C]`, `local` `[N, P, C]`); extra ones are ignored
 * @param T temperature (100 for CLIP, 1 for Swin)
 * @returns Float64Array `[N]`
 * @throws Error for an unknown name or a missing input (the message names what is needed)
 * @example computeScores('gl_mcm_score', { global, local }, 100)
 */
export function computeScores(name: string, inputs: ScoreInputs, T: number): Float64Array {
  const spec = getScorer(name);
  checkTemperature(T);
  const missing: string[] = [];
  if (spec.needs.global && !inputs.global) missing.push('global logits [N, C]');
  if (spec.needs.local && !inputs.local) missing.push('local logits [N, P, C]');
  if (missing.length) throw new Error(`scorer ${spec.name} needs ${missing.join(' and ')}`);
  const g = spec.needs.global ? globalView(inputs.global!) : undefined;
  const l = spec.needs.local ? localView(inputs.local!) : undefined;
  if (g && l) checkPair(g, l);
  let out: Float64Array | undefined;
  if (spec.globalPart && g) out = spec.globalPart(g.data, g.n, g.c, T);
  if (spec.localPart && l) {
    const b = spec.localPart(l.data, l.n, l.p, l.c, T);
    if (out) for (let i = 0; i < out.length; i++) out[i] = out[i]! + b[i]!;
    else out = b;
  }
  return out!;
}
