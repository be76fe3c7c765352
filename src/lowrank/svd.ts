/**
 * Thin singular value decomposition in float64, written for the weight shapes SeTAR prunes
 * (CLIP ViT-B/16: 768x768, 3072x768, 768x3072, 512x768; ViT-L/14 up to 4096x1024), in plain
 * TypeScript on one core: about 2 s for 3072x768 and 1 s for 768x768 (bench/svd.ts).
 *
 * Method (for a tall `A`, m x n with m >= n; a wide one goes through its transpose):
 *  1. Gram matrix `G = AᵀA` (n x n) with a register-blocked, symmetric dot-product kernel, after
 *     scaling `A` to max|a| = 1 (no overflow or underflow from squaring).
 *  2. Symmetric eigen-decomposition of `G`: Householder tridiagonalisation and implicit QL
 *     (JAMA's `tred2`/`tql2`), stored transposed so every O(n³) loop runs over contiguous rows,
 *     with fused reflector and rotation passes. `V` is orthonormal to machine precision.
 *  3. `B = A V`; the singular values are the column norms `‖A vᵢ‖` (their error is second order
 *     in the error of `vᵢ`, unlike `√λᵢ`, so small singular values keep their relative accuracy).
 *  4. The Gram route leaves column pairs of `B` off-orthogonal by `|bᵢ·bⱼ| ≈ c·ε·s_max²`, i.e.
 *     `uᵢ·uⱼ ≈ c·ε·κᵢκⱼ` (`κᵢ = s_max/sᵢ`). For the columns where that may exceed
 *     `τ = 2⁻⁴⁰ ≈ 9.1e-13`, one-sided Jacobi (Hestenes) sweeps on `B`, with the same rotations
 *     applied to `V` (so `B Vᵀ = A` holds), restore `|bᵢ·bⱼ| ≤ τ‖bᵢ‖‖bⱼ‖`. Well-conditioned
 *     matrices (κ below about 4 at n = 768, 13 at n = 64) skip this step.
 *  5. `uᵢ = bᵢ / sᵢ`; columns at rounding-noise level (`sᵢ ≤ ε·√(mn)·s_max`, numerical rank
 *     deficiency) get an orthonormal completion instead, keeping their tiny `sᵢ`.
 *
 * Accuracy (test/lowrank/svd.test.ts): on the fixtures, singular values within 7e-15 relative of
 * LAPACK, `max|A − U S Vh| ≤ 1.2e-15·s_max`, `max|UᵀU − I|`, `max|Vh Vhᵀ − I| ≤ 9e-13`
 * (1e-14 when well conditioned). Singular vectors are defined up to sign; compare products.
 *
 * @example
 * const { u, s, vh, k } = svd(new Float64Array([3, 0, 0, 4]), 2, 2);
 * // k = 2, s = [4, 3]; u is [2, 2] and vh is [2, 2], row-major; A = u·diag(s)·vh
 */

/** A thin SVD `A = u · diag(s) · vh`, all row-major float64 (torch.linalg.svd's names). */
export interface SvdFactors {
  /** Left singular vectors as columns, row-major `[rows, k]`. */
  readonly u: Float64Array;
  /** Singular values, `[k]`, non-negative and descending. */
  readonly s: Float64Array;
  /** Right singular vectors as rows, row-major `[k, cols]`. */
  readonly vh: Float64Array;
  readonly rows: number;
  readonly cols: number;
  /** `min(rows, cols)`. */
  readonly k: number;
}

const EPS = 2 ** -52;
/** Target relative orthogonality of the columns of `A V` after refinement. */
const ORTHO_TOL = 2 ** -40;
const MAX_JACOBI_SWEEPS = 30;

/**
 * Thin SVD of the row-major `rows x cols` matrix `a`, computed in float64.
 * `k = min(rows, cols)`; `s` is descending; `u` has orthonormal columns, `vh` orthonormal rows.
 * Throws a RangeError for a bad shape and for non-finite entries.
 */
export function svd(a: Float64Array | Float32Array, rows: number, cols: number): SvdFactors {
  if (!Number.isInteger(rows) || rows < 1 || !Number.isInteger(cols) || cols < 1) {
    throw new RangeError(`'rows' and 'cols' passed to 'svd' must be integers >= 1, got [${rows}, ${cols}]`);
  }
  if (a.length !== rows * cols) {
    throw new RangeError(
      `'a' passed to 'svd' must have rows*cols = ${rows}*${cols} = ${rows * cols} elements, got ${a.length}`,
    );
  }
  let maxAbs = 0;
  for (let i = 0; i < a.length; i++) {
    const v = Math.abs(a[i]);
    if (!(v <= Number.MAX_VALUE)) {
      throw new RangeError(`'a' passed to 'svd' must be finite, got ${a[i]} at index ${i} (row ${Math.floor(i / cols)}, col ${i % cols})`);
    }
    if (v > maxAbs) maxAbs = v;
  }
  if (maxAbs === 0) {
    // The zero matrix: s = 0 and any orthonormal bases; take the standard ones.
    const k = Math.min(rows, cols);
    const u = new Float64Array(rows * k);
    const vh = new Float64Array(k * cols);
    for (let i = 0; i < k; i++) {
      u[i * k + i] = 1;
      vh[i * cols + i] = 1;
    }
    return { u, s: new Float64Array(k), vh, rows, cols, k };
  }
  const tall = rows >= cols;
  const m = tall ? rows : cols;
  const n = tall ? cols : rows;
  // Scale to max|a| = 1 so that squaring in the Gram matrix can neither overflow nor underflow.
  const inv = 1 / maxAbs;
  // X: the tall matrix (m x n) row-major; Xt its transpose (n x m). For a tall `a`, X = a;
  // for a wide one, X = aᵀ, so Xt = a.
  const X = new Float64Array(m * n);
  const Xt = new Float64Array(m * n);
  if (tall) {
    for (let i = 0; i < a.length; i++) X[i] = a[i] * inv;
    transposeInto(X, m, n, Xt);
  } else {
    for (let i = 0; i < a.length; i++) Xt[i] = a[i] * inv;
    transposeInto(Xt, n, m, X);
  }
  const { Ut, s, Vt } = tallSvd(X, Xt, m, n);
  for (let i = 0; i < n; i++) s[i] *= maxAbs;
  // Tall: A = U S Vᵀ with U = Utᵀ (m x n), vh = Vt. Wide: Aᵀ = U' S V'ᵀ, so A = V' S U'ᵀ:
  // u = V' = Vtᵀ (n x n), vh = U'ᵀ = Ut (n x m).
  if (tall) {
    const u = new Float64Array(m * n);
    transposeInto(Ut, n, m, u);
    return { u, s, vh: Vt, rows, cols, k: n };
  }
  const u = new Float64Array(n * n);
  transposeInto(Vt, n, n, u);
  return { u, s, vh: Ut, rows, cols, k: n };
}

/** `out[j*p + i] = x[i*q + j]` for a row-major `p x q` matrix `x`. */
function transposeInto(x: Float64Array, p: number, q: number, out: Float64Array): void {
  const B = 32;
  for (let i0 = 0; i0 < p; i0 += B) {
    const i1 = Math.min(p, i0 + B);
    for (let j0 = 0; j0 < q; j0 += B) {
      const j1 = Math.min(q, j0 + B);
      for (let i = i0; i < i1; i++) {
        const xi = i * q;
        for (let j = j0; j < j1; j++) out[j * p + i] = x[xi + j];
      }
    }
  }
}

/**
 * SVD of a tall `X` (m x n, m >= n, max|X| <= 1), given also `Xt = Xᵀ`. Returns the singular
 * vectors as rows: `Ut` (n x m, row i = uᵢ) and `Vt` (n x n, row i = vᵢ).
 */
function tallSvd(X: Float64Array, Xt: Float64Array, m: number, n: number): { Ut: Float64Array; s: Float64Array; Vt: Float64Array } {
  // 1. G = XᵀX = Xt·Xtᵀ.
  const G = new Float64Array(n * n);
  gemmNT(Xt, n, Xt, n, m, G, true);
  // 2. Eigenvectors of G as rows of T, eigenvalues ascending in d.
  const d = new Float64Array(n);
  symmetricEigen(G, n, d);
  // Descending eigenvalue order.
  const Vt = new Float64Array(n * n);
  for (let i = 0; i < n; i++) Vt.set(G.subarray((n - 1 - i) * n, (n - i) * n), i * n);
  // 3. B = X V, stored as rows: Bt[i] = X vᵢ (n x m).
  const Bt = new Float64Array(n * m);
  gemmNT(Vt, n, X, m, n, Bt, false);
  const norms2 = new Float64Array(n);
  for (let i = 0; i < n; i++) norms2[i] = dot(Bt, i * m, Bt, i * m, m);
  // 4. Column pairs of B are off-orthogonal by |bᵢ·bⱼ| ≈ c·ε·λ_max, uniformly over pairs (the
  //    eigen-solver's backward error seen through V). Measured worst c: 0.4–1.6 for n ≤ 72,
  //    3–8.5 for n = 100–300, 48–58 for n = 768; c = 8 + n/4 bounds these with a margin >= 3.5.
  //    A pair can miss the target τ only if sᵢ·sⱼ < c·ε·λ_max/τ, so only columns with sⱼ²
  //    below that are checked (none for a well-conditioned matrix).
  //    Columns with ‖bᵢ‖ <= ε·√(mn)·s_max are rounding noise (numerical rank deficiency): their
  //    direction means nothing, so they are not refined but replaced by a completion of the basis.
  let lambdaMax = 0;
  for (let i = 0; i < n; i++) lambdaMax = Math.max(lambdaMax, norms2[i]);
  const noise2 = EPS * EPS * m * n * lambdaMax;
  const bound = (((8 + n / 4) * EPS) / ORTHO_TOL) * lambdaMax;
  const suspect: number[] = [];
  for (let i = 0; i < n; i++) if (norms2[i] < bound && norms2[i] > noise2) suspect.push(i);
  if (suspect.length > 0) jacobiRefine(Bt, m, Vt, n, norms2, suspect, noise2);
  // Sort by column norm, descending (stable, so the eigen order breaks ties).
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((p, q) => norms2[q] - norms2[p] || p - q);
  const s = new Float64Array(n);
  const Ut = new Float64Array(n * m);
  const VtSorted = new Float64Array(n * n);
  const zeroCols: number[] = [];
  for (let r = 0; r < n; r++) {
    const i = order[r];
    const norm = Math.sqrt(norms2[i]);
    s[r] = norm;
    VtSorted.set(Vt.subarray(i * n, (i + 1) * n), r * n);
    if (norms2[i] > noise2) {
      const invNorm = 1 / norm;
      const src = i * m;
      const dst = r * m;
      for (let l = 0; l < m; l++) Ut[dst + l] = Bt[src + l] * invNorm;
    } else {
      zeroCols.push(r);
    }
  }
  if (zeroCols.length > 0) completeBasis(Ut, n, m, zeroCols);
  return { Ut, s, Vt: VtSorted };
}

/** Dot product of `x[xo..xo+len)` and `y[yo..yo+len)`. */
function dot(x: Float64Array, xo: number, y: Float64Array, yo: number, len: number): number {
  let s0 = 0;
  let s1 = 0;
  let l = 0;
  for (; l + 1 < len; l += 2) {
    s0 += x[xo + l] * y[yo + l];
    s1 += x[xo + l + 1] * y[yo + l + 1];
  }
  if (l < len) s0 += x[xo + l] * y[yo + l];
  return s0 + s1;
}

/**
 * `C = X·Yᵀ` for row-major `X` (p x L) and `Y` (q x L); `C` is p x q row-major. Every entry is
 * a dot product of two contiguous rows, computed in 4x4 register tiles over chunks of L that
 * stay in cache (about 3 G multiply-adds/s on one core). With `symmetric` (X = Y, p = q) only
 * tiles on or above the diagonal are computed and the result is mirrored.
 * @internal shared by the low-rank reconstruction in lowrank.ts; not part of the package API.
 */
export function gemmNT(X: Float64Array, p: number, Y: Float64Array, q: number, L: number, C: Float64Array, symmetric: boolean): void {
  C.fill(0, 0, p * q);
  const LC = 512;
  const pLast = p - 1;
  const qLast = q - 1;
  for (let l0 = 0; l0 < L; l0 += LC) {
    const l1 = Math.min(L, l0 + LC);
    for (let i = 0; i < p; i += 4) {
      // Rows past the end repeat the last row; their results are not stored.
      const a0 = i * L;
      const a1 = Math.min(i + 1, pLast) * L;
      const a2 = Math.min(i + 2, pLast) * L;
      const a3 = Math.min(i + 3, pLast) * L;
      const jStart = symmetric ? i : 0;
      for (let j = jStart; j < q; j += 4) {
        const b0 = j * L;
        const b1 = Math.min(j + 1, qLast) * L;
        const b2 = Math.min(j + 2, qLast) * L;
        const b3 = Math.min(j + 3, qLast) * L;
        let c00 = 0, c01 = 0, c02 = 0, c03 = 0, c10 = 0, c11 = 0, c12 = 0, c13 = 0;
        let c20 = 0, c21 = 0, c22 = 0, c23 = 0, c30 = 0, c31 = 0, c32 = 0, c33 = 0;
        for (let l = l0; l < l1; l++) {
          const y0 = Y[b0 + l], y1 = Y[b1 + l], y2 = Y[b2 + l], y3 = Y[b3 + l];
          const x0 = X[a0 + l];
          c00 += x0 * y0; c01 += x0 * y1; c02 += x0 * y2; c03 += x0 * y3;
          const x1 = X[a1 + l];
          c10 += x1 * y0; c11 += x1 * y1; c12 += x1 * y2; c13 += x1 * y3;
          const x2 = X[a2 + l];
          c20 += x2 * y0; c21 += x2 * y1; c22 += x2 * y2; c23 += x2 * y3;
          const x3 = X[a3 + l];
          c30 += x3 * y0; c31 += x3 * y1; c32 += x3 * y2; c33 += x3 * y3;
        }
        if (i + 3 < p && j + 3 < q) {
          let o = i * q + j;
          C[o] += c00; C[o + 1] += c01; C[o + 2] += c02; C[o + 3] += c03; o += q;
          C[o] += c10; C[o + 1] += c11; C[o + 2] += c12; C[o + 3] += c13; o += q;
          C[o] += c20; C[o + 1] += c21; C[o + 2] += c22; C[o + 3] += c23; o += q;
          C[o] += c30; C[o + 1] += c31; C[o + 2] += c32; C[o + 3] += c33;
        } else {
          const tile = [c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33];
          for (let ti = 0; ti < 4 && i + ti < p; ti++) {
            for (let tj = 0; tj < 4 && j + tj < q; tj++) C[(i + ti) * q + j + tj] += tile[ti * 4 + tj];
          }
        }
      }
    }
  }
  if (symmetric) {
    // Tiles on the diagonal filled both triangles of their 4x4 block; mirror the upper part.
    for (let i = 0; i < p; i++) {
      for (let j = i + 1; j < p; j++) C[j * p + i] = C[i * p + j];
    }
  }
}

/**
 * Eigen-decomposition of the symmetric `n x n` matrix in `T` (overwritten): on return row i of
 * `T` is the unit eigenvector of `d[i]`, eigenvalues ascending. JAMA's tred2 + tql2 operating on
 * the transpose of JAMA's `V`, so the O(n³) loops walk contiguous rows.
 */
function symmetricEigen(T: Float64Array, n: number, d: Float64Array): void {
  const e = new Float64Array(n);
  tred2(T, n, d, e);
  tql2(T, n, d, e);
}

/** Householder tridiagonalisation (JAMA tred2), with `T[a*n + b]` standing for JAMA's `V[b][a]`. */
function tred2(T: Float64Array, n: number, d: Float64Array, e: Float64Array): void {
  for (let j = 0; j < n; j++) d[j] = T[j * n + n - 1];
  for (let i = n - 1; i > 0; i--) {
    let scale = 0;
    let h = 0;
    for (let k = 0; k < i; k++) scale += Math.abs(d[k]);
    if (scale === 0) {
      e[i] = d[i - 1];
      for (let j = 0; j < i; j++) {
        d[j] = T[j * n + i - 1];
        T[j * n + i] = 0;
        T[i * n + j] = 0;
      }
    } else {
      for (let k = 0; k < i; k++) {
        d[k] /= scale;
        h += d[k] * d[k];
      }
      let f = d[i - 1];
      let g = Math.sqrt(h);
      if (f > 0) g = -g;
      e[i] = scale * g;
      h -= f * g;
      d[i - 1] = f - g;
      for (let j = 0; j < i; j++) e[j] = 0;
      // e = (lower-triangle matrix) · d, one contiguous row of T per j.
      for (let j = 0; j < i; j++) {
        f = d[j];
        T[i * n + j] = f;
        const row = j * n;
        g = e[j] + T[row + j] * f;
        for (let k = j + 1; k <= i - 1; k++) {
          const t = T[row + k];
          g += t * d[k];
          e[k] += t * f;
        }
        e[j] = g;
      }
      f = 0;
      for (let j = 0; j < i; j++) {
        e[j] /= h;
        f += e[j] * d[j];
      }
      const hh = f / (h + h);
      for (let j = 0; j < i; j++) e[j] -= hh * d[j];
      for (let j = 0; j < i; j++) {
        f = d[j];
        g = e[j];
        const row = j * n;
        for (let k = j; k <= i - 1; k++) T[row + k] -= f * e[k] + g * d[k];
        d[j] = T[row + i - 1];
        T[row + i] = 0;
      }
    }
    d[i] = h;
  }
  // Accumulate the transformations. Step i applies the reflector stored in row i+1 to the
  // leading (i+1)x(i+1) block; two consecutive steps are fused into one pass over each row
  // (both inner products first, the second corrected for the first update, then one combined
  // update), which halves the passes over the block.
  const u1 = new Float64Array(n);
  const w1 = new Float64Array(n);
  const u2 = new Float64Array(n);
  const w2 = new Float64Array(n);
  for (let i = 0; i < n - 1; ) {
    const rowI = i * n;
    const rowI1 = (i + 1) * n;
    T[rowI + n - 1] = T[rowI + i];
    T[rowI + i] = 1;
    const h = d[i + 1];
    if (i + 2 <= n - 1 && h !== 0 && d[i + 2] !== 0) {
      // Steps i and i+1 together.
      const h2 = d[i + 2];
      const rowI2 = (i + 2) * n;
      for (let k = 0; k <= i; k++) {
        u1[k] = T[rowI1 + k];
        w1[k] = u1[k] / h;
        T[rowI1 + k] = 0;
      }
      T[rowI1 + n - 1] = T[rowI1 + i + 1];
      T[rowI1 + i + 1] = 1;
      for (let k = 0; k <= i + 1; k++) {
        u2[k] = T[rowI2 + k];
        w2[k] = u2[k] / h2;
      }
      let c12 = 0;
      for (let k = 0; k <= i; k++) c12 += u2[k] * w1[k];
      const u2Last = u2[i + 1];
      const w2Last = w2[i + 1];
      for (let j = 0; j <= i; j++) {
        const row = j * n;
        let a = 0;
        let b = 0;
        for (let k = 0; k <= i; k++) {
          const t = T[row + k];
          a += u1[k] * t;
          b += u2[k] * t;
        }
        const g2 = b - a * c12 + u2Last * T[row + i + 1];
        for (let k = 0; k <= i; k++) T[row + k] -= a * w1[k] + g2 * w2[k];
        T[row + i + 1] -= g2 * w2Last;
      }
      // Row i+1 is (0, …, 0, 1) when step i+1 reaches it.
      for (let k = 0; k <= i; k++) T[rowI1 + k] = -u2Last * w2[k];
      T[rowI1 + i + 1] = 1 - u2Last * w2Last;
      for (let k = 0; k <= i + 1; k++) T[rowI2 + k] = 0;
      i += 2;
      continue;
    }
    if (h !== 0) {
      for (let k = 0; k <= i; k++) d[k] = T[rowI1 + k] / h;
      for (let j = 0; j <= i; j++) {
        const row = j * n;
        const g = dot(T, rowI1, T, row, i + 1);
        for (let k = 0; k <= i; k++) T[row + k] -= g * d[k];
      }
    }
    for (let k = 0; k <= i; k++) T[rowI1 + k] = 0;
    i++;
  }
  for (let j = 0; j < n; j++) {
    d[j] = T[j * n + n - 1];
    T[j * n + n - 1] = 0;
  }
  T[(n - 1) * n + n - 1] = 1;
  e[0] = 0;
}

/** `√(a² + b²)` without destructive overflow or underflow. */
function hypot(a: number, b: number): number {
  a = Math.abs(a);
  b = Math.abs(b);
  if (a < b) {
    const t = a;
    a = b;
    b = t;
  }
  if (a === 0) return 0;
  const r = b / a;
  return a * Math.sqrt(1 + r * r);
}

/** Implicit QL on the tridiagonal (d, e) (JAMA tql2); rotations act on rows i, i+1 of T. */
function tql2(T: Float64Array, n: number, d: Float64Array, e: Float64Array): void {
  for (let i = 1; i < n; i++) e[i - 1] = e[i];
  e[n - 1] = 0;
  let f = 0;
  let tst1 = 0;
  // The rotations of one QL sweep, applied to T together once the sweep's (d, e) update is done
  // (that update never reads T).
  const chainC = new Float64Array(n);
  const chainS = new Float64Array(n);
  for (let l = 0; l < n; l++) {
    tst1 = Math.max(tst1, Math.abs(d[l]) + Math.abs(e[l]));
    let m = l;
    while (m < n) {
      if (Math.abs(e[m]) <= EPS * tst1) break;
      m++;
    }
    if (m > l) {
      let iter = 0;
      do {
        if (++iter > 60) throw new Error(`svd: the symmetric eigen-solver did not converge (eigenvalue ${l} of ${n})`);
        let g = d[l];
        let p = (d[l + 1] - g) / (2 * e[l]);
        let r = hypot(p, 1);
        if (p < 0) r = -r;
        d[l] = e[l] / (p + r);
        d[l + 1] = e[l] * (p + r);
        const dl1 = d[l + 1];
        let h = g - d[l];
        for (let i = l + 2; i < n; i++) d[i] -= h;
        f += h;
        p = d[m];
        let c = 1;
        let c2 = c;
        let c3 = c;
        const el1 = e[l + 1];
        let s = 0;
        let s2 = 0;
        for (let i = m - 1; i >= l; i--) {
          c3 = c2;
          c2 = c;
          s2 = s;
          g = c * e[i];
          h = c * p;
          r = hypot(p, e[i]);
          e[i + 1] = s * r;
          s = e[i] / r;
          c = p / r;
          p = c * d[i] - s * g;
          d[i + 1] = h + s * (c * g + s * d[i]);
          chainC[m - 1 - i] = c;
          chainS[m - 1 - i] = s;
        }
        applyRotationChain(T, n, l, m, chainC, chainS);
        p = (-s * s2 * c3 * el1 * e[l]) / dl1;
        e[l] = s * p;
        d[l] = c * p;
      } while (Math.abs(e[l]) > EPS * tst1);
    }
    d[l] += f;
    e[l] = 0;
  }
  // Sort ascending, moving the eigenvector rows along.
  const order = Array.from({ length: n }, (_, i) => i);
  order.sort((p, q) => d[p] - d[q] || p - q);
  let sorted = true;
  for (let i = 0; i < n; i++) if (order[i] !== i) sorted = false;
  if (sorted) return;
  const dCopy = d.slice();
  const TCopy = T.slice(0, n * n);
  for (let i = 0; i < n; i++) {
    d[i] = dCopy[order[i]];
    T.set(TCopy.subarray(order[i] * n, (order[i] + 1) * n), i * n);
  }
}

/**
 * Applies the Givens rotations of one QL sweep to the rows of T: rotation t (t = 0, 1, …) acts on
 * rows i = m−1−t and i+1 as `T[i+1] ← s·T[i] + c·T[i+1]`, `T[i] ← c·T[i] − s·T[i+1]`.
 * Four consecutive rotations share a row each with the next, so they are fused into one pass
 * over the columns (5 row loads and stores instead of 8; about twice as fast). Same arithmetic,
 * same order per element as applying them one by one.
 */
function applyRotationChain(T: Float64Array, n: number, l: number, m: number, C: Float64Array, S: Float64Array): void {
  let i = m - 1;
  let t = 0;
  for (; i - 3 >= l; i -= 4, t += 4) {
    const c1 = C[t], s1 = S[t], c2 = C[t + 1], s2 = S[t + 1];
    const c3 = C[t + 2], s3 = S[t + 2], c4 = C[t + 3], s4 = S[t + 3];
    const r4 = (i + 1) * n;
    const r3 = r4 - n;
    const r2 = r3 - n;
    const r1 = r2 - n;
    const r0 = r1 - n;
    for (let k = 0; k < n; k++) {
      let p = T[r4 + k];
      let v = T[r3 + k];
      T[r4 + k] = s1 * v + c1 * p;
      p = c1 * v - s1 * p;
      v = T[r2 + k];
      T[r3 + k] = s2 * v + c2 * p;
      p = c2 * v - s2 * p;
      v = T[r1 + k];
      T[r2 + k] = s3 * v + c3 * p;
      p = c3 * v - s3 * p;
      v = T[r0 + k];
      T[r1 + k] = s4 * v + c4 * p;
      T[r0 + k] = c4 * v - s4 * p;
    }
  }
  for (; i >= l; i--, t++) {
    const c = C[t];
    const s = S[t];
    const ri = i * n;
    const ri1 = ri + n;
    for (let k = 0; k < n; k++) {
      const p = T[ri1 + k];
      const v = T[ri + k];
      T[ri1 + k] = s * v + c * p;
      T[ri + k] = c * v - s * p;
    }
  }
}

/**
 * One-sided Jacobi (Hestenes) refinement of the rows of `Bt` (n x m), rotating the rows of
 * `Vt` (n x n) alike, until `|bᵢ·bⱼ| ≤ τ‖bᵢ‖‖bⱼ‖` for every pair. Pairs with neither column in
 * `dirty` are taken as already orthogonal (the caller's error model); a rotated column is dirty
 * again in the next sweep. Each sweep first computes the inner products of the dirty rows with
 * all rows by the blocked kernel, and uses them while both rows are still unchanged in the sweep.
 * Pairs with a noise column (‖b‖² ≤ `noise2`) are skipped. `norms2` (‖bᵢ‖²) is kept up to date.
 */
function jacobiRefine(Bt: Float64Array, m: number, Vt: Float64Array, n: number, norms2: Float64Array, dirty: number[], noise2: number): void {
  const touched = new Uint8Array(n);
  const rowOf = new Int32Array(n);
  for (let sweep = 0; sweep < MAX_JACOBI_SWEEPS && dirty.length > 0; sweep++) {
    const p = dirty.length;
    // Gathered dirty rows and H = D·Btᵀ (p x n).
    const D = new Float64Array(p * m);
    rowOf.fill(-1);
    for (let r = 0; r < p; r++) {
      D.set(Bt.subarray(dirty[r] * m, (dirty[r] + 1) * m), r * m);
      rowOf[dirty[r]] = r;
    }
    const H = new Float64Array(p * n);
    gemmNT(D, p, Bt, n, m, H, false);
    touched.fill(0);
    const next: number[] = [];
    for (let i = 0; i < n; i++) {
      for (let j = i + 1; j < n; j++) {
        const ri = rowOf[i];
        const rj = rowOf[j];
        if (ri < 0 && rj < 0) continue;
        const alpha = norms2[i];
        const beta = norms2[j];
        if (alpha <= noise2 || beta <= noise2) continue;
        const gamma = touched[i] || touched[j] ? dot(Bt, i * m, Bt, j * m, m) : ri >= 0 ? H[ri * n + j] : H[rj * n + i];
        if (Math.abs(gamma) <= ORTHO_TOL * Math.sqrt(alpha) * Math.sqrt(beta)) continue;
        const zeta = (beta - alpha) / (2 * gamma);
        const t = (zeta >= 0 ? 1 : -1) / (Math.abs(zeta) + Math.sqrt(1 + zeta * zeta));
        const c = 1 / Math.sqrt(1 + t * t);
        const s = c * t;
        rotateRows(Bt, i * m, j * m, m, c, s);
        rotateRows(Vt, i * n, j * n, n, c, s);
        // Recomputed rather than updated (α − tγ, β + tγ) so that tiny norms stay accurate.
        norms2[i] = dot(Bt, i * m, Bt, i * m, m);
        norms2[j] = dot(Bt, j * m, Bt, j * m, m);
        if (!touched[i]) next.push(i);
        if (!touched[j]) next.push(j);
        touched[i] = 1;
        touched[j] = 1;
      }
    }
    dirty = next;
  }
}

/** `x ← c·x − s·y`, `y ← s·x + c·y` on the rows of `a` starting at `xo`, `yo`. */
function rotateRows(a: Float64Array, xo: number, yo: number, len: number, c: number, s: number): void {
  for (let l = 0; l < len; l++) {
    const x = a[xo + l];
    const y = a[yo + l];
    a[xo + l] = c * x - s * y;
    a[yo + l] = s * x + c * y;
  }
}

/**
 * Replaces the rows `cols` of `Ut` (n x m) by unit vectors orthogonal to all other rows: the
 * standard basis vector with the smallest projection on the current basis, orthogonalised twice
 * (classical Gram–Schmidt, "twice is enough").
 */
function completeBasis(Ut: Float64Array, n: number, m: number, cols: number[]): void {
  const missing = new Uint8Array(n);
  for (const c of cols) missing[c] = 1;
  const w = new Float64Array(m);
  // weight[l]: squared length of the projection of e_l on the rows already set (kept up to date).
  const weight = new Float64Array(m);
  for (let i = 0; i < n; i++) {
    if (missing[i]) continue;
    const o = i * m;
    for (let l = 0; l < m; l++) weight[l] += Ut[o + l] * Ut[o + l];
  }
  for (const c of cols) {
    let best = 0;
    for (let l = 1; l < m; l++) if (weight[l] < weight[best]) best = l;
    w.fill(0);
    w[best] = 1;
    for (let pass = 0; pass < 2; pass++) {
      for (let i = 0; i < n; i++) {
        if (missing[i]) continue;
        const o = i * m;
        const proj = dot(Ut, o, w, 0, m);
        for (let l = 0; l < m; l++) w[l] -= proj * Ut[o + l];
      }
    }
    const norm = Math.sqrt(dot(w, 0, w, 0, m));
    for (let l = 0; l < m; l++) {
      const x = w[l] / norm;
      Ut[c * m + l] = x;
      weight[l] += x * x;
    }
    missing[c] = 0;
  }
}
