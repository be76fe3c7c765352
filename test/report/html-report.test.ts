import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { test } from 'node:test';
import { oodMetrics, auroc } from '../../src/ood/metrics.js';
import { escapeHtml } from '../../src/report/escape.js';
import { renderEvalReport, writeEvalReport, type EvalReport, type ScorerReport } from '../../src/report/html-report.js';
import { downsampleCurve, histogram, rocCurve, sharedBins, type Curve } from '../../src/report/svg-plots.js';
import { launchBrowser } from '../helpers/browser.js';
import { mulberry32 } from '../../src/rng.js';

// ---------------------------------------------------------------- synthetic data

/** Seeded draws, so every run sees the same scores. */
const rng = mulberry32;

/** `n` normal draws N(mean, sd²) as float32 scores (Box–Muller). */
function normalScores(n: number, mean: number, sd: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = mean + sd * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return out;
}

const WEIRD = '<b>&"x"';

/** A report with MCM-like scores (ID around −0.6, OOD sets closer to 0) and real metrics. */
function syntheticReport(opts: { nId: number; nOod: number; datasets: readonly string[]; scorers?: readonly string[] }): EvalReport {
  const scorers: ScorerReport[] = (opts.scorers ?? ['mcm_score']).map((scorer, si) => {
    const idScores = normalScores(opts.nId, -0.6, 0.1, 1 + si);
    return {
      scorer,
      idScores,
      ood: opts.datasets.map((dataset, di) => {
        const scores = normalScores(opts.nOod, -0.45 + 0.05 * di, 0.12, 100 + 10 * si + di);
        return { dataset, scores, ...oodMetrics(idScores, scores, { recallLevel: 0.95 }) };
      }),
    };
  });
  return {
    title: 'setar eval — ID_ImageNet1K (test)',
    idDataset: 'ID_ImageNet1K',
    split: 'test',
    accuracy: 68.3456,
    recallLevel: 0.95,
    config: { model: 'clip-vit-base-patch16', temperature: 100, lora_settings: [['visual', 'W_up', 11, 0.15]], note: '</td><script>alert(1)</script>' },
    scorers,
    skipped: [{ dataset: 'OOD_Places', file: '/data/places/<odd name>.jpg', reason: 'cannot decode: "truncated"' }],
  };
}

/** Every `data-plot` the report must contain: a histogram and a ROC per (scorer, OOD set). */
function expectedPlots(r: EvalReport): string[] {
  return r.scorers.flatMap((s) => s.ood.flatMap((o) => [`hist:${s.scorer}:${o.dataset}`, `roc:${s.scorer}:${o.dataset}`]));
}

/** The `<svg …>…</svg>` whose data-plot attribute is the escaped `plot`. */
function svgOf(html: string, plot: string): string {
  const start = html.indexOf(`data-plot="${escapeHtml(plot)}"`);
  assert.ok(start >= 0, `no svg with data-plot=${plot}`);
  const open = html.lastIndexOf('<svg', start);
  return html.slice(open, html.indexOf('</svg>', start) + 6);
}

/** Trapezoid area under a curve. */
function area(c: Curve): number {
  let a = 0;
  for (let i = 1; i < c.x.length; i++) a += ((c.x[i]! - c.x[i - 1]!) * (c.y[i]! + c.y[i - 1]!)) / 2;
  return a;
}

const negate = (a: ArrayLike<number>): Float64Array => Float64Array.from(a, (v) => -v);

// ---------------------------------------------------------------- plot helpers

test('rocCurve: (0,0) to (1,1), monotone, one point per distinct value; its area is the AUROC, ties included', () => {
  // rounded scores: many ID/OOD ties
  const id = Float64Array.from(normalScores(2000, -0.6, 0.1, 7), (v) => Math.round(v * 50) / 50);
  const ood = Float64Array.from(normalScores(1500, -0.5, 0.1, 8), (v) => Math.round(v * 50) / 50);
  const c = rocCurve(negate(id), negate(ood));
  assert.deepEqual([c.x[0], c.y[0]], [0, 0]);
  assert.deepEqual([c.x.at(-1), c.y.at(-1)], [1, 1]);
  for (let i = 1; i < c.x.length; i++) assert.ok(c.x[i]! >= c.x[i - 1]! && c.y[i]! >= c.y[i - 1]!, `not monotone at ${i}`);
  assert.equal(c.x.length, new Set([...id, ...ood]).size + 1);
  assert.ok(Math.abs(area(c) - auroc(id, ood)) < 1e-12, `area ${area(c)} vs auroc ${auroc(id, ood)}`);
  // the tiny hand case: detector values id [3, 2], ood [2, 1] → tie at 2 is one diagonal step
  const t = rocCurve(Float64Array.of(3, 2), Float64Array.of(2, 1));
  assert.deepEqual([...t.x], [0, 0, 0.5, 1]);
  assert.deepEqual([...t.y], [0, 0.5, 1, 1]);
});

test('downsampleCurve: ≤ maxPoints, first and last kept, shape kept (area within 0.2%)', () => {
  const c = rocCurve(negate(normalScores(50_000, -0.6, 0.1, 1)), negate(normalScores(10_000, -0.45, 0.12, 2)));
  assert.ok(c.x.length > 50_000);
  for (const max of [500, 100, 3]) {
    const d = downsampleCurve(c, max);
    assert.ok(d.x.length <= max && d.x.length >= 2, `${d.x.length} points for max ${max}`);
    assert.deepEqual([d.x[0], d.y[0], d.x.at(-1), d.y.at(-1)], [0, 0, 1, 1]);
    if (max === 500) {
      assert.ok(d.x.length >= 450, `only ${d.x.length} of 500 points used`);
      assert.ok(Math.abs(area(d) - area(c)) < 0.002 * area(c), `area ${area(d)} vs ${area(c)}`);
    }
  }
  const small = { x: Float64Array.of(0, 1), y: Float64Array.of(0, 1) };
  assert.equal(downsampleCurve(small, 500), small);
  assert.throws(() => downsampleCurve(c, 2), /maxPoints must be at least 3, got 2/);
});

test('histogram over shared bins counts every value once; the cutoff widens the range; one value still gets a range', () => {
  const a = Float64Array.of(0, 0.5, 1, 1, 2);
  const b = Float64Array.of(-1, 3);
  const bins = sharedBins([a, b], 4, [5, NaN]);
  assert.deepEqual(bins, { lo: -1, hi: 5, count: 4 });
  assert.deepEqual([...histogram(a, bins)], [1, 3, 1, 0]); // bins of width 1.5 from -1; 2 opens bin 2
  assert.deepEqual([...histogram(b, bins)], [1, 0, 1, 0]);
  const one = sharedBins([Float64Array.of(2, 2)], 60);
  assert.ok(one.lo < 2 && one.hi > 2);
  assert.equal(histogram(Float64Array.of(2, 2), one).reduce((s, v) => s + v, 0), 2);
});

test('escapeHtml escapes & < > " \'', () => {
  assert.equal(escapeHtml(`${WEIRD}'`), '&lt;b&gt;&amp;&quot;x&quot;&#39;');
});

// ---------------------------------------------------------------- the document

test('renderEvalReport: header, a metrics table per scorer with Avg = mean of rows (2 decimals), a hist and a roc per (scorer, OOD set)', () => {
  const r = syntheticReport({ nId: 3000, nOod: 1000, datasets: ['iNaturalist', 'SUN', 'Places'], scorers: ['mcm_score', 'gl_mcm_score'] });
  const html = renderEvalReport(r);
  assert.match(html, /^<!doctype html>/);
  assert.ok(html.includes(`<title>${escapeHtml(r.title)}</title>`));
  for (const s of ['ID_ImageNet1K', '68.35%', 'test', '95%', '3,000']) assert.ok(html.includes(s), `header lacks ${s}`);
  for (const s of r.scorers) {
    const table = html.slice(html.indexOf(`<table class="metrics" data-scorer="${s.scorer}">`));
    const body = table.slice(0, table.indexOf('</table>'));
    assert.match(body, /<th[^>]*>FPR95<\/th><th[^>]*>AUROC<\/th><th[^>]*>AUPR<\/th>/);
    const rows = [...body.matchAll(/<tr[^>]*><td>([^<]*)<\/td><td class="num">([^<]*)<\/td><td class="num">([^<]*)<\/td><td class="num">([^<]*)<\/td><\/tr>/g)];
    assert.deepEqual(rows.map((m) => m[1]), [...s.ood.map((o) => o.dataset), 'Avg']);
    s.ood.forEach((o, i) => assert.deepEqual(rows[i]!.slice(2), [o.FPR.toFixed(2), o.AUROC.toFixed(2), o.AUPR.toFixed(2)]));
    const mean = (k: 'FPR' | 'AUROC' | 'AUPR'): string => (s.ood.reduce((a, o) => a + o[k], 0) / s.ood.length).toFixed(2);
    assert.deepEqual(rows.at(-1)!.slice(2), [mean('FPR'), mean('AUROC'), mean('AUPR')]);
  }
  const plots = [...html.matchAll(/<svg [^>]*data-plot="([^"]*)"/g)].map((m) => m[1]);
  assert.deepEqual(plots, expectedPlots(r));
  for (const plot of expectedPlots(r)) {
    const svg = svgOf(html, plot);
    assert.match(svg, /^<svg role="img" aria-label="[^"]+"/);
    if (plot.startsWith('hist:')) {
      assert.ok(svg.includes('detector value = −score'), 'x axis says which value it shows');
      assert.match(svg, /data-series="cutoff"><line[^>]*\/><text[^>]*>cutoff @ 95% recall = -?[\d.]+<\/text>/);
      assert.ok((svg.match(/<rect x/g) ?? []).length > 40);
    } else {
      const pts = /<polyline data-series="roc"[^>]*points="([^"]*)"/.exec(svg)![1]!.split(' ');
      assert.ok(pts.length > 100 && pts.length <= 500, `${pts.length} ROC points`);
      const auroc = r.scorers.find((s) => plot.startsWith(`roc:${s.scorer}:`))!.ood.find((o) => plot.endsWith(`:${o.dataset}`))!.AUROC;
      assert.ok(svg.includes(`ROC, AUROC ${auroc.toFixed(2)}%`), 'AUROC in the legend');
    }
  }
  assert.ok(html.includes('id="config"') && html.includes('clip-vit-base-patch16'));
  assert.ok(html.includes('id="skipped"') && html.includes('Skipped files (1)'));
});

test('the document references no external resource (no http(s) src/href/url(), no scripts, a CSP forbidding fetches)', () => {
  const r = syntheticReport({ nId: 500, nOod: 300, datasets: ['SUN', 'Textures'] });
  const html = renderEvalReport(r);
  assert.ok(!/https?:\/\//i.test(html), 'no http:// or https:// anywhere in a report whose inputs hold none');
  assert.ok(!/<script|<link|<iframe|<img|<object|<embed|@import|url\(/i.test(html));
  assert.match(html, /<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">/);
  // a URL in the config is shown as text, never as a reference
  const withUrl = renderEvalReport({ ...r, config: { ...r.config, model: 'https://huggingface.co/openai/clip-vit-base-patch16' } });
  assert.ok(withUrl.includes('https://huggingface.co/openai/clip-vit-base-patch16'));
  assert.ok(!/(?:src|href|xlink:href|action|poster|data)\s*=\s*["']?\s*(?:https?:)?\/\//i.test(withUrl));
  assert.ok(!/url\(\s*["']?\s*(?:https?:)?\/\//i.test(withUrl));
});

test('every string from the report is escaped: dataset, scorer, title, config values, skipped file paths', () => {
  const base = syntheticReport({ nId: 400, nOod: 200, datasets: [WEIRD, 'SUN'] });
  const r: EvalReport = { ...base, title: `eval ${WEIRD}`, idDataset: `ID ${WEIRD}`, scorers: base.scorers.map((s) => ({ ...s, scorer: `mcm<i>` })) };
  const html = renderEvalReport(r);
  for (const raw of [WEIRD, '<i>', '<script>', '</td><script>', '<odd name>', '"truncated"']) assert.ok(!html.includes(raw), `raw ${raw} in the HTML`);
  assert.ok(html.includes('&lt;b&gt;&amp;&quot;x&quot;'));
  assert.ok(html.includes(`data-plot="hist:mcm&lt;i&gt;:&lt;b&gt;&amp;&quot;x&quot;"`));
  assert.ok(html.includes('&lt;/td&gt;&lt;script&gt;alert(1)&lt;/script&gt;'));
  assert.ok(html.includes('/data/places/&lt;odd name&gt;.jpg'));
  // only the tags the renderer writes itself
  const tags = new Set([...html.matchAll(/<([a-zA-Z][a-zA-Z0-9]*)/g)].map((m) => m[1]!.toLowerCase()));
  const allowed = ['html', 'head', 'meta', 'title', 'style', 'body', 'header', 'h1', 'h2', 'h3', 'dl', 'dt', 'dd', 'nav', 'ul', 'li', 'a', 'section', 'p', 'table', 'thead', 'tbody', 'tr', 'th', 'td', 'div', 'figure', 'svg', 'g', 'line', 'text', 'rect', 'polyline', 'circle', 'pre', 'details', 'summary', 'code', 'footer', 'span'];
  assert.deepEqual([...tags].filter((t) => !allowed.includes(t)), []);
});

test('renderEvalReport rejects bad scores and recall levels, naming the input', () => {
  const r = syntheticReport({ nId: 50, nOod: 20, datasets: ['SUN'] });
  const ood = r.scorers[0]!.ood[0]!;
  const withOod = (scores: ArrayLike<number>): EvalReport => ({ ...r, scorers: [{ ...r.scorers[0]!, ood: [{ ...ood, scores }] }] });
  assert.throws(() => renderEvalReport(withOod([-0.5, NaN])), { name: 'RangeError', message: /'scores' of OOD set 'SUN' \(scorer 'mcm_score'\)\[1\] passed to 'renderEvalReport' is NaN/ });
  assert.throws(() => renderEvalReport(withOod([])), { name: 'RangeError', message: /'SUN'.*is empty/ });
  assert.throws(() => renderEvalReport({ ...r, scorers: [{ ...r.scorers[0]!, idScores: [Infinity] }] }), /'idScores' of scorer 'mcm_score'\[0\] .* is Infinity/);
  assert.throws(() => renderEvalReport({ ...r, recallLevel: 95 }), { name: 'RangeError', message: /'recallLevel' .* must be in \(0, 1\], got 95/ });
});

test('writeEvalReport writes atomically: replaces the file, leaves no temp file, keeps the old file when rendering fails', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'setar-report-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'sub', 'report.html');
  const r = syntheticReport({ nId: 300, nOod: 100, datasets: ['SUN'] });
  writeEvalReport(path, r);
  assert.equal(readFileSync(path, 'utf8'), renderEvalReport(r));
  writeEvalReport(path, { ...r, title: 'second' });
  assert.match(readFileSync(path, 'utf8'), /<title>second<\/title>/);
  assert.throws(() => writeEvalReport(path, { ...r, recallLevel: NaN }), RangeError);
  assert.match(readFileSync(path, 'utf8'), /<title>second<\/title>/);
  assert.deepEqual(readdirSync(join(dir, 'sub')), ['report.html']);
  // a folder in the way of the rename: the error surfaces and the temp file is removed
  mkdirSync(join(dir, 'sub', 'taken.html'));
  writeFileSync(join(dir, 'sub', 'taken.html', 'x'), '');
  assert.throws(() => writeEvalReport(join(dir, 'sub', 'taken.html'), r));
  assert.deepEqual(readdirSync(join(dir, 'sub')).sort(), ['report.html', 'taken.html']);
});

test('large inputs give a compact file: 50,000 ID + 3 × 10,000 OOD scores, 2 scorers, < 400 kB', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'setar-report-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = syntheticReport({ nId: 50_000, nOod: 10_000, datasets: ['iNaturalist', 'SUN', 'Places'], scorers: ['mcm_score', 'gl_mcm_score'] });
  const path = join(dir, 'report.html');
  const t0 = performance.now();
  writeEvalReport(path, r);
  const ms = performance.now() - t0;
  const size = statSync(path).size;
  t.diagnostic(`report for 2 scorers × (50,000 ID + 3 × 10,000 OOD): ${(size / 1024).toFixed(1)} kB in ${ms.toFixed(0)} ms`);
  assert.ok(size < 400 * 1024, `${size} bytes`);
  const html = readFileSync(path, 'utf8');
  for (const plot of expectedPlots(r)) {
    const svg = svgOf(html, plot);
    if (plot.startsWith('hist:')) assert.ok((svg.match(/<rect x/g) ?? []).length <= 2 * 60 + 2);
    else {
      const n = /points="([^"]*)"/.exec(svg)![1]!.split(' ').length;
      assert.ok(n <= 500 && n >= 400, `${plot}: ${n} ROC points`);
    }
  }
});

// ---------------------------------------------------------------- in a real browser

/** The few DOM members the in-page checks use (the project compiles without the DOM lib). */
interface DomNode {
  getBoundingClientRect(): { width: number; height: number };
  querySelector(selector: string): DomNode | null;
  querySelectorAll(selector: string): Iterable<DomNode>;
  /** SVGPolylineElement's point list */
  readonly points?: { readonly numberOfItems: number };
}

test('in headless Chromium every plot is present, visible, sized and drawn; nothing is fetched', async (t) => {
  const keep = process.env.SETAR_REPORT_SCREENSHOT_DIR;
  const dir = keep ?? mkdtempSync(join(tmpdir(), 'setar-report-'));
  if (keep) mkdirSync(keep, { recursive: true });
  else t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = syntheticReport({ nId: 5000, nOod: 2000, datasets: ['iNaturalist', WEIRD, 'Places'], scorers: ['mcm_score', 'gl_mcm_score'] });
  const path = join(dir, 'report.html');
  writeEvalReport(path, r);
  const url = pathToFileURL(path).href;

  const browser = await launchBrowser(); // fails (never skips) when /usr/bin/chromium is missing
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const requests: string[] = [];
    const problems: string[] = [];
    page.on('request', (req) => requests.push(req.url()));
    page.on('console', (msg) => { if (msg.type() === 'error' || msg.type() === 'warning') problems.push(msg.text()); });
    page.on('pageerror', (e) => problems.push(String(e)));
    await page.goto(url, { waitUntil: 'load' });

    assert.deepEqual(requests, [url], 'the page loads nothing but itself');
    assert.deepEqual(problems, [], 'no console errors or CSP violations');
    assert.equal(await page.title(), r.title);
    // the weird dataset name round-trips as text; no <b> element was injected
    assert.equal(await page.locator('#s0-o1 h3').textContent(), WEIRD);
    assert.equal(await page.locator('h3 b, td b, svg b').count(), 0);

    const plots = page.locator('svg[data-plot]');
    assert.equal(await plots.count(), expectedPlots(r).length);
    const found = await plots.evaluateAll((els) => els.map((e) => e.getAttribute('data-plot')));
    assert.deepEqual(found, expectedPlots(r));
    for (let i = 0; i < found.length; i++) {
      const plot = found[i]!;
      const svg = plots.nth(i);
      await svg.scrollIntoViewIfNeeded();
      assert.ok(await svg.isVisible(), `${plot} visible`);
      const box = await svg.boundingBox();
      assert.ok(box && box.width > 200 && box.height > 200, `${plot} box ${JSON.stringify(box)}`);
      assert.equal(await svg.getAttribute('role'), 'img');
      assert.ok(((await svg.getAttribute('aria-label')) ?? '').length > 20, `${plot} aria-label`);
      // runs in the page: no named inner functions (tsx would wrap them in a `__name` helper the page lacks)
      const drawn = await svg.evaluate((svgEl) => {
        const el = svgEl as unknown as DomNode;
        const [id, ood, all] = ['[data-series="id"] rect', '[data-series="ood"] rect', '[data-series] rect'].map((sel) =>
          [...el.querySelectorAll(sel)].map((n) => n.getBoundingClientRect().height));
        const roc = el.querySelector('polyline[data-series="roc"]');
        const rocBox = roc?.getBoundingClientRect();
        const cutoff = el.querySelector('[data-series="cutoff"] line')?.getBoundingClientRect();
        return {
          id: id!.filter((h) => h > 0).length,
          ood: ood!.filter((h) => h > 0).length,
          tallest: Math.max(0, ...all!),
          rocPoints: roc?.points?.numberOfItems ?? 0,
          rocW: rocBox?.width ?? 0,
          rocH: rocBox?.height ?? 0,
          cutoffH: cutoff?.height ?? 0,
        };
      });
      if (plot.startsWith('hist:')) {
        assert.ok(drawn.id >= 20 && drawn.ood >= 20, `${plot}: ${drawn.id} ID and ${drawn.ood} OOD bars`);
        assert.ok(drawn.tallest > 100, `${plot}: tallest bar ${drawn.tallest}px`);
        assert.ok(drawn.cutoffH > 100, `${plot}: cutoff line ${drawn.cutoffH}px`);
      } else {
        assert.ok(drawn.rocPoints >= 100 && drawn.rocPoints <= 500, `${plot}: ${drawn.rocPoints} ROC points`);
        assert.ok(drawn.rocW > 150 && drawn.rocH > 150, `${plot}: ROC spans ${drawn.rocW}×${drawn.rocH}px`);
      }
    }
    await page.evaluate('window.scrollTo(0, 0)');
    await page.screenshot({ path: join(dir, 'report-full.png'), fullPage: true });
    await page.locator('#s0-o1').screenshot({ path: join(dir, 'report-pair.png') });
    t.diagnostic(`screenshots: ${join(dir, 'report-full.png')}, ${join(dir, 'report-pair.png')}`);
  } finally {
    await browser.close();
  }
});
