import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { resolveFinetuneConfig, type FinetuneFlags } from '../../src/train/config.js';
import { runFinetune } from '../../src/train/finetune.js';
import { fixture } from '../helpers/fixtures.js';
import { writeTestImage } from '../helpers/images.js';

const MODEL = fixture('swinv2-tiny-a');
const W_UP = 'swinv2.encoder.layers.3.blocks.1.intermediate.dense.weight';

describe('SeTAR+FT and LoRA on Swin V2 (swinv2-tiny-a)', () => {
  let dir = '';
  let val = '';
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-ft-swin-'));
    process.env.SETAR_CACHE_DIR = join(dir, 'cache');
    val = join(dir, 'val');
    let k = 0;
    for (let c = 0; c < 7; c++) for (let i = 0; i < 2; i++) await writeTestImage(join(val, `c${c}`, `${i}.jpg`), k++);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const flags = (out: string, extra: FinetuneFlags): FinetuneFlags => ({ model: MODEL, id: `toy=${val}`, locoopTopK: 2, batchSize: 7, numTrainEpochs: 1, learningRate: 0.1, out: join(dir, out), threads: 1, ...extra });

  /** Max |a − b| per tensor relative to max |a|, and the names that differ. */
  function compare(outDir: string): Map<string, number> {
    const a = SafetensorsFile.open(join(MODEL, 'model.safetensors'));
    const b = SafetensorsFile.open(join(outDir, 'model.safetensors'));
    const rel = new Map<string, number>();
    try {
      for (const name of a.entries.keys()) {
        if (/relative_(coords_table|position_index)$/.test(name)) continue;
        const x = a.readFloat32(name), y = b.readFloat32(name);
        let scale = 0, diff = 0;
        for (let i = 0; i < x.length; i++) {
          scale = Math.max(scale, Math.abs(x[i]!));
          diff = Math.max(diff, Math.abs(x[i]! - y[i]!));
        }
        rel.set(name, diff / Math.max(scale, 1e-30));
      }
    } finally {
      a.close();
      b.close();
    }
    return rel;
  }

  it('defaults to Swin\'s LoCoOp λ 0.01, and K to 0.7 of the classes once they are known (700 of 1,000)', () => {
    const c = resolveFinetuneConfig(null, { model: MODEL, id: `toy=${val}`, loraR: 2, targetModules: ['intermediate.dense'], out: join(dir, 'x') });
    assert.equal(c.locoop_lambda, 0.01);
    assert.equal(c.locoop_top_k, null);
  });

  it('SeTAR+FT at step 0 saves the input model; a few steps change only the adapted weight', async () => {
    const settings = [['visual', 'W_up', [3, 1], 0.25]];
    const r0 = await runFinetune(resolveFinetuneConfig(null, flags('s0', { loraSettings: settings, maxTrainSteps: 0 })));
    assert.equal(r0.steps, 0);
    for (const [name, rel] of compare(r0.modelDir)) assert.ok(rel <= 1e-6, `${name}: ${rel}`);

    const r = await runFinetune(resolveFinetuneConfig(null, flags('s2', { loraSettings: settings, maxTrainSteps: 2 })));
    assert.equal(r.steps, 2);
    for (const row of r.log) assert.ok(Number.isFinite(row.locoop_loss), `loss ${row.locoop_loss}`);
    const changed = [...compare(r.modelDir)].filter(([, rel]) => rel > 1e-6).map(([n]) => n);
    assert.deepEqual(changed, [W_UP]);
  });

  it('LoRA on intermediate.dense trains and changes only those weights', async () => {
    const r = await runFinetune(resolveFinetuneConfig(null, flags('lora', { loraR: 2, loraAlpha: 4, targetModules: ['intermediate.dense'], maxTrainSteps: 2 })));
    assert.equal(r.steps, 2);
    for (const row of r.log) assert.ok(Number.isFinite(row.locoop_loss));
    const changed = [...compare(r.modelDir)].filter(([, rel]) => rel > 1e-6).map(([n]) => n);
    assert.ok(changed.length > 0);
    for (const n of changed) assert.match(n, /\.intermediate\.dense\.weight$/);
  });
});
