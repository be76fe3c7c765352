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

const MODEL = fixture('swinv2-tiny-a');
const CLASSES = ['c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6'];

describe('setar bundle for a Swin V2 classifier', () => {
  let dir = '';
  let val = '';
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-swin-bundle-'));
    process.env.SETAR_CACHE_DIR = join(dir, 'cache');
    val = join(dir, 'val');
    let k = 0;
    for (const c of CLASSES) for (let i = 0; i < 2; i++) await writeTestImage(join(val, c, `${i}.jpg`), k++);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('bakes the classifier into image_encoder.onnx; its scores equal setar eval\'s', async () => {
    const out = join(dir, 'bundle');
    const m = await createBundle({ model: MODEL, id: { kind: 'folder', name: 'toy', root: val }, scorer: 'mcm_score', tpr: 0.9, out, threads: 1 });
    for (const f of ['image_encoder.onnx', 'bundle.json', 'recipe.json']) assert.ok(existsSync(join(out, f)), f);
    assert.ok(!existsSync(join(out, 'text_features.safetensors')));
    const manifest = JSON.parse(readFileSync(join(out, 'bundle.json'), 'utf8')) as BundleManifest;
    assert.deepEqual(manifest, JSON.parse(JSON.stringify(m)));
    assert.equal(manifest.head, 'classifier');
    assert.deepEqual(manifest.labels, CLASSES);
    assert.deepEqual(manifest.templates, []);
    assert.equal(manifest.temperature, 1);
    assert.equal(manifest.validation_images, 14);
    assert.deepEqual(manifest.preprocess, { size: 80, resize_to: 88, resample: 'bicubic (Pillow)', mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });

    await runEval(resolveEvalConfig(null, { model: MODEL, id: `toy=${val}`, ood: [`o=${val}`], scorers: ['mcm_score', 'gl_mcm_score'], out: join(dir, 'eval'), threads: 1 }));
    const rows = parse(readFileSync(join(dir, 'eval', 'scores_toy_test.csv'), 'utf8')) as string[][];
    assert.equal(rows.length, 15);
    const detector = await Detector.load(out, { threads: 1 });
    try {
      const scores: number[] = [];
      for (const row of rows.slice(1)) {
        const v = await detector.scoreImage(new Uint8Array(readFileSync(join(val, row[0]!))), row[0]);
        assert.ok(Math.abs(v.scores.mcm_score! - Number(row[1])) <= 1e-5 * Math.abs(Number(row[1])), `${row[0]}: ${v.scores.mcm_score} vs ${row[1]}`);
        assert.ok(Math.abs(v.scores.gl_mcm_score! - Number(row[2])) <= 1e-5 * Math.abs(Number(row[2])), `${row[0]}: ${v.scores.gl_mcm_score} vs ${row[2]}`);
        assert.equal(v.patch_map.length, manifest.grid);
        assert.equal(v.patch_map[0]!.length, manifest.grid);
        assert.equal(v.top.length, 5);
        assert.ok(CLASSES.includes(v.label));
        assert.equal(v.ood, v.scores.mcm_score! > m.threshold);
        scores.push(v.scores.mcm_score!);
      }
      // the threshold accepts ceil(0.9·14) = 13 of the 14 validation images
      assert.equal(scores.filter((s) => s <= m.threshold).length, Math.ceil(0.9 * 14));
    } finally {
      await detector.release();
    }
  });
});
