import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadImageBatches } from '../../src/data/loader.js';
import { resolveEvalConfig } from '../../src/eval/config.js';
import { resolveSearchConfig, type SearchFlags } from '../../src/search/config.js';
import { runSearch } from '../../src/search/greedy.js';
import type { SearchResult } from '../../src/search/search-run.js';
import { SEARCHERS } from '../../src/search/searchers.js';
import { dataFile } from '../../src/paths.js';
import { fixture, REPO_ROOT, SHARED } from '../helpers/fixtures.js';
import { writeTestImage } from '../helpers/images.js';

const MODEL = fixture('clip-tiny-a');


let dir = '';
const read = (p: string) => readFileSync(p, 'utf8');

describe('setar search on clip-tiny-a', () => {
  let val: string;
  let testId: string;
  let testOod: string;
  const base = (out: string, extra: SearchFlags = {}): SearchFlags => ({ model: MODEL, id: `toy=${val}`, locoopTopK: 2, candiRatios: [0, 0.1, 0.25, 0.4], out: join(dir, out), ...extra });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-search-'));
    process.env.SETAR_CACHE_DIR = join(dir, 'cache');
    val = join(dir, 'val');
    testId = join(dir, 'test-id');
    testOod = join(dir, 'test-ood');
    let k = 0;
    for (const c of ['bird', 'cat', 'dog', 'fish']) for (let i = 0; i < 3; i++) await writeTestImage(join(val, c, `${i}.jpg`), k++);
    for (const c of ['bird', 'cat', 'dog', 'fish']) for (let i = 0; i < 2; i++) await writeTestImage(join(testId, c, `${i}.jpg`), 50 + k++);
    for (let i = 0; i < 5; i++) await writeTestImage(join(testOod, `o${i}.jpg`), 90 + i);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** Every (step, ratio) pair is recorded, and lora_settings has one entry per slot. */
  function checkShape(r: SearchResult, ratios: number, slots: number): void {
    assert.equal(r.lora_settings.length, slots);
    const steps = new Set(r.candidates.map((c) => c.step));
    for (const s of steps) {
      const rows = r.candidates.filter((c) => c.step === s);
      assert.equal(new Set(rows.map((c) => `${c.tower_type}${c.layer_num}:${c.ratio}`)).size, rows.length);
      assert.equal(rows.length % ratios, 0);
      assert.ok(rows.some((c) => c.ratio === 0), `step ${s} lists ratio 0`);
    }
  }

  for (const searcher of SEARCHERS) {
    it(`${searcher}: cached and --no-cache choose the same settings with the same figures`, async () => {
      const flags = base(`${searcher}-cached`, { searcher, freezeProj: false });
      const cached = await runSearch(resolveSearchConfig(null, flags));
      const plain = await runSearch(resolveSearchConfig(null, { ...flags, cache: false, out: join(dir, `${searcher}-plain`) }));
      assert.deepEqual(cached.lora_settings, plain.lora_settings);
      assert.equal(cached.candidates.length, plain.candidates.length);
      cached.candidates.forEach((c, i) => {
        const p = plain.candidates[i]!;
        assert.deepEqual([c.step, c.tower_type, c.layer_num, c.ratio], [p.step, p.tower_type, p.layer_num, p.ratio]);
        // the same float32 graphs over the same inputs: equal to 1e-5 relative (the benchmark's bound)
        for (const k of ['locoop_loss', 'loss_id', 'loss_ood'] as const) assert.ok(Math.abs((c[k] as number) - (p[k] as number)) <= 1e-5 * Math.abs(p[k] as number), `${k} of step ${c.step} ratio ${c.ratio}`);
      });
      const slots = searcher === 'visual_only' || searcher === 'text_only' ? 3 : 6;
      checkShape(cached, 4, slots);
      // the cache saved work: ratio 0 is never recomputed after step 0 and layers below the searched one run once per step
      assert.ok(cached.stats.candidatesFromCache > 0);
      assert.ok(cached.stats.visionLayerEvals + cached.stats.textLayerEvals < plain.stats.visionLayerEvals + plain.stats.textLayerEvals);
      assert.equal(plain.stats.candidatesFromCache, 0);
    });
  }

  it('writes the reference files: search_best_results.csv, search_results.json, config_best.json loadable by setar eval', async () => {
    const flags = base('files', { bestScorer: 'gl_mcm_score', bestMetric: 'fpr' });
    const r = await runSearch(resolveSearchConfig(null, flags));
    const out = flags.out!;
    const csv = read(join(out, 'search_best_results.csv')).trim().split('\n');
    assert.equal(csv[0], 'step,tower_type,weight_type,layer_num,best_ratio,gl_mcm_score_fpr*,locoop_loss,loss_id,loss_ood,acc,ood_patch_percent');
    assert.equal(csv.length, 1 + 4);
    assert.match(csv[1]!, /^0,visual,W_up,1,/);
    const results = JSON.parse(read(join(out, 'search_results.json'))) as Record<string, unknown>[];
    assert.equal(results.length, 16);
    for (const k of ['step', 'tower_type', 'weight_type', 'layer_num', 'ratio', 'locoop_loss', 'loss_id', 'loss_ood', 'acc', 'ood_patch_percent', 'gl_mcm_score_fpr', 'gl_mcm_score_auroc']) assert.ok(k in results[0]!, k);
    const best = JSON.parse(read(join(out, 'config_best.json'))) as Record<string, unknown>;
    assert.deepEqual(best.lora_settings, r.lora_settings);
    const ev = resolveEvalConfig(best, { id: `toy=${testId}`, ood: [`ood=${testOod}`], out: join(dir, 'files-eval') });
    assert.deepEqual(ev.lora_settings, r.lora_settings);
    assert.deepEqual(ev.scorers, ['mcm_score', 'gl_mcm_score']);
    assert.ok(existsSync(join(out, 'search.log')));
  });

  it('reads only validation images during the search; the test data only in the final evaluation', async () => {
    const phases: string[] = [];
    let phase = 'none';
    const seen: { phase: string; file: string }[] = [];
    const recording: typeof loadImageBatches = (files, options) => {
      for (const f of files) seen.push({ phase, file: f });
      return loadImageBatches(files, options);
    };
    const r = await runSearch(resolveSearchConfig(null, base('with-test', { testId: `toy=${testId}`, testOod: [`ood=${testOod}`] })), {
      loader: recording,
      onPhase: (p) => { phase = p; phases.push(p); },
    });
    assert.deepEqual(phases, ['load', 'search', 'final-eval']);
    const before = seen.filter((s) => s.phase !== 'final-eval');
    assert.ok(before.length === 12 && before.every((s) => s.file.startsWith(val)), 'the search reads the 12 validation images only');
    assert.ok(r.evaluation, 'final evaluation ran');
    assert.ok(existsSync(join(dir, 'with-test', 'metrics_gl_mcm_score_test.csv')));
    assert.equal(r.evaluation!.id.dataset.files.length, 8);
  });

  it('refuses bad settings before any work', async () => {
    // errors name the flag that gave the value, or the config file and key
    assert.throws(() => resolveSearchConfig(null, base('bad', { candiRatios: [0, 1] })), /--candi-ratios: 1 is outside \[0, 1\)/);
    assert.throws(() => resolveSearchConfig(null, base('bad', { candiRatios: [-0.1] })), /--candi-ratios: -0\.1 is outside \[0, 1\)/);
    assert.throws(() => resolveSearchConfig({ candi_ratios: [0, 2] }, base('bad', { candiRatios: undefined }), 'my.json'), /my\.json: config key "candi_ratios": 2 is outside \[0, 1\)/);
    assert.throws(() => resolveSearchConfig(null, base('bad', { locoopTopK: 0 })), /--locoop-top-k must be a positive integer, got 0/);
    assert.throws(() => resolveSearchConfig({ locoop_top_k: 0 }, base('bad', { locoopTopK: undefined }), 'my.json'), /my\.json: config key "locoop_top_k" must be a positive integer, got 0/);
    assert.throws(() => resolveSearchConfig(null, base('bad', { searcher: 'greedy' })), /unknown searcher "greedy"; valid: visual_text, /);
    assert.throws(() => resolveSearchConfig(null, base('bad', { weightType: 'W_x' })), /unknown weight_type "W_x"/);
    assert.throws(() => resolveSearchConfig(null, base('bad', { bestScorer: 'gl_mcm_score', bestMetric: 'loss_id' })), /must be one of auroc, fpr, aupr/);
    assert.throws(() => resolveSearchConfig({ searcherr: 'x' }, base('bad')), /unknown key\(s\) "searcherr"/);
    let loaded = 0;
    await assert.rejects(runSearch(resolveSearchConfig(null, base('bad', { locoopTopK: 5 })), { loader: (f, o) => { loaded++; return loadImageBatches(f, o); } }), /locoop_top_k 5 exceeds the number of classes \(4\) of toy; it must be in \[1, 4\]/);
    assert.equal(loaded, 0);
  });

  it('runs an official search config unchanged apart from data_root (VOC layout, the paper\'s val list)', async () => {
    const root = join(dir, 'voc');
    const list = JSON.parse(read(dataFile('voc_val_data.json'))) as Record<string, string[]>;
    let k = 0;
    for (const [c, files] of Object.entries(list)) for (const f of files) await writeTestImage(join(root, 'ID_VOC', 'val', c, f), k++);
    const json = JSON.parse(read(join(SHARED, 'reference-configs', 'training_free', 'clip_base', 'ID_VOC', 'SeTAR.json'))) as Record<string, unknown>;
    json.data_root = root;
    // its "device": "cuda" is read; --device wins (an unavailable device is the error tested with the devices)
    assert.equal(resolveSearchConfig(json, { model: MODEL, out: join(dir, 'voc-out') }).device, 'cuda');
    const config = resolveSearchConfig(json, { model: MODEL, out: join(dir, 'voc-out'), device: 'cpu' });
    assert.equal(config.locoop_top_k, 4);
    assert.equal(config.locoop_lambda, 0.05);
    const r = await runSearch(config);
    assert.equal(r.lora_settings.length, 4);
    assert.equal(r.candidates.length, 4 * 9);
    assert.equal(r.evaluation, null); // no DATA_ROOT/ID_VOC/test: the final evaluation is skipped
  });

  it('resumes after the process is killed (SIGKILL) and ends with the same files as an uninterrupted run', async () => {
    const args = (out: string) => [join(REPO_ROOT, 'bin', 'setar.js'), 'search', '--model', MODEL, '--id', `toy=${val}`, '--locoop-top-k', '2', '--no-freeze-proj', '--searcher', 'layer_exhaustive', '--no-cache', '--out', join(dir, out)];
    const run = (out: string, kill?: (p: ReturnType<typeof spawn>) => void) => new Promise<number | null>((resolve) => {
      const p = spawn(process.execPath, args(out), { stdio: 'ignore', env: { ...process.env } });
      kill?.(p);
      p.on('exit', (code) => resolve(code));
    });
    assert.equal(await run('whole'), 0);
    // kill as soon as the first step's state is saved, well before the search ends
    const state = join(dir, 'killed', 'search_state.json');
    let stepsAtKill = -1;
    const code = await run('killed', (p) => {
      const poll = setInterval(() => {
        if (!existsSync(state)) return;
        stepsAtKill = (JSON.parse(read(state)) as { steps: unknown[] }).steps.length;
        p.kill('SIGKILL');
        clearInterval(poll);
      }, 2);
      p.on('exit', () => clearInterval(poll));
    });
    assert.equal(code, null, 'the first run was killed');
    const total = (JSON.parse(read(join(dir, 'whole', 'search_state.json'))) as { steps: unknown[] }).steps.length;
    assert.ok(stepsAtKill >= 1 && stepsAtKill < total, `killed after ${stepsAtKill} of ${total} steps`);
    assert.ok(!existsSync(join(dir, 'killed', 'config_best.json')));
    assert.equal(await run('killed'), 0);
    assert.match(read(join(dir, 'killed', 'search.log')), /resuming after step/);
    for (const f of ['search_results.json', 'search_best_results.csv']) assert.equal(read(join(dir, 'killed', f)), read(join(dir, 'whole', f)), f);
    const strip = (p: string) => ({ ...(JSON.parse(read(p)) as Record<string, unknown>) });
    assert.deepEqual(strip(join(dir, 'killed', 'config_best.json')).lora_settings, strip(join(dir, 'whole', 'config_best.json')).lora_settings);
  });
});
