import { writeFileAtomic } from '../io/atomic.js';
import { escapeHtml } from './escape.js';

/** A training run to report: one row per optimiser step. */
export interface TrainingReport {
  readonly title: string;
  readonly rows: readonly { readonly step: number; readonly lr: number; readonly locoop_loss: number; readonly loss_id: number; readonly loss_ood: number; readonly acc: number }[];
  readonly config: Record<string, unknown>;
}

const W = 460;
const H = 260;
const M = { l: 56, r: 12, t: 16, b: 36 };

/** One inline-SVG line chart of several series over the steps. */
function lineChart(id: string, title: string, steps: readonly number[], series: readonly { name: string; color: string; values: readonly number[] }[]): string {
  const all = series.flatMap((s) => s.values).filter(Number.isFinite);
  let lo = Math.min(...all);
  let hi = Math.max(...all);
  if (!(hi > lo)) {
    lo -= 1;
    hi += 1;
  }
  const x0 = steps[0] ?? 0;
  const x1 = Math.max(x0 + 1, steps.at(-1) ?? 1);
  const X = (s: number) => M.l + ((s - x0) / (x1 - x0)) * (W - M.l - M.r);
  const Y = (v: number) => H - M.b - ((v - lo) / (hi - lo)) * (H - M.t - M.b);
  const ticks = [lo, (lo + hi) / 2, hi].map((v) => `<text x="${M.l - 6}" y="${Y(v) + 4}" text-anchor="end" font-size="11">${escapeHtml(v.toPrecision(3))}</text>`).join('');
  const lines = series.map((s) => {
    const pts = steps.map((st, i) => `${X(st).toFixed(1)},${Y(s.values[i]!).toFixed(1)}`).join(' ');
    return steps.length === 1 ? `<circle cx="${X(steps[0]!)}" cy="${Y(s.values[0]!)}" r="3" fill="${s.color}"/>` : `<polyline fill="none" stroke="${s.color}" stroke-width="1.8" points="${pts}"/>`;
  }).join('');
  const legend = series.map((s, i) => `<text x="${M.l + 8 + i * 120}" y="${M.t + 10}" font-size="11" fill="${s.color}">${escapeHtml(s.name)}</text>`).join('');
  return `<svg role="img" aria-label="${escapeHtml(title)}" data-plot="${escapeHtml(id)}" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}">`
    + `<rect x="${M.l}" y="${M.t}" width="${W - M.l - M.r}" height="${H - M.t - M.b}" fill="none" stroke="#ccc"/>${ticks}${lines}${legend}`
    + `<text x="${(W + M.l) / 2}" y="${H - 8}" text-anchor="middle" font-size="11">optimiser step (${x0}–${x1})</text></svg>`;
}

/** The fine-tuning report: loss parts, accuracy and learning rate per step, and the config. */
export function renderTrainingReport(r: TrainingReport): string {
  const steps = r.rows.map((x) => x.step);
  const col = (k: 'locoop_loss' | 'loss_id' | 'loss_ood' | 'acc' | 'lr') => r.rows.map((x) => x[k]);
  const body = r.rows.length === 0
    ? '<p>No optimiser step was taken.</p>'
    : [
        lineChart('train:loss', 'LoCoOp loss and its parts per step', steps, [
          { name: 'locoop_loss', color: '#1f77b4', values: col('locoop_loss') },
          { name: 'loss_id', color: '#2ca02c', values: col('loss_id') },
          { name: 'loss_ood', color: '#d62728', values: col('loss_ood') },
        ]),
        lineChart('train:acc', 'training accuracy per step', steps, [{ name: 'acc (%)', color: '#9467bd', values: col('acc') }]),
        lineChart('train:lr', 'learning rate per step', steps, [{ name: 'learning rate', color: '#ff7f0e', values: col('lr') }]),
      ].join('\n');
  const cfg = Object.entries(r.config).filter(([, v]) => v !== undefined).map(([k, v]) => `<tr><th>${escapeHtml(k)}</th><td>${escapeHtml(JSON.stringify(v))}</td></tr>`).join('');
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<title>${escapeHtml(r.title)}</title><style>body{font-family:system-ui,sans-serif;margin:24px;color:#222}svg{margin:8px 16px 8px 0;background:#fff}th{text-align:left;padding-right:12px;vertical-align:top}td{font-family:monospace}</style></head>
<body><h1>${escapeHtml(r.title)}</h1><p>${r.rows.length} optimiser steps${r.rows.length ? `; final locoop_loss ${escapeHtml(String(r.rows.at(-1)!.locoop_loss))}` : ''}.</p>
<div>${body}</div><h2>Configuration</h2><table>${cfg}</table></body></html>\n`;
}

/** Writes {@link renderTrainingReport} atomically. */
export function writeTrainingReport(path: string, r: TrainingReport): void {
  writeFileAtomic(path, renderTrainingReport(r));
}
