import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { ClipPipeline } from '../../src/models/clip/pipeline.js';
import { DEMO_CLIP_CONFIG, trainDemoClip } from '../../src/demo/train-clip.js';
import { fashionImages, digitImages, splitOf, SPLITS } from '../../src/demo/datasets.js';

describe('the demo CLIP recipe (setar train-clip)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'setar-train-clip-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('the packaged datasets split into disjoint train / val / test ranges', () => {
    assert.equal(fashionImages().length, 10);
    assert.ok(fashionImages().every((c) => c.every((img) => img.length === 784)), 'only whole 28x28 images');
    assert.equal(digitImages().length, 10);
    for (const kind of ['fashion', 'digits'] as const) {
      const s = SPLITS[kind];
      assert.ok(s.train[1] <= s.val[0] && s.val[1] <= s.test[0], `${kind} splits are disjoint`);
      const test = splitOf(kind, 'test');
      assert.ok(test.every((c) => c.length > 0 && c.every((img) => img.length === 784)));
    }
  });

  it('still runs: a few steps write an HF-layout F16 model with the tokenizer that setar loads', async () => {
    const out = join(dir, 'model');
    const r = await trainDemoClip({ out, steps: 2, batchSize: 8, learningRate: 1e-3, seed: 0, threads: 1 });
    assert.ok(Number.isFinite(r.finalLoss));
    const f = SafetensorsFile.open(join(out, 'model.safetensors'));
    try {
      assert.equal(f.entry('visual_projection.weight').dtype, 'F16');
      assert.equal(f.entry('logit_scale').dtype, 'F32');
    } finally {
      f.close();
    }
    assert.ok(statSync(join(out, 'model.safetensors')).size <= 16 * 1024 * 1024);
    const clip = await ClipPipeline.load(out, { threads: 1 });
    try {
      assert.equal(clip.model.config.vision_config.image_size, DEMO_CLIP_CONFIG.vision_config.image_size);
      const t = await clip.encodeTexts(['a photo of a T-shirt', 'a photo of a digit seven']);
      assert.deepEqual(t.dims, [2, DEMO_CLIP_CONFIG.projection_dim]);
    } finally {
      await clip.dispose();
    }
  });
});
