/**
 * A port of Pillow's separable resampler (`src/libImaging/Resample.c`, Pillow 9.4) for 8-bit
 * images: `precompute_coeffs`, `normalize_coeffs_8bpc`, `ImagingResampleHorizontal_8bpc`,
 * `ImagingResampleVertical_8bpc` and the pass selection of `ImagingResampleInner`.
 *
 * It reproduces Pillow's arithmetic exactly: double-precision filter weights normalised by their
 * sum, rounded to 22-bit fixed point (`PRECISION_BITS = 32 - 8 - 2`), integer accumulation that
 * starts at `1 << 21`, an arithmetic shift by 22 and a clip to 0..255, an 8-bit intermediate
 * image between the horizontal pass (first) and the vertical pass (second). The accumulators are
 * C `int`s and never overflow (|sum of coefficients| * 255 < 2^31), so JS int32 arithmetic
 * (`(a + b * k) | 0`, which keeps V8 on its integer path) gives the same partial sums, and `>>`
 * is C's arithmetic shift.
 *
 * Pixels are interleaved (HWC) with any number of channels; every channel is filtered the same way
 * (Pillow's RGB/RGBA/L paths differ only in memory layout). Note: Pillow resizes RGBA/LA in
 * premultiplied form (Image.resize converts to RGBa/La first); this module does not — callers
 * that follow SeTAR convert to RGB before resizing, so that never applies.
 */

/** A resampling filter: a kernel and its support (radius) at scale 1. */
export interface ResampleFilter {
  readonly name: string;
  readonly support: number;
  readonly fn: (x: number) => number;
}

/** Keys' cubic convolution with a = -0.5, as Pillow's `bicubic_filter`. */
export const BICUBIC: ResampleFilter = {
  name: 'bicubic',
  support: 2.0,
  fn(x: number): number {
    const a = -0.5;
    if (x < 0.0) x = -x;
    if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
    if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
    return 0.0;
  },
};

/** Fixed-point precision of the 8-bit path: 32 - 8 - 2. */
export const PRECISION_BITS = 22;
const HALF = 1 << (PRECISION_BITS - 1);
const SCALE = 1 << PRECISION_BITS;

/**
 * Coefficients for one axis. For output index `i`, input indices `bounds[2i] ..
 * bounds[2i] + bounds[2i+1] - 1` are weighted by `kk[i*ksize + 0 ..]` (fixed point) or
 * `weights[...]` (the normalised doubles before rounding).
 */
export interface AxisCoeffs {
  readonly inSize: number;
  readonly outSize: number;
  readonly ksize: number;
  /** [xmin, count] per output index. */
  readonly bounds: Int32Array;
  /** Normalised double weights (`prekk` in Pillow). */
  readonly weights: Float64Array;
  /** Weights rounded to PRECISION_BITS fixed point, as `normalize_coeffs_8bpc`. */
  readonly kk: Int32Array;
}

/** C's `(int)` cast of a double: truncation toward zero. */
function cInt(v: number): number {
  return Math.trunc(v);
}

/**
 * Pillow's `precompute_coeffs` followed by `normalize_coeffs_8bpc`. `in0`/`in1` are the box edges
 * along this axis (C floats, so they are rounded to float32 as Pillow receives them).
 */
export function precomputeCoeffs(
  inSize: number,
  in0: number,
  in1: number,
  outSize: number,
  filter: ResampleFilter = BICUBIC,
): AxisCoeffs {
  if (!Number.isInteger(inSize) || inSize < 1 || !Number.isInteger(outSize) || outSize < 1) {
    throw new RangeError(`precomputeCoeffs: bad sizes in=${inSize} out=${outSize}`);
  }
  const f0 = Math.fround(in0);
  const f1 = Math.fround(in1);
  // (double)(in1 - in0): the subtraction is done in float.
  const scale = Math.fround(f1 - f0) / outSize;
  const filterscale = scale < 1.0 ? 1.0 : scale;
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const weights = new Float64Array(outSize * ksize);
  const bounds = new Int32Array(outSize * 2);
  const ss = 1.0 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = f0 + (xx + 0.5) * scale;
    let ww = 0.0;
    let xmin = cInt(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    let xmax = cInt(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    const base = xx * ksize;
    for (let x = 0; x < xmax; x++) {
      const w = filter.fn((x + xmin - center + 0.5) * ss);
      weights[base + x] = w;
      ww += w;
    }
    if (ww !== 0.0) {
      for (let x = 0; x < xmax; x++) weights[base + x] /= ww;
    }
    // remaining entries stay 0
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax < 0 ? 0 : xmax;
  }
  const kk = new Int32Array(outSize * ksize);
  for (let i = 0; i < kk.length; i++) {
    const p = weights[i]!;
    kk[i] = p < 0 ? cInt(-0.5 + p * SCALE) : cInt(0.5 + p * SCALE);
  }
  return { inSize, outSize, ksize, bounds, weights, kk };
}

const COEFF_CACHE_LIMIT = 64;
const coeffCache = new Map<string, AxisCoeffs>();

/** precomputeCoeffs with a small LRU cache (images of one dataset repeat a few sizes). */
export function cachedCoeffs(
  inSize: number,
  in0: number,
  in1: number,
  outSize: number,
  filter: ResampleFilter = BICUBIC,
): AxisCoeffs {
  const key = `${filter.name}:${inSize}:${in0}:${in1}:${outSize}`;
  const hit = coeffCache.get(key);
  if (hit) {
    coeffCache.delete(key);
    coeffCache.set(key, hit);
    return hit;
  }
  const c = precomputeCoeffs(inSize, in0, in1, outSize, filter);
  coeffCache.set(key, c);
  if (coeffCache.size > COEFF_CACHE_LIMIT) {
    const oldest = coeffCache.keys().next().value;
    if (oldest !== undefined) coeffCache.delete(oldest);
  }
  return c;
}

/** clip8(ss): the table lookup of `ss >> PRECISION_BITS` clamped to 0..255. */
function clip8(ss: number): number {
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** An interleaved 8-bit image. */
export interface RawImage {
  data: Uint8Array;
  width: number;
  height: number;
  channels: number;
}

/** Output rectangle to compute, in output coordinates: [x0, x1) x [y0, y1). */
export interface Region {
  x0: number;
  y0: number;
  x1: number;
  y1: number;
}

export interface ResampleOptions {
  filter?: ResampleFilter;
  /** Source box (left, upper, right, lower), as Pillow's `box`; default the whole image. */
  box?: readonly [number, number, number, number];
  /**
   * Compute only this part of the output (for example the centre crop). Every output pixel
   * depends only on its own row/column coefficients, so the values equal the same pixels of the
   * full resize; the returned image is the region's size.
   */
  region?: Region;
}

/**
 * Horizontal pass (`ImagingResampleHorizontal_8bpc`): rows `rowFirst..rowFirst+rows-1` of `src`,
 * output columns `xx0..xx1-1`.
 */
function horizontal(
  src: RawImage,
  c: AxisCoeffs,
  rowFirst: number,
  rows: number,
  xx0: number,
  xx1: number,
): RawImage {
  const ch = src.channels;
  const outW = xx1 - xx0;
  const out = new Uint8Array(outW * rows * ch);
  const sd = src.data;
  const { bounds, kk, ksize } = c;
  const inStride = src.width * ch;
  const outStride = outW * ch;
  if (ch === 3) {
    for (let yy = 0; yy < rows; yy++) {
      const rowBase = (yy + rowFirst) * inStride;
      let o = yy * outStride;
      for (let xx = xx0; xx < xx1; xx++) {
        const xmin = bounds[xx * 2]!;
        const xmax = bounds[xx * 2 + 1]!;
        const kb = xx * ksize;
        let ss0 = HALF;
        let ss1 = HALF;
        let ss2 = HALF;
        let p = rowBase + xmin * 3;
        for (let x = 0; x < xmax; x++) {
          const k = kk[kb + x]!;
          ss0 = (ss0 + sd[p]! * k) | 0;
          ss1 = (ss1 + sd[p + 1]! * k) | 0;
          ss2 = (ss2 + sd[p + 2]! * k) | 0;
          p += 3;
        }
        out[o] = clip8(ss0);
        out[o + 1] = clip8(ss1);
        out[o + 2] = clip8(ss2);
        o += 3;
      }
    }
    return { data: out, width: outW, height: rows, channels: ch };
  }
  for (let yy = 0; yy < rows; yy++) {
    const rowBase = (yy + rowFirst) * inStride;
    let o = yy * outStride;
    for (let xx = xx0; xx < xx1; xx++) {
      const xmin = bounds[xx * 2]!;
      const xmax = bounds[xx * 2 + 1]!;
      const kb = xx * ksize;
      for (let b = 0; b < ch; b++) {
        let ss = HALF;
        let p = rowBase + xmin * ch + b;
        for (let x = 0; x < xmax; x++) {
          ss = (ss + sd[p]! * kk[kb + x]!) | 0;
          p += ch;
        }
        out[o++] = clip8(ss);
      }
    }
  }
  return { data: out, width: outW, height: rows, channels: ch };
}

/**
 * Vertical pass (`ImagingResampleVertical_8bpc`): output rows `yy0..yy1-1`, reading `src` whose
 * row 0 is source row `rowOffset`.
 */
function vertical(src: RawImage, c: AxisCoeffs, rowOffset: number, yy0: number, yy1: number): RawImage {
  const ch = src.channels;
  const rowLen = src.width * ch;
  const outH = yy1 - yy0;
  const out = new Uint8Array(rowLen * outH);
  const sd = src.data;
  const { bounds, kk, ksize } = c;
  for (let yy = yy0; yy < yy1; yy++) {
    const ymin = bounds[yy * 2]! - rowOffset;
    const ymax = bounds[yy * 2 + 1]!;
    const kb = yy * ksize;
    const o = (yy - yy0) * rowLen;
    const base = ymin * rowLen;
    for (let i = 0; i < rowLen; i++) {
      let ss = HALF;
      let p = base + i;
      for (let y = 0; y < ymax; y++) {
        ss = (ss + sd[p]! * kk[kb + y]!) | 0;
        p += rowLen;
      }
      out[o + i] = clip8(ss);
    }
  }
  return { data: out, width: src.width, height: outH, channels: ch };
}

/** Copy a rectangle out of an interleaved image. */
export function cropRaw(src: RawImage, left: number, top: number, width: number, height: number): RawImage {
  if (left < 0 || top < 0 || left + width > src.width || top + height > src.height || width < 0 || height < 0) {
    throw new RangeError(
      `crop (${left},${top},${width}x${height}) outside image ${src.width}x${src.height}`,
    );
  }
  const ch = src.channels;
  if (left === 0 && top === 0 && width === src.width && height === src.height) {
    return { data: src.data.slice(), width, height, channels: ch };
  }
  const out = new Uint8Array(width * height * ch);
  const rowLen = width * ch;
  for (let y = 0; y < height; y++) {
    const s = ((top + y) * src.width + left) * ch;
    out.set(src.data.subarray(s, s + rowLen), y * rowLen);
  }
  return { data: out, width, height, channels: ch };
}

/**
 * Pillow's `Image.resize((outW, outH), resample)` for an 8-bit image that is not premultiplied
 * (L, RGB, or alpha-free data), i.e. `ImagingResample` + `ImagingResampleInner`. When the size is
 * unchanged (and the box is the whole image) the pixels are copied unchanged, as Pillow does.
 */
export function pillowResize(src: RawImage, outW: number, outH: number, options: ResampleOptions = {}): RawImage {
  const { width: inW, height: inH, channels } = src;
  if (src.data.length !== inW * inH * channels) {
    throw new RangeError(`pillowResize: data length ${src.data.length} != ${inW}x${inH}x${channels}`);
  }
  if (!Number.isInteger(outW) || !Number.isInteger(outH) || outW < 1 || outH < 1) {
    throw new RangeError(`pillowResize: bad output size ${outW}x${outH}`);
  }
  const filter = options.filter ?? BICUBIC;
  const box = options.box ?? [0, 0, inW, inH];
  const region = options.region ?? { x0: 0, y0: 0, x1: outW, y1: outH };
  const { x0, y0, x1, y1 } = region;
  if (!(0 <= x0 && x0 < x1 && x1 <= outW && 0 <= y0 && y0 < y1 && y1 <= outH)) {
    throw new RangeError(`pillowResize: region ${JSON.stringify(region)} outside ${outW}x${outH}`);
  }
  const fullBox = box[0] === 0 && box[1] === 0 && box[2] === inW && box[3] === inH;
  if (outW === inW && outH === inH && fullBox) {
    // Image.resize returns self.copy()
    return cropRaw(src, x0, y0, x1 - x0, y1 - y0);
  }
  // ImagingResampleInner: need_horizontal = xsize != imIn->xsize || box[0] || box[2] != xsize
  const needH = outW !== inW || box[0] !== 0 || box[2] !== outW;
  const needV = outH !== inH || box[1] !== 0 || box[3] !== outH;

  const vc = cachedCoeffs(inH, box[1], box[3], outH, filter);
  let img = src;
  let rowOffset = 0;
  let colOffset = 0;
  if (needH) {
    const hc = cachedCoeffs(inW, box[0], box[2], outW, filter);
    // Rows the vertical pass needs for output rows y0..y1-1 (Pillow: ybox_first..ybox_last for
    // the whole image; the rows outside the region do not affect the region's values).
    let first: number;
    let last: number;
    if (needV) {
      first = Infinity;
      last = -Infinity;
      for (let yy = y0; yy < y1; yy++) {
        const lo = vc.bounds[yy * 2]!;
        const hi = lo + vc.bounds[yy * 2 + 1]!;
        if (lo < first) first = lo;
        if (hi > last) last = hi;
      }
    } else {
      first = y0;
      last = y1;
    }
    img = horizontal(src, hc, first, last - first, x0, x1);
    rowOffset = first;
    colOffset = x0;
  }
  if (needV) {
    if (!needH) {
      // vertical pass straight on the source; restrict to the region's columns first
      img = x0 === 0 && x1 === inW ? src : cropRaw(src, x0, 0, x1 - x0, inH);
      colOffset = x0;
    }
    img = vertical(img, vc, rowOffset, y0, y1);
    rowOffset = y0;
  }
  // Bring the result to exactly the region.
  const wantW = x1 - x0;
  const wantH = y1 - y0;
  const left = x0 - colOffset;
  const top = y0 - rowOffset;
  if (left === 0 && top === 0 && img.width === wantW && img.height === wantH) return img;
  return cropRaw(img, left, top, wantW, wantH);
}
