import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../../../src/io/safetensors.js';
import { SwinV2Model } from '../../../src/models/swinv2/model.js';
import { resolveSearchConfig } from '../../../src/search/config.js';
import { runSearch } from '../../../src/search/greedy.js';
import { tensor, type Tensor } from '../../../src/tensor.js';
import { assertRelMax } from '../../helpers/close.js';
import { fixture } from '../../helpers/fixtures.js';
import { writeTestImage } from '../../helpers/images.js';

const DIR = fixture('swinv2-tiny-a'); // depths [2, 2, 2, 2]: 8 blocks

describe('Swin V2 in pieces (embeddings, block runs, head) equals the whole classifier', () => {
  let model: SwinV2Model;
  let pixels: Tensor<'float32'>;
  before(async () => {
    model = await SwinV2Model.load(DIR, { threads: 2 });
    const ref = SafetensorsFile.open(fixture('swinv2-tiny-a', 'reference.safetensors'));
    const px = ref.read('pixel_values');
    pixels = tensor('float32', px.data as Float32Array, px.shape, 'pixel_values');
    ref.close();
  });
  after(() => model.dispose());

  it('from every block, including across the patch mergings', async () => {
    const whole = await model.classify(pixels);
    assert.equal(model.blockCount, 8);
    let h = await model.embeddings(pixels);
    for (let k = 0; k < model.blockCount; k++) {
      const o = await model.classifyFrom(h, k);
      // the same float32 operations split over sessions: equal to rounding (1e-5 of max magnitude)
      assertRelMax(o.logits.data, whole.logits.data, `logits from block ${k}`, 1e-5);
      assertRelMax(o.logits_local.data, whole.logits_local.data, `logits_local from block ${k}`, 1e-5);
      h = await model.blocks(h, k, k + 1 < model.blockCount ? k + 1 : k);
    }
    await assert.rejects(model.blocks(h, 2, 1), /blocks \[2, 1\) out of range/);
    await assert.rejects(model.classifyFrom(h, 0), /'hidden_states' entering block 0 must be \[batch, \d+, \d+\], got/);
  });
});

describe('the Swin V2 search uses the hidden-state cache', () => {
  let dir = '';
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-swin-cache-'));
    process.env.SETAR_CACHE_DIR = join(dir, 'cache');
    let k = 0;
    for (let c = 0; c < 7; c++) for (let i = 0; i < 2; i++) await writeTestImage(join(dir, 'val', `c${c}`, `${i}.jpg`), k++);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('runs each block below the searched one once per step, not once per candidate', async () => {
    const flags = { model: DIR, id: `toy=${join(dir, 'val')}`, locoopTopK: 3, candiRatios: [0, 0.1, 0.25], batchSize: 8 };
    const cached = await runSearch(resolveSearchConfig(null, { ...flags, out: join(dir, 'cached') }));
    const plain = await runSearch(resolveSearchConfig(null, { ...flags, cache: false, out: join(dir, 'plain') }));
    assert.deepEqual(cached.lora_settings, plain.lora_settings);
    // 8 steps × 3 candidates; no-cache runs all 8 blocks for each of the 24
    assert.equal(plain.stats.visionLayerEvals, 24 * 8);
    // cached: blocks k.. for each candidate that is computed, plus each block below once over the search
    const computed = cached.stats.candidatesEvaluated;
    assert.ok(cached.stats.visionLayerEvals < plain.stats.visionLayerEvals / 2, `cached ${cached.stats.visionLayerEvals} vs ${plain.stats.visionLayerEvals} block runs (${computed} candidates computed)`);
  });
});
