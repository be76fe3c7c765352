import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { ClipPipeline } from '../../src/models/clip/pipeline.js';
import { ClipLogitsHead } from '../../src/models/clip/logits.js';
import { computeScores } from '../../src/ood/scores.js';
import { metricsFromScoreFiles, readScoreFile } from '../../src/eval/score-files.js';
import { fixture, REPO_ROOT } from '../helpers/fixtures.js';
import { launchBrowser } from '../helpers/browser.js';
import { writeTestImage } from '../helpers/images.js';

const MODEL = fixture('clip-tiny-a');


function setar(...args: string[]) {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'setar.js'), ...args], { encoding: 'utf8', env: { ...process.env, SETAR_CACHE_DIR: join(dir, 'cache') } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

let dir = '';

describe('setar eval end to end (clip-tiny-a, real image folders)', () => {
  let idRoot: string;
  let oodA: string;
  let oodB: string;
  const out = () => join(dir, 'out');

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-eval-'));
    idRoot = join(dir, 'id');
    oodA = join(dir, 'oodA');
    oodB = join(dir, 'oodB');
    let k = 0;
    for (const c of ['cat', 'dog', 'bird']) for (let i = 0; i < 4; i++) await writeTestImage(join(idRoot, c, `${i}.${i % 2 ? 'png' : 'jpg'}`), k++);
    for (let i = 0; i < 6; i++) await writeTestImage(join(oodA, i < 3 ? 'sub' : '', `a${i}.jpg`), 100 + i);
    for (let i = 0; i < 5; i++) await writeTestImage(join(oodB, `b${i}.png`), 200 + i);
    writeFileSync(join(oodB, 'broken.jpg'), Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 1, 2, 3])); // corrupt JPEG
    writeFileSync(join(oodB, 'notes.txt'), 'not an image');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes the reference files; skips and lists the corrupt image', async () => {
    const r = setar('eval', '--model', MODEL, '--id', `ID_toy=${idRoot}`, '--ood', `OOD_A=${oodA}`, '--ood', `OOD_B=${oodB}`,
      '--scorers', 'mcm_score,gl_mcm_score,energy_score', '--batch-size', '5', '--out', out());
    assert.equal(r.code, 0, r.stderr);
    const files = readdirSync(out()).sort();
    for (const f of ['scores_ID_toy_test.csv', 'scores_OOD_A_test.csv', 'scores_OOD_B_test.csv', 'metrics_mcm_score_test.csv', 'metrics_gl_mcm_score_test.csv',
      'cutoffs_mcm_score_test.csv', 'metrics_classify_test.json', 'config.json', 'eval.log', 'report_test.html', 'skipped_OOD_B_test.txt']) {
      assert.ok(files.includes(f), `${f} missing from ${files.join(', ')}`);
    }
    assert.ok(!files.some((f) => f.endsWith('.tmp')), 'no temporary files left');
    assert.match(readFileSync(join(out(), 'skipped_OOD_B_test.txt'), 'utf8'), /^broken\.jpg\t.+\n$/);

    // scores: `image` column relative and '/'-separated, dataset order, one column per scorer
    const rows = parse(readFileSync(join(out(), 'scores_OOD_A_test.csv'), 'utf8')) as string[][];
    assert.deepEqual(rows[0], ['image', 'mcm_score', 'gl_mcm_score', 'energy_score']);
    assert.deepEqual(rows.slice(1).map((x) => x[0]), ['a3.jpg', 'a4.jpg', 'a5.jpg', 'sub/a0.jpg', 'sub/a1.jpg', 'sub/a2.jpg']);
    const idRows = parse(readFileSync(join(out(), 'scores_ID_toy_test.csv'), 'utf8')) as string[][];
    assert.deepEqual(idRows.slice(1).map((x) => x[0]), ['bird/0.jpg', 'bird/1.png', 'bird/2.jpg', 'bird/3.png', 'cat/0.jpg', 'cat/1.png', 'cat/2.jpg', 'cat/3.png', 'dog/0.jpg', 'dog/1.png', 'dog/2.jpg', 'dog/3.png']);

    // the scores equal the library's: pipeline + logits head + scorer, image by image
    const clip = await ClipPipeline.load(MODEL, { threads: 1 });
    try {
      const text = await clip.encodeTexts(['bird', 'cat', 'dog'].map((c) => `a photo of a ${c}`));
      const head = await ClipLogitsHead.create(text, clip.model.logitScale, { threads: 1 });
      const f = await clip.encodeImageFiles(idRows.slice(1).map((x) => join(idRoot, x[0]!)));
      const global = await head.logits(f.image_embeds);
      const local = await head.logits(f.image_embeds_local!);
      for (const [c, s] of [[1, 'mcm_score'], [2, 'gl_mcm_score'], [3, 'energy_score']] as const) {
        const want = computeScores(s, { global, local }, 100);
        idRows.slice(1).forEach((row, i) => assert.equal(Number(row[c]), want[i], `${s} of ${row[0]}`));
      }
      await head.release();
    } finally {
      await clip.dispose();
    }

    // metrics files agree with setar metrics' recomputation from the score files
    const tables = metricsFromScoreFiles(readScoreFile(join(out(), 'scores_ID_toy_test.csv')), ['A', 'B'].map((n) => readScoreFile(join(out(), `scores_OOD_${n}_test.csv`))), { scorer: 'gl_mcm_score' });
    const csv = parse(readFileSync(join(out(), 'metrics_gl_mcm_score_test.csv'), 'utf8')) as string[][];
    assert.deepEqual(csv[0], ['OOD dataset', 'FPR95', 'AUROC', 'AUPR']);
    assert.deepEqual(csv.slice(1), tables[0]!.rows.map((r) => [r.dataset, r.FPR95.toFixed(2), r.AUROC.toFixed(2), r.AUPR.toFixed(2)]));
    const cut = parse(readFileSync(join(out(), 'cutoffs_gl_mcm_score_test.csv'), 'utf8')) as string[][];
    assert.deepEqual(cut, [['OOD dataset', 'Cutoff'], ...tables[0]!.rows.slice(0, 2).map((r) => [r.dataset, String(r.cutoff)])]);
    const acc = JSON.parse(readFileSync(join(out(), 'metrics_classify_test.json'), 'utf8')) as Record<string, number>;
    assert.deepEqual(Object.keys(acc), ['ID_toy']);
    assert.ok(acc.ID_toy! >= 0 && acc.ID_toy! <= 100);
  });

  it('the HTML report renders its plots in headless Chromium', async () => {
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      await page.goto('file://' + join(out(), 'report_test.html'));
      const plots = await page.$$eval('svg[data-plot]', (els) => els.map((e) => ({
        id: e.getAttribute('data-plot'),
        w: e.getBoundingClientRect().width,
        h: e.getBoundingClientRect().height,
        // histogram bars with a height, or the ROC polyline's points
        marks: e.getAttribute('data-plot')!.startsWith('hist:')
          ? [...e.querySelectorAll('rect')].filter((r) => r.getBoundingClientRect().height > 0).length
          : Math.max(0, ...[...e.querySelectorAll('polyline')].map((p) => (p.getAttribute('points') ?? '').trim().split(/\s+/).length)),
      })));
      const ids = plots.map((p) => p.id).sort();
      for (const s of ['mcm_score', 'gl_mcm_score', 'energy_score']) for (const d of ['OOD_A', 'OOD_B']) {
        assert.ok(ids.includes(`hist:${s}:${d}`) && ids.includes(`roc:${s}:${d}`), `plots of ${s} × ${d}`);
      }
      for (const p of plots) assert.ok(p.w > 100 && p.h > 100 && p.marks > 2, `${p.id} is drawn (${p.w}x${p.h}, ${p.marks} marks)`);
      assert.match(await page.content(), /broken\.jpg/);
    } finally {
      await browser.close();
    }
  });

  it('--strict fails on the corrupt image, naming it; bad input is named', () => {
    const strict = setar('eval', '--model', MODEL, '--id', `ID_toy=${idRoot}`, '--ood', `OOD_B=${oodB}`, '--strict', '--out', join(dir, 'strict'));
    assert.equal(strict.code, 1);
    assert.match(strict.stderr, /setar: error: .*broken\.jpg/);
    writeFileSync(join(dir, 'labels.txt'), 'a\nb\n');
    const labels = setar('eval', '--model', MODEL, '--id', `ID_toy=${idRoot}`, '--labels', join(dir, 'labels.txt'), '--ood', `OOD_A=${oodA}`, '--out', join(dir, 'l'));
    assert.match(labels.stderr, /labels file has 2 labels but dataset ID_toy has 3 class folders under '.*id'/);
    mkdirSync(join(dir, 'empty'));
    const empty = setar('eval', '--model', MODEL, '--id', `ID_toy=${idRoot}`, '--ood', `OOD_E=${join(dir, 'empty')}`, '--out', join(dir, 'e'));
    assert.match(empty.stderr, /OOD dataset OOD_E: no images under '.*empty'/);
    assert.ok(!existsSync(join(dir, 'e', 'scores_ID_toy_test.csv')), 'datasets are checked before any work');
  });
});
