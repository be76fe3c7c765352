import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveSearchConfig, type SearchFlags } from '../../src/search/config.js';
import { searchSlots } from '../../src/search/searchers.js';
import { swinSearchSlots } from '../../src/models/swinv2/weights.js';
import { runSearch } from '../../src/search/greedy.js';
import { fixture, SHARED } from '../helpers/fixtures.js';
import { writeTestImage } from '../helpers/images.js';

const SWIN = fixture('swinv2-tiny-a'); // 7 labels, depths [2, 2, 2, 2], 80 px
const CLIP = fixture('clip-tiny-a');
const ORDER = [[3, 1], [3, 0], [2, 1], [2, 0], [1, 1], [1, 0], [0, 1], [0, 0]];

describe('visual_only_swin order', () => {
  it('goes from the last stage and block down', () => {
    assert.deepEqual(swinSearchSlots('W_up', [2, 2, 2, 2]).map((s) => s.layer), ORDER);
    assert.deepEqual(swinSearchSlots('W_up', [2, 2, 18, 2]).slice(0, 3).map((s) => s.layer), [[3, 1], [3, 0], [2, 17]]);
    assert.throws(() => searchSlots('visual_only_swin', 'W_up', { visual: 2, text: 2 }, true), /needs a Swin V2 model/);
  });
});

describe('setar search config for Swin V2', () => {
  const official = JSON.parse(readFileSync(join(SHARED, 'reference-configs/training_free/swin_base/ID_ImageNet/SeTAR.json'), 'utf8')) as Record<string, unknown>;

  it('resolves the official swin_base ImageNet config (model_type SwinTransformerV2, visual_only_swin)', () => {
    const c = resolveSearchConfig(official, { model: SWIN, out: join(tmpdir(), 'unused-swin-out') });
    assert.equal(c.arch, 'swinv2');
    assert.equal(c.searcher, 'visual_only_swin');
    assert.equal(c.locoop_lambda, 0.01);
    assert.equal(c.locoop_top_k, 700);
    assert.equal(c.temperature, 1);
    assert.equal(c.official.model_type, 'SwinTransformerV2');
  });

  it('defaults a Swin model to the Swin searcher, λ 0.01, T 1, and K to 0.7 of the classes (700 of 1,000), resolved with the data', () => {
    const c = resolveSearchConfig(null, { model: SWIN, id: 'x=/nonexistent', out: join(tmpdir(), 'unused-swin-out') });
    assert.deepEqual([c.searcher, c.locoop_lambda, c.locoop_top_k, c.temperature], ['visual_only_swin', 0.01, null, 1]);
  });

  it('rejects searchers and model types of the other family', () => {
    assert.throws(() => resolveSearchConfig(null, { model: SWIN, id: 'x=/nonexistent', searcher: 'visual_text' }), /searcher "visual_text" does not apply to the Swin V2 model.*valid: visual_only_swin/);
    assert.throws(() => resolveSearchConfig(null, { model: CLIP, id: 'x=/nonexistent', searcher: 'visual_only_swin' }), /searcher "visual_only_swin" does not apply to the CLIP model/);
    assert.throws(() => resolveSearchConfig({ model_type: 'SwinTransformerV2' }, { model: CLIP, id: 'x=/nonexistent' }), /model_type "SwinTransformerV2" is not supported but the model .* is a CLIP model/);
    assert.throws(() => resolveSearchConfig({ model_type: 'CLIP' }, { model: SWIN, id: 'x=/nonexistent' }), /model_type "CLIP" is not supported but the model .* is a Swin V2 model/);
  });
});

describe('setar search on swinv2-tiny-a', () => {
  let dir = '';
  let val = '';
  const base = (out: string, extra: SearchFlags = {}): SearchFlags => ({ model: SWIN, id: `toy=${val}`, searcher: 'visual_only_swin', locoopTopK: 3, candiRatios: [0, 0.1, 0.25], batchSize: 8, out: join(dir, out), ...extra });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-search-swin-'));
    process.env.SETAR_CACHE_DIR = join(dir, 'cache');
    val = join(dir, 'val');
    let k = 0;
    for (let c = 0; c < 7; c++) for (let i = 0; i < 2; i++) await writeTestImage(join(val, `c${c}`, `${i}.jpg`), k++);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('searches [stage, block] slots from the last, records every candidate, writes config_best.json', async () => {
    const flags = base('cached');
    const r = await runSearch(resolveSearchConfig(null, flags));
    assert.deepEqual(r.steps.map((s) => s.layer_num), ORDER);
    assert.deepEqual(r.steps.map((s) => s.step), [0, 1, 2, 3, 4, 5, 6, 7]);
    assert.equal(r.candidates.length, 8 * 3);
    for (let s = 0; s < 8; s++) {
      assert.deepEqual(r.candidates.filter((c) => c.step === s).map((c) => [c.layer_num, c.ratio]), [0, 0.1, 0.25].map((x) => [ORDER[s], x]));
    }
    for (const c of r.candidates) for (const k of ['locoop_loss', 'loss_id', 'loss_ood', 'acc', 'ood_patch_percent']) assert.ok(Number.isFinite(c[k] as number), `${k} of step ${c.step}`);
    const best = JSON.parse(readFileSync(join(flags.out!, 'config_best.json'), 'utf8')) as { lora_settings: unknown[][]; searcher: string; model_type: string };
    assert.equal(best.searcher, 'visual_only_swin');
    assert.equal(best.model_type, 'SwinTransformerV2');
    assert.deepEqual(best.lora_settings.map((s) => s.slice(0, 3)), ORDER.map((l) => ['visual', 'W_up', l]));
    assert.deepEqual(best.lora_settings, r.lora_settings.map((s) => [...s]));
    const json = JSON.parse(readFileSync(join(flags.out!, 'search_results.json'), 'utf8')) as { layer_num: unknown }[];
    assert.deepEqual(json[0]!.layer_num, [3, 1]);
    const csv = readFileSync(join(flags.out!, 'search_best_results.csv'), 'utf8').trim().split('\n');
    assert.equal(csv.length, 9);
    assert.match(csv[1]!, /^0,visual,W_up,"\[3,1\]",/);

    // --no-cache: the same decisions and figures (ratio 0 recomputed)
    const plain = await runSearch(resolveSearchConfig(null, { ...flags, cache: false, out: join(dir, 'plain') }));
    assert.deepEqual(plain.lora_settings, r.lora_settings);
    plain.candidates.forEach((c, i) => assert.ok(Math.abs((c.locoop_loss as number) - (r.candidates[i]!.locoop_loss as number)) <= 1e-5 * Math.abs(c.locoop_loss as number)));
    assert.equal(plain.stats.candidatesFromCache, 0);
    assert.ok(r.stats.candidatesFromCache > 0);

    // resuming a finished search redoes nothing
    const again = await runSearch(resolveSearchConfig(null, flags));
    assert.equal(again.resumedFromStep, 8);
    assert.equal(again.stats.candidatesEvaluated, 0);
    assert.deepEqual(again.lora_settings, r.lora_settings);
  });

  it('refuses class folders that do not match the classifier outputs', async () => {
    const few = join(dir, 'few');
    for (let c = 0; c < 3; c++) await writeTestImage(join(few, `c${c}`, '0.jpg'), c);
    await assert.rejects(runSearch(resolveSearchConfig(null, base('few', { id: `few=${few}`, locoopTopK: 2 }))), /has 3 classes but the Swin V2 classifier .* has 7 outputs/);
  });
});
