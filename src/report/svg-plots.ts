/**
 * The report's two plots as inline SVG strings, plus the small numeric helpers behind them
 * (shared-bin histograms, the ROC curve, its downsampling, axis ticks). No chart library: each
 * plot is a few `<rect>`s or one `<polyline>` over two axes.
 *
 * All values here are detector values (`-score`, higher = more in-distribution), SPEC §4.
 *
 * @example
 * ```ts
 * const svg = rocSvg({ dataPlot: 'roc:mcm_score:SUN', label: 'ROC …', curve: downsampleCurve(rocCurve(id, ood), 500), auroc: 91.2 });
 * ```
 */

import { escapeHtml } from './escape.js';

/** Colours: ID blue, OOD orange, cutoff/operating point red (matplotlib's tab10). */
export const COLORS = { id: '#1f77b4', ood: '#ff7f0e', cutoff: '#d62728', axis: '#333', grid: '#e4e4e4' } as const;

/** A polyline in unit coordinates: `x[i], y[i]` for each point. */
export interface Curve {
  readonly x: Float64Array;
  readonly y: Float64Array;
}

/** Equal-width bins over `[lo, hi]`; a value equal to `hi` falls in the last bin. */
export interface Bins {
  readonly lo: number;
  readonly hi: number;
  readonly count: number;
}

/** SVG numbers rounded to 0.1 user units (a tenth of a pixel at 100 %): compact and exact enough. */
function n1(v: number): string {
  return String(Math.round(v * 10) / 10);
}

/**
 * Shared bins for several value lists: the range covers every value and `extra` (e.g. the
 * cutoff) when finite; a single value gets a ±5 % range with the value in the middle of a bin.
 */
export function sharedBins(lists: readonly Float64Array[], count: number, extra: readonly number[] = []): Bins {
  let lo = Infinity;
  let hi = -Infinity;
  for (const a of lists) {
    for (let i = 0; i < a.length; i++) {
      const v = a[i]!;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  for (const v of extra) {
    if (Number.isFinite(v)) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
  }
  if (!(lo <= hi)) return { lo: 0, hi: 1, count };
  if (lo === hi) {
    // a range of ±5 % around the value, shifted so the value sits in the middle of a bin
    const w = (2 * (Math.abs(lo) * 0.05 || 0.5)) / count;
    const start = lo - (Math.floor(count / 2) + 0.5) * w;
    return { lo: start, hi: start + count * w, count };
  }
  return { lo, hi, count };
}

/** Counts of `values` per bin of `bins` (values outside the range are clamped into the end bins). */
export function histogram(values: Float64Array, bins: Bins): Float64Array {
  const counts = new Float64Array(bins.count);
  const scale = bins.count / (bins.hi - bins.lo);
  for (let i = 0; i < values.length; i++) {
    const b = Math.floor((values[i]! - bins.lo) * scale);
    counts[b < 0 ? 0 : b >= bins.count ? bins.count - 1 : b]!++;
  }
  return counts;
}

/**
 * The ROC curve with ID as the positive class and detector value `-score` (already negated
 * here): one point per distinct detector value, from (0, 0) to (1, 1); `x` = FPR (share of OOD
 * at or above the threshold), `y` = TPR (share of ID at or above it). Ties between ID and OOD
 * give a diagonal segment, as in `sklearn.metrics.roc_curve`.
 * @param idDetector ID detector values `[n_id]`, non-empty
 * @param oodDetector OOD detector values `[n_ood]`, non-empty
 */
export function rocCurve(idDetector: Float64Array, oodDetector: Float64Array): Curve {
  const a = Float64Array.from(idDetector).sort();
  const b = Float64Array.from(oodDetector).sort();
  const nId = a.length;
  const nOod = b.length;
  const x = new Float64Array(nId + nOod + 1);
  const y = new Float64Array(nId + nOod + 1);
  let i = nId - 1;
  let j = nOod - 1;
  let tp = 0;
  let fp = 0;
  let k = 1; // (0, 0) first
  while (i >= 0 || j >= 0) {
    const va = i >= 0 ? a[i]! : -Infinity;
    const vb = j >= 0 ? b[j]! : -Infinity;
    const v = va >= vb ? va : vb;
    while (i >= 0 && a[i] === v) { tp++; i--; }
    while (j >= 0 && b[j] === v) { fp++; j--; }
    x[k] = fp / nOod;
    y[k] = tp / nId;
    k++;
  }
  return { x: x.subarray(0, k), y: y.subarray(0, k) };
}

/**
 * At most `maxPoints` points of a curve, evenly spaced along its length, always keeping the
 * first and last point. A monotone curve such as a ROC keeps its shape to within one step
 * (length / (maxPoints − 2)) while 60,000 points become 500.
 * @throws RangeError when `maxPoints` < 3
 */
export function downsampleCurve(curve: Curve, maxPoints: number): Curve {
  const n = curve.x.length;
  if (!(maxPoints >= 3)) throw new RangeError(`maxPoints must be at least 3, got ${maxPoints}`);
  if (n <= maxPoints) return curve;
  let length = 0;
  for (let i = 1; i < n; i++) length += Math.hypot(curve.x[i]! - curve.x[i - 1]!, curve.y[i]! - curve.y[i - 1]!);
  // each kept point after the first consumes ≥ step, so kept ≤ 1 + (maxPoints − 2) + the last
  const step = length / (maxPoints - 2);
  const keep: number[] = [0];
  let since = 0;
  for (let i = 1; i < n - 1; i++) {
    since += Math.hypot(curve.x[i]! - curve.x[i - 1]!, curve.y[i]! - curve.y[i - 1]!);
    if (since >= step) {
      keep.push(i);
      since = 0;
    }
  }
  keep.push(n - 1);
  return { x: Float64Array.from(keep, (i) => curve.x[i]!), y: Float64Array.from(keep, (i) => curve.y[i]!) };
}

/** About `target` round tick values (steps of 1, 2 or 5 × 10^k) inside `[lo, hi]`, and the step. */
export function niceTicks(lo: number, hi: number, target = 5): { ticks: number[]; step: number } {
  const raw = (hi - lo) / target;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  const step = (norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10) * mag;
  const ticks: number[] = [];
  for (let k = Math.ceil(lo / step - 1e-9); k * step <= hi + step * 1e-9; k++) ticks.push(k * step);
  return { ticks, step };
}

/** A tick or value label with as many decimals as `step` needs (exponent form for extremes). */
export function formatTick(v: number, step: number): string {
  if (v === 0) return '0';
  const a = Math.abs(v);
  if (a >= 1e6 || step < 1e-6) return v.toExponential(2);
  return v.toFixed(Math.min(8, Math.max(0, Math.ceil(-Math.log10(step) - 1e-9))));
}

/** A value label with 4 significant digits (for the cutoff). */
export function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  const a = Math.abs(v);
  if (a !== 0 && (a >= 1e6 || a < 1e-4)) return v.toExponential(3);
  return String(Number(v.toPrecision(4)));
}

/** A white outline behind a label, so it stays legible over bars and curves. */
const HALO = ' stroke="#fff" stroke-width="3" stroke-linejoin="round" paint-order="stroke"';

const W_HIST = 520;
const W_ROC = 360;
const H = 320;
const M = { left: 58, right: 16, top: 36, bottom: 48 } as const;

/** Opening tag shared by both plots: `role="img"`, `aria-label`, `data-plot`, fixed size. */
function svgOpen(width: number, dataPlot: string, label: string): string {
  return (
    `<svg role="img" aria-label="${escapeHtml(label)}" data-plot="${escapeHtml(dataPlot)}" ` +
    `width="${width}" height="${H}" viewBox="0 0 ${width} ${H}" font-family="system-ui,sans-serif" font-size="11">` +
    `<title>${escapeHtml(label)}</title>`
  );
}

/** Frame, grid, ticks and axis titles; `sx`, `sy` map data values to SVG coordinates. */
function axes(o: {
  width: number;
  xTicks: { ticks: number[]; step: number }; yTicks: { ticks: number[]; step: number };
  xLabel: string; yLabel: string;
  sx: (v: number) => number; sy: (v: number) => number;
}): string {
  const left = M.left;
  const right = o.width - M.right;
  const top = M.top;
  const bottom = H - M.bottom;
  const parts: string[] = [`<g stroke="${COLORS.grid}">`];
  for (const t of o.yTicks.ticks) parts.push(`<line x1="${left}" x2="${right}" y1="${n1(o.sy(t))}" y2="${n1(o.sy(t))}"/>`);
  parts.push('</g>', `<g fill="${COLORS.axis}" text-anchor="middle">`);
  for (const t of o.xTicks.ticks) {
    const x = n1(o.sx(t));
    parts.push(`<line x1="${x}" x2="${x}" y1="${bottom}" y2="${bottom + 4}" stroke="${COLORS.axis}"/><text x="${x}" y="${bottom + 16}">${formatTick(t, o.xTicks.step)}</text>`);
  }
  parts.push('</g>', `<g fill="${COLORS.axis}" text-anchor="end">`);
  for (const t of o.yTicks.ticks) {
    const y = n1(o.sy(t));
    parts.push(`<line x1="${left - 4}" x2="${left}" y1="${y}" y2="${y}" stroke="${COLORS.axis}"/><text x="${left - 7}" y="${n1(o.sy(t) + 4)}">${formatTick(t, o.yTicks.step)}</text>`);
  }
  parts.push(
    '</g>',
    `<rect x="${left}" y="${top}" width="${right - left}" height="${bottom - top}" fill="none" stroke="${COLORS.axis}"/>`,
    `<text x="${(left + right) / 2}" y="${H - 10}" text-anchor="middle" fill="${COLORS.axis}" font-size="12">${escapeHtml(o.xLabel)}</text>`,
    `<text transform="translate(14 ${(top + bottom) / 2}) rotate(-90)" text-anchor="middle" fill="${COLORS.axis}" font-size="12">${escapeHtml(o.yLabel)}</text>`,
  );
  return parts.join('');
}

/** Shortens a legend entry to `max` characters (the full name is in the heading and aria-label). */
function clip(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}

/** Rough width in px of `text` at the plots' 11 px sans-serif (0.6 em per character, a safe upper bound). */
function textWidth(text: string): number {
  return Math.ceil(text.length * 6.6);
}

/** A legend entry at (x, y): a swatch (filled box, solid or dashed line) in `color`, then the text. */
function legendItem(x: number, y: number, kind: 'box' | 'line' | 'dash', color: string, text: string): string {
  const swatch =
    kind === 'box'
      ? `<rect x="${x}" y="${y - 4}" width="12" height="8" fill="${color}" fill-opacity="0.5" stroke="${color}"/>`
      : `<line x1="${x}" x2="${x + 12}" y1="${y}" y2="${y}" stroke="${color}" stroke-width="2"${kind === 'dash' ? ' stroke-dasharray="3 2"' : ''}/>`;
  return `${swatch}<text x="${x + 16}" y="${y + 4}">${escapeHtml(text)}</text>`;
}

/** Inputs of {@link histogramSvg}. */
export interface HistogramPlot {
  /** the `data-plot` attribute, e.g. `hist:mcm_score:SUN` */
  readonly dataPlot: string;
  /** the `aria-label` / `<title>` */
  readonly label: string;
  /** ID detector values (`-score`) */
  readonly id: Float64Array;
  /** OOD detector values (`-score`) */
  readonly ood: Float64Array;
  /** legend names of the two sets */
  readonly idName: string;
  readonly oodName: string;
  /** the threshold, in detector units; drawn as a labelled vertical line when finite */
  readonly cutoff: number;
  /** e.g. `cutoff (ID recall 95%)` */
  readonly cutoffLabel: string;
  /** bins shared by both histograms (default 60) */
  readonly bins?: number;
}

/**
 * ID and OOD detector-value distributions as two overlaid, semi-transparent histograms over the
 * same bins, each normalised to its own size (bar height = share of that set), with the cutoff
 * as a dashed vertical line. Only non-empty bins get a `<rect>`: at most 2 × `bins` of them.
 */
export function histogramSvg(p: HistogramPlot): string {
  const bins = sharedBins([p.id, p.ood], p.bins ?? 60, [p.cutoff]);
  const hid = histogram(p.id, bins);
  const hood = histogram(p.ood, bins);
  let ymax = 0;
  for (let b = 0; b < bins.count; b++) ymax = Math.max(ymax, hid[b]! / p.id.length, hood[b]! / p.ood.length);
  const yTicks = niceTicks(0, ymax * 1.08, 4);
  const y1 = Math.max(ymax * 1.08, yTicks.ticks.at(-1) ?? 0);
  const left = M.left;
  const right = W_HIST - M.right;
  const top = M.top;
  const bottom = H - M.bottom;
  const sx = (v: number): number => left + ((v - bins.lo) / (bins.hi - bins.lo)) * (right - left);
  const sy = (v: number): number => bottom - (v / y1) * (bottom - top);
  const xTicks = niceTicks(bins.lo, bins.hi, 6);
  const bw = (right - left) / bins.count;

  const bars = (counts: Float64Array, n: number, color: string, series: string): string => {
    const out: string[] = [`<g data-series="${series}" fill="${color}" fill-opacity="0.5" stroke="${color}" stroke-width="0.5">`];
    for (let b = 0; b < bins.count; b++) {
      if (counts[b]! === 0) continue;
      const y = sy(counts[b]! / n);
      out.push(`<rect x="${n1(left + b * bw)}" y="${n1(y)}" width="${n1(bw)}" height="${n1(Math.max(0.5, bottom - y))}"/>`);
    }
    out.push('</g>');
    return out.join('');
  };

  const parts: string[] = [
    svgOpen(W_HIST, p.dataPlot, p.label),
    axes({
      width: W_HIST, xTicks, yTicks, sx, sy,
      xLabel: 'detector value = −score (higher = more in-distribution)', yLabel: 'share of set per bin',
    }),
    bars(hid, p.id.length, COLORS.id, 'id'),
    bars(hood, p.ood.length, COLORS.ood, 'ood'),
  ];
  if (Number.isFinite(p.cutoff)) {
    const x = sx(p.cutoff);
    const onRight = x > (left + right) / 2;
    parts.push(
      `<g data-series="cutoff"><line x1="${n1(x)}" x2="${n1(x)}" y1="${top}" y2="${bottom}" stroke="${COLORS.cutoff}" stroke-width="1.5" stroke-dasharray="5 3"/>`,
      `<text x="${n1(x + (onRight ? -4 : 4))}" y="${top + 13}" text-anchor="${onRight ? 'end' : 'start'}" fill="${COLORS.cutoff}"${HALO}>${escapeHtml(`${p.cutoffLabel} = ${formatValue(p.cutoff)}`)}</text></g>`,
    );
  }
  const idText = `${clip(p.idName, 30)} (n = ${p.id.length.toLocaleString('en-US')})`;
  parts.push(
    `<g fill="${COLORS.axis}">`,
    legendItem(left, 16, 'box', COLORS.id, idText),
    legendItem(left + 16 + textWidth(idText) + 18, 16, 'box', COLORS.ood, `${clip(p.oodName, 30)} (n = ${p.ood.length.toLocaleString('en-US')})`),
    '</g></svg>',
  );
  return parts.join('');
}

/** Inputs of {@link rocSvg}. */
export interface RocPlot {
  /** the `data-plot` attribute, e.g. `roc:mcm_score:SUN` */
  readonly dataPlot: string;
  /** the `aria-label` / `<title>` */
  readonly label: string;
  /** ROC points in [0, 1]² (x = FPR, y = TPR), already downsampled */
  readonly curve: Curve;
  /** AUROC in percent, shown in the legend */
  readonly auroc: number;
  /** the operating point at the cutoff (FPR, TPR as fractions) and its label, if any */
  readonly point?: { readonly fpr: number; readonly tpr: number; readonly label: string };
}

/** The ROC curve as one `<polyline>` over [0, 1]², the chance diagonal, and a legend with the AUROC. */
export function rocSvg(p: RocPlot): string {
  const left = M.left;
  const right = W_ROC - M.right;
  const top = M.top;
  const bottom = H - M.bottom;
  const sx = (v: number): number => left + v * (right - left);
  const sy = (v: number): number => bottom - v * (bottom - top);
  const ticks = { ticks: [0, 0.2, 0.4, 0.6, 0.8, 1], step: 0.2 };
  const pts: string[] = [];
  for (let i = 0; i < p.curve.x.length; i++) pts.push(`${n1(sx(p.curve.x[i]!))},${n1(sy(p.curve.y[i]!))}`);
  const parts: string[] = [
    svgOpen(W_ROC, p.dataPlot, p.label),
    axes({
      width: W_ROC, xTicks: ticks, yTicks: ticks, sx, sy,
      xLabel: 'FPR (share of OOD accepted as ID)', yLabel: 'TPR (share of ID accepted)',
    }),
    `<line x1="${sx(0)}" y1="${sy(0)}" x2="${sx(1)}" y2="${sy(1)}" stroke="#999" stroke-dasharray="4 4"/>`,
    `<polyline data-series="roc" fill="none" stroke="${COLORS.id}" stroke-width="2" stroke-linejoin="round" points="${pts.join(' ')}"/>`,
  ];
  if (p.point) {
    const x = sx(p.point.fpr);
    const y = sy(p.point.tpr);
    // below and to the right of the point (under a ROC curve), flipped left only at the right edge
    const fits = x + 8 + textWidth(p.point.label) <= right;
    parts.push(
      `<g data-series="operating-point" fill="${COLORS.cutoff}"><circle cx="${n1(x)}" cy="${n1(y)}" r="3.5"/>`,
      `<text x="${n1(fits ? x + 8 : x - 8)}" y="${n1(Math.min(y + 16, bottom - 4))}" text-anchor="${fits ? 'start' : 'end'}"${HALO}>${escapeHtml(p.point.label)}</text></g>`,
    );
  }
  const auroc = Number.isFinite(p.auroc) ? `${p.auroc.toFixed(2)}%` : 'n/a';
  parts.push(
    `<g fill="${COLORS.axis}">`,
    legendItem(left, 16, 'line', COLORS.id, `ROC, AUROC ${auroc}`),
    legendItem(left + 170, 16, 'dash', '#999', 'chance'),
    '</g></svg>',
  );
  return parts.join('');
}
