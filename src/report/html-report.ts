/**
 * The `setar eval` report: one self-contained HTML file (inline CSS and SVG, no scripts, no
 * external resources, a Content-Security-Policy that forbids fetching anything) with, per
 * scorer, the SPEC §4 metrics table (one row per OOD set + `Avg`) and, per OOD set, the ID-vs-OOD
 * detector-value histograms with the cutoff and the ROC curve; then the resolved configuration
 * and the skipped files.
 *
 * Size does not grow with the inputs: histograms have 60 shared bins and each ROC curve at most
 * 500 points, so 50,000 ID + 3 × 10,000 OOD scores give a report of a few tens of kB.
 *
 * @example
 * ```ts
 * import { writeEvalReport } from './report/html-report.js';
 * writeEvalReport('out/report.html', {
 *   title: 'setar eval — ID_ImageNet1K (test)', idDataset: 'ID_ImageNet1K', split: 'test',
 *   accuracy: 68.3, recallLevel: 0.95, config: { model: 'clip-vit-base-patch16' },
 *   scorers: [{ scorer: 'mcm_score', idScores, ood: [{ dataset: 'SUN', scores, ...oodMetrics(idScores, scores) }] }],
 * });
 * ```
 */

import { writeFileAtomic } from '../io/atomic.js';
import { escapeHtml } from './escape.js';
import { downsampleCurve, formatValue, histogramSvg, rocCurve, rocSvg, COLORS } from './svg-plots.js';

/** One OOD set's scores and metrics for a scorer. */
export interface OodSetReport {
  readonly dataset: string;
  /** OOD scores `[n_ood]`, lower = more in-distribution (finite) */
  readonly scores: ArrayLike<number>;
  /** FPR at the recall level, percent */
  readonly FPR: number;
  /** percent */
  readonly AUROC: number;
  /** percent (AUPR-In) */
  readonly AUPR: number;
  /** the threshold at the recall level, in detector units (`-score`), as `oodMetrics` returns it */
  readonly cutoff: number;
}

/** One scorer's ID scores and its OOD sets. */
export interface ScorerReport {
  /** e.g. `mcm_score` */
  readonly scorer: string;
  /** ID scores `[n_id]`, lower = more in-distribution (SPEC §3; the detector value is `-score`) */
  readonly idScores: ArrayLike<number>;
  readonly ood: readonly OodSetReport[];
}

/** Everything the report shows; see {@link renderEvalReport}. */
export interface EvalReport {
  /** e.g. `setar eval — ID_ImageNet1K (test)` */
  readonly title: string;
  readonly idDataset: string;
  readonly split: string;
  /** ID zero-shot top-1 accuracy in percent */
  readonly accuracy?: number;
  /** the recall level of FPR and the cutoff, a fraction (0.95) */
  readonly recallLevel: number;
  /** the resolved configuration, shown as a key/value table and as JSON */
  readonly config: Record<string, unknown>;
  readonly scorers: readonly ScorerReport[];
  /** input files left out, with the reason */
  readonly skipped?: readonly { readonly dataset: string; readonly file: string; readonly reason: string }[];
}

/** Number of shared histogram bins per plot. */
const HIST_BINS = 60;
/** Most points drawn per ROC curve. */
const ROC_POINTS = 500;

/** Copies scores into detector values (`-score`); a non-array, an empty list or a NaN/±Inf throws. */
function detectorValues(scores: ArrayLike<number>, what: string): Float64Array {
  if (scores === null || typeof scores !== 'object' || typeof scores.length !== 'number') {
    throw new TypeError(`${what} passed to 'renderEvalReport' must be an array of numbers, got ${scores === null ? 'null' : typeof scores}`);
  }
  if (scores.length === 0) throw new RangeError(`${what} passed to 'renderEvalReport' is empty: need at least one score`);
  const out = new Float64Array(scores.length);
  for (let i = 0; i < scores.length; i++) {
    const v = scores[i];
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new RangeError(`${what}[${i}] passed to 'renderEvalReport' is ${String(v)}: scores must be finite numbers`);
    }
    out[i] = -v;
  }
  return out;
}

/** A percentage with 2 decimals, `n/a` when not finite. */
function pct(v: number | undefined): string {
  return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(2) : 'n/a';
}

/** `0.95` → `95` (up to 4 decimals, no trailing zeros). */
function percentOf(fraction: number): string {
  return String(Number((fraction * 100).toFixed(4)));
}

/** JSON for display: bigint as a string, undefined/functions by name, cycles marked instead of throwing. */
function displayJson(value: unknown, indent?: number): string {
  const seen = new WeakSet<object>();
  const json = JSON.stringify(
    value,
    (_key, v: unknown) => {
      if (typeof v === 'bigint') return v.toString();
      if (typeof v === 'function') return `[function ${v.name || 'anonymous'}]`;
      if (typeof v === 'object' && v !== null) {
        if (seen.has(v)) return '[circular]';
        seen.add(v);
      }
      return v;
    },
    indent,
  );
  return json ?? String(value);
}

/** One line when short (≤ 100 characters), else indented. */
function compactJson(value: unknown): string {
  const line = displayJson(value);
  return line.length <= 100 ? line : displayJson(value, 2);
}

/** Mean of FPR, AUROC and AUPR over the rows (the `Avg` row, SPEC §4). */
function average(rows: readonly OodSetReport[]): { FPR: number; AUROC: number; AUPR: number } {
  const mean = (k: 'FPR' | 'AUROC' | 'AUPR'): number => rows.reduce((s, r) => s + r[k], 0) / rows.length;
  return { FPR: mean('FPR'), AUROC: mean('AUROC'), AUPR: mean('AUPR') };
}

const CSS = `
:root{color-scheme:light}
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#222;margin:0 auto;max-width:1160px;padding:16px 24px 48px}
h1{font-size:22px;margin:8px 0 12px}h2{font-size:18px;margin:32px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:15px;margin:20px 0 4px}
dl.summary{display:grid;grid-template-columns:max-content auto;gap:2px 16px;margin:0}
dl.summary dt{color:#666}dl.summary dd{margin:0;font-weight:600}
table{border-collapse:collapse;margin:8px 0}
th,td{border:1px solid #ddd;padding:3px 10px;text-align:left;vertical-align:top}
th{background:#f5f5f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.avg td{font-weight:600;background:#fafafa}
.plots{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.plots figure{margin:0}
svg{display:block;max-width:100%;height:auto;background:#fff}
.meta{color:#666;font-size:13px;margin:0 0 6px}
pre{background:#f7f7f7;border:1px solid #e4e4e4;padding:8px;overflow:auto;margin:0;font-size:12px}
td pre{border:0;padding:0;background:none}
nav ul{margin:4px 0;padding-left:20px}
`;

/** Header: title and the facts that apply to the whole run. */
function headerHtml(r: EvalReport, nId: number | undefined): string {
  const facts: [string, string][] = [
    ['ID dataset', r.idDataset],
    ['split', r.split],
    ['ID accuracy (zero-shot top-1)', r.accuracy === undefined ? 'not computed' : `${pct(r.accuracy)}%`],
    ['recall level', `${percentOf(r.recallLevel)}% (FPR and cutoff are taken at this ID recall)`],
  ];
  if (nId !== undefined) facts.push(['ID images', nId.toLocaleString('en-US')]);
  facts.push(['score convention', 'lower score = more in-distribution; detector value = −score; ID is the positive class']);
  return (
    `<header><h1>${escapeHtml(r.title)}</h1><dl class="summary">` +
    facts.map(([k, v]) => `<dt>${escapeHtml(k)}</dt><dd>${escapeHtml(v)}</dd>`).join('') +
    '</dl></header>'
  );
}

/** The per-scorer metrics table: one row per OOD set, then `Avg`. */
function metricsTable(s: ScorerReport, fprName: string): string {
  const head = `<tr><th>OOD dataset</th><th title="lower is better">${fprName}</th><th title="higher is better">AUROC</th><th title="higher is better">AUPR</th></tr>`;
  const row = (name: string, m: { FPR: number; AUROC: number; AUPR: number }, cls = ''): string =>
    `<tr${cls}><td>${escapeHtml(name)}</td><td class="num">${pct(m.FPR)}</td><td class="num">${pct(m.AUROC)}</td><td class="num">${pct(m.AUPR)}</td></tr>`;
  const rows = s.ood.map((o) => row(o.dataset, o));
  if (s.ood.length > 0) rows.push(row('Avg', average(s.ood), ' class="avg"'));
  else rows.push('<tr><td colspan="4">no OOD sets</td></tr>');
  return `<table class="metrics" data-scorer="${escapeHtml(s.scorer)}"><thead>${head}</thead><tbody>${rows.join('')}</tbody></table>`;
}

/** One scorer's section: metrics table, then the two plots per OOD set. */
function scorerSection(r: EvalReport, s: ScorerReport, si: number, fprName: string): string {
  const id = detectorValues(s.idScores, `'idScores' of scorer '${s.scorer}'`);
  const parts: string[] = [
    `<section class="scorer" id="s${si}"><h2>${escapeHtml(s.scorer)}</h2>`,
    `<p class="meta">values in %, 2 decimals; ${escapeHtml(fprName)} = FPR at ${percentOf(r.recallLevel)}% ID recall; Avg = mean of the rows</p>`,
    metricsTable(s, fprName),
  ];
  s.ood.forEach((o, oi) => {
    const ood = detectorValues(o.scores, `'scores' of OOD set '${o.dataset}' (scorer '${s.scorer}')`);
    let tp = 0;
    for (let i = 0; i < id.length; i++) if (id[i]! >= o.cutoff) tp++;
    const what = `${s.scorer}, ${r.idDataset} vs ${o.dataset}`;
    parts.push(
      `<div class="pair" id="s${si}-o${oi}"><h3>${escapeHtml(o.dataset)}</h3>`,
      `<p class="meta">n = ${ood.length.toLocaleString('en-US')} · ${escapeHtml(fprName)} ${pct(o.FPR)}% · AUROC ${pct(o.AUROC)}% · AUPR ${pct(o.AUPR)}% · cutoff ${escapeHtml(formatValue(o.cutoff))} (−score)</p>`,
      '<div class="plots"><figure>',
      histogramSvg({
        dataPlot: `hist:${s.scorer}:${o.dataset}`,
        label: `Histogram of detector values (−score), ${what}, with the cutoff at ${percentOf(r.recallLevel)}% ID recall`,
        id, ood, idName: `ID: ${r.idDataset}`, oodName: o.dataset, cutoff: o.cutoff,
        cutoffLabel: `cutoff @ ${percentOf(r.recallLevel)}% recall`, bins: HIST_BINS,
      }),
      '</figure><figure>',
      rocSvg({
        dataPlot: `roc:${s.scorer}:${o.dataset}`,
        label: `ROC curve (ID positive), ${what}, AUROC ${pct(o.AUROC)}%`,
        curve: downsampleCurve(rocCurve(id, ood), ROC_POINTS),
        auroc: o.AUROC,
        point: Number.isFinite(o.cutoff) ? { fpr: o.FPR / 100, tpr: tp / id.length, label: `${fprName} = ${pct(o.FPR)}%` } : undefined,
      }),
      '</figure></div></div>',
    );
  });
  parts.push('</section>');
  return parts.join('');
}

/** Cross-scorer summary of the `Avg` rows (only with more than one scorer). */
function summaryTable(r: EvalReport, fprName: string): string {
  const withSets = r.scorers.filter((s) => s.ood.length > 0);
  if (withSets.length < 2) return '';
  const rows = withSets.map((s) => {
    const a = average(s.ood);
    return `<tr><td>${escapeHtml(s.scorer)}</td><td class="num">${pct(a.FPR)}</td><td class="num">${pct(a.AUROC)}</td><td class="num">${pct(a.AUPR)}</td></tr>`;
  });
  return (
    `<section id="summary"><h2>Summary (Avg over OOD sets)</h2><table class="summary"><thead><tr><th>scorer</th><th>${fprName}</th><th>AUROC</th><th>AUPR</th></tr></thead>` +
    `<tbody>${rows.join('')}</tbody></table></section>`
  );
}

/** The resolved configuration: one row per top-level key, then the whole object as JSON. */
function configSection(config: Record<string, unknown>): string {
  const entries = Object.entries(config ?? {});
  const rows = entries.map(([k, v]) => {
    const shown = typeof v === 'string' ? escapeHtml(v)
      : v !== null && typeof v === 'object' ? `<pre>${escapeHtml(compactJson(v))}</pre>`
      : escapeHtml(typeof v === 'bigint' ? v.toString() : String(v));
    return `<tr><th>${escapeHtml(k)}</th><td>${shown}</td></tr>`;
  });
  return (
    '<section id="config"><h2>Resolved configuration</h2>' +
    (rows.length ? `<table class="config"><tbody>${rows.join('')}</tbody></table>` : '<p>(empty)</p>') +
    `<details><summary>as JSON</summary><pre>${escapeHtml(displayJson(config ?? {}, 2))}</pre></details></section>`
  );
}

/** The skipped input files, if any. */
function skippedSection(skipped: EvalReport['skipped']): string {
  if (!skipped || skipped.length === 0) return '';
  const rows = skipped.map((s) => `<tr><td>${escapeHtml(s.dataset)}</td><td><code>${escapeHtml(s.file)}</code></td><td>${escapeHtml(s.reason)}</td></tr>`);
  return (
    `<section id="skipped"><h2>Skipped files (${skipped.length})</h2><table class="skipped"><thead><tr><th>dataset</th><th>file</th><th>reason</th></tr></thead>` +
    `<tbody>${rows.join('')}</tbody></table></section>`
  );
}

/**
 * The whole report as one HTML document (UTF-8, no external resources, no scripts). Every plot
 * is an `<svg role="img" aria-label=… data-plot="hist:<scorer>:<dataset>">` or
 * `data-plot="roc:<scorer>:<dataset>"`; every string from the report is escaped.
 * @throws TypeError / RangeError when a score list is not an array, is empty or holds a
 *   NaN/±Inf (naming the scorer, the dataset and the index), or the recall level is not in (0, 1]
 * @example renderEvalReport(report).length // ≈ 30 kB per (scorer, OOD set), whatever the set sizes
 */
export function renderEvalReport(report: EvalReport): string {
  const r = report;
  if (typeof r.recallLevel !== 'number' || !(r.recallLevel > 0 && r.recallLevel <= 1)) {
    throw new RangeError(`'recallLevel' passed to 'renderEvalReport' must be in (0, 1], got ${String(r.recallLevel)}`);
  }
  if (!Array.isArray(r.scorers as unknown)) throw new TypeError(`'scorers' passed to 'renderEvalReport' must be an array`);
  const fprName = `FPR${percentOf(r.recallLevel)}`;
  const nId = r.scorers[0]?.idScores.length;
  const sections = r.scorers.map((s, si) => scorerSection(r, s, si, fprName));
  const nav = r.scorers.length
    ? `<nav><ul>${r.scorers.map((s, si) => `<li><a href="#s${si}">${escapeHtml(s.scorer)}</a> — ${s.ood.map((o, oi) => `<a href="#s${si}-o${oi}">${escapeHtml(o.dataset)}</a>`).join(', ')}</li>`).join('')}` +
      `<li><a href="#config">configuration</a>${r.skipped?.length ? ' · <a href="#skipped">skipped files</a>' : ''}</li></ul></nav>`
    : '<p>no scorers</p>';
  return [
    '<!doctype html>',
    '<html lang="en"><head><meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">`,
    `<title>${escapeHtml(r.title)}</title>`,
    `<style>${CSS}</style></head><body>`,
    headerHtml(r, nId),
    nav,
    summaryTable(r, fprName),
    ...sections,
    configSection(r.config),
    skippedSection(r.skipped),
    `<footer class="meta"><p>Generated by setar. Colours: <span style="color:${COLORS.id}">ID</span>, <span style="color:${COLORS.ood}">OOD</span>, <span style="color:${COLORS.cutoff}">cutoff</span>.</p></footer>`,
    '</body></html>',
    '',
  ].join('\n');
}

/**
 * Renders the report and writes it atomically: a temp file in the same folder (created if
 * missing), then a rename, so a reader never sees half a report and a failed render leaves any
 * previous file untouched.
 * @throws as {@link renderEvalReport}, or the file system's error
 */
export function writeEvalReport(path: string, report: EvalReport): void {
  writeFileAtomic(path, renderEvalReport(report));
}
