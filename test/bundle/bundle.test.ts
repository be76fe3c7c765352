import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { createBundle, Detector, type BundleManifest } from '../../src/bundle/bundle.js';
import { resolveEvalConfig } from '../../src/eval/config.js';
import { runEval } from '../../src/eval/run-eval.js';
import { fixture } from '../helpers/fixtures.js';
import { writeTestImage } from '../helpers/images.js';

const MODEL = fixture('clip-tiny-a');

describe('setar bundle: a detector with its threshold from ID validation images', () => {
  let dir = '';
  let val = '';
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-bundle-'));
    process.env.SETAR_CACHE_DIR = join(dir, 'cache');
    val = join(dir, 'val');
    let k = 0;
    for (const c of ['bird', 'cat', 'dog']) for (let i = 0; i < 7; i++) await writeTestImage(join(val, c, `${i}.jpg`), k++);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes the ONNX image tower, text features, bundle.json and recipe.json; its scores equal setar eval\'s', async () => {
    const out = join(dir, 'bundle');
    const settings = [['visual', 'W_up', 1, 0.25]] as const;
    const m = await createBundle({ model: MODEL, id: { kind: 'folder', name: 'toy', root: val }, loraSettings: settings, scorer: 'gl_mcm_score', tpr: 0.9, out, threads: 1 });
    for (const f of ['image_encoder.onnx', 'text_features.safetensors', 'bundle.json', 'recipe.json']) assert.ok(existsSync(join(out, f)), f);
    const manifest = JSON.parse(readFileSync(join(out, 'bundle.json'), 'utf8')) as BundleManifest;
    assert.deepEqual(manifest, JSON.parse(JSON.stringify(m)));
    assert.deepEqual(manifest.labels, ['bird', 'cat', 'dog']);
    assert.equal(manifest.validation_images, 21);
    const recipe = JSON.parse(readFileSync(join(out, 'recipe.json'), 'utf8')) as { checkpoint: Record<string, string>; validation: { images: number } };
    assert.match(recipe.checkpoint['model.safetensors']!, /^[0-9a-f]{64}$/);
    assert.equal(recipe.validation.images, 21);

    // the same images through setar eval with the same settings: the bundle reproduces its scores
    const ev = await runEval(resolveEvalConfig(null, { model: MODEL, id: `toy=${val}`, ood: [`o=${val}`], scorers: ['mcm_score', 'gl_mcm_score'], loraSettings: settings, out: join(dir, 'eval'), threads: 1 }));
    const rows = parse(readFileSync(join(dir, 'eval', 'scores_toy_test.csv'), 'utf8')) as string[][];
    const detector = await Detector.load(out, { threads: 1 });
    try {
      const scores: number[] = [];
      for (const row of rows.slice(1)) {
        const v = await detector.scoreImage(new Uint8Array(readFileSync(join(val, row[0]!))), row[0]);
        // float64 JS logits against ORT's float32 MatMul: 1e-5 relative
        assert.ok(Math.abs(v.scores.gl_mcm_score! - Number(row[2])) <= 1e-5 * Math.abs(Number(row[2])), `${row[0]}: ${v.scores.gl_mcm_score} vs ${row[2]}`);
        assert.ok(Math.abs(v.scores.mcm_score! - Number(row[1])) <= 1e-5 * Math.abs(Number(row[1])));
        assert.equal(v.patch_map.length, 4);
        assert.equal(v.patch_map[0]!.length, 4);
        assert.equal(v.top.length, 3);
        assert.equal(v.ood, v.scores.gl_mcm_score! > m.threshold);
        scores.push(v.scores.gl_mcm_score!);
      }
      // the threshold accepts ceil(0.9·21) = 19 of the 21 validation images
      assert.equal(scores.filter((s) => s <= m.threshold).length, 19);
      assert.ok(ev.id.dataset.files.length === 21);
    } finally {
      await detector.release();
    }
  });

  it('names what is wrong: not a bundle, a bad TPR, an unknown scorer', async () => {
    await assert.rejects(Detector.load(dir), /is not a setar bundle: image_encoder\.onnx is missing/);
    await assert.rejects(createBundle({ model: MODEL, id: { kind: 'folder', name: 'toy', root: val }, tpr: 1.5, out: join(dir, 'b2') }), /--tpr must be in \(0, 1\), got 1\.5/);
    await assert.rejects(createBundle({ model: MODEL, id: { kind: 'folder', name: 'toy', root: val }, scorer: 'msp', out: join(dir, 'b3') }), /unknown scorer "msp"/);
  });
});
