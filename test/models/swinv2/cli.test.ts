import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { SafetensorsFile } from '../../../src/io/safetensors.js';
import { applyLoraSettings } from '../../../src/lowrank/apply.js';
import { swinWeightName } from '../../../src/models/swinv2/weights.js';
import { modelFamily } from '../../../src/models/registry.js';
import { swinPreprocess } from '../../../src/models/swinv2/preprocess.js';
import { SwinV2Model } from '../../../src/models/swinv2/model.js';
import { defaultTemperature } from '../../../src/models/registry.js';
import { fixture, REPO_ROOT } from '../../helpers/fixtures.js';
import { writeTestImage } from '../../helpers/images.js';

const MODEL = fixture('swinv2-tiny-a');
let dir = '';

function setar(...args: string[]) {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'setar.js'), ...args], { encoding: 'utf8', env: { ...process.env, SETAR_CACHE_DIR: join(dir, 'cache') } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

function read(file: string, name: string): { shape: number[]; data: Float32Array } {
  const f = SafetensorsFile.open(file);
  try {
    return { shape: [...f.entry(name).shape], data: f.readFloat32(name) };
  } finally {
    f.close();
  }
}

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const x of a) m = Math.max(m, Math.abs(x));
  return m;
}

describe('Swin V2 in setar eval / embed', () => {
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'setar-swin-cli-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('dispatches on model_type and preprocesses as timm (88 → 80 for image_size 80)', () => {
    assert.equal(modelFamily(MODEL), 'swinv2');
    assert.equal(modelFamily(fixture('clip-tiny-a')), 'clip');
    assert.deepEqual(swinPreprocess({ image_size: [256, 256] }).resizeTo, 284);
    assert.deepEqual(swinPreprocess({ image_size: [80, 80] }), { resizeTo: 88, cropSize: 80, mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });
    assert.equal(defaultTemperature(MODEL), 1);
    assert.equal(defaultTemperature(fixture('clip-tiny-a')), 100);
    const bad = join(dir, 'bad');
    rmSync(bad, { recursive: true, force: true });
    spawnSync('mkdir', ['-p', bad]);
    writeFileSync(join(bad, 'config.json'), JSON.stringify({ model_type: 'vit' }));
    assert.throws(() => modelFamily(bad), /model_type "vit" is not supported; known model types: "clip", "swinv2"/);
  });

  it('maps Swin settings to HF names', () => {
    const d = [2, 2, 18, 2];
    assert.equal(swinWeightName(['visual', 'W_up', [3, 1], 0.1], d), 'swinv2.encoder.layers.3.blocks.1.intermediate.dense.weight');
    assert.equal(swinWeightName(['visual', 'W_q', [2, 17], 0.1], d), 'swinv2.encoder.layers.2.blocks.17.attention.self.query.weight');
    assert.equal(swinWeightName(['visual', 'W_k', [0, 0], 0.1], d), 'swinv2.encoder.layers.0.blocks.0.attention.self.key.weight');
    assert.equal(swinWeightName(['visual', 'W_v', [0, 0], 0.1], d), 'swinv2.encoder.layers.0.blocks.0.attention.self.value.weight');
    assert.equal(swinWeightName(['visual', 'W_o', [0, 0], 0.1], d), 'swinv2.encoder.layers.0.blocks.0.attention.output.dense.weight');
    assert.equal(swinWeightName(['visual', 'W_down', [1, 1], 0.1], d), 'swinv2.encoder.layers.1.blocks.1.output.dense.weight');
    assert.throws(() => swinWeightName(['visual', 'W_up', [2, 18], 0.1], d), /block 18 .* stage 2 has 18 blocks/);
    assert.throws(() => swinWeightName(['visual', 'W_up', [4, 0], 0.1], d), /stage 4 .* 4 stages/);
    assert.throws(() => swinWeightName(['visual', 'W_up', 3, 0.1], d), /not a Swin \[stage, block\] index/);
    assert.throws(() => swinWeightName(['text', 'W_up', [0, 0], 0.1], d), /only the "visual" tower/);
  });

  it('a Swin lora setting changes exactly the named weight', async () => {
    const model = await SwinV2Model.load(MODEL);
    try {
      const changed = await applyLoraSettings(model, [['visual', 'W_up', [3, 1], 0.25]], { cacheDir: join(dir, 'cache') });
      const name = 'swinv2.encoder.layers.3.blocks.1.intermediate.dense.weight';
      assert.deepEqual(changed, [name]);
      assert.deepEqual(model.replacedWeights(), [name]);
      const w = model.getWeight(name);
      const w0 = model.getOriginalWeight(name);
      assert.ok(w.some((x, i) => x !== w0[i]));
    } finally {
      await model.dispose();
    }
  });

  it('setar embed --pixel-values reproduces the reference logits and logits_local', () => {
    const out = join(dir, 'embed.safetensors');
    const r = setar('embed', '--model', MODEL, '--pixel-values', join(MODEL, 'reference.safetensors'), '--out', out);
    assert.equal(r.code, 0, r.stderr);
    for (const [mine, ref] of [['logits', 'logits'], ['logits_local', 'logits_local']] as const) {
      const a = read(out, mine);
      const b = read(join(MODEL, 'reference.safetensors'), ref);
      assert.deepEqual(a.shape, b.shape);
      const tol = 1e-4 * maxAbs(b.data);
      for (let i = 0; i < a.data.length; i++) assert.ok(Math.abs(a.data[i]! - b.data[i]!) <= tol, `${mine}[${i}]: ${a.data[i]} vs ${b.data[i]}`);
    }
    const t = setar('embed', '--model', MODEL, '--pixel-values', join(MODEL, 'reference.safetensors'), '--texts', join(MODEL, 'config.json'), '--out', out);
    assert.equal(t.code, 1);
    assert.match(t.stderr, /no text tower/);
  });

  it('setar eval end to end: 7 class folders ↔ 7 outputs, lora settings, T = 1', async () => {
    const id = join(dir, 'id');
    const ood = join(dir, 'ood');
    let k = 0;
    for (let c = 0; c < 7; c++) for (let i = 0; i < 2; i++) await writeTestImage(join(id, `c${c}`, `${i}.png`), k++, { width: 100, height: 90 });
    for (let i = 0; i < 5; i++) await writeTestImage(join(ood, `o${i}.jpg`), 100 + i);
    const settings = join(dir, 'settings.json');
    writeFileSync(settings, JSON.stringify([['visual', 'W_up', [3, 1], 0.25]]));
    const out = join(dir, 'out');
    const r = setar('eval', '--model', MODEL, '--id', `ID_toy=${id}`, '--ood', `OOD_A=${ood}`, '--scorers', 'mcm_score,energy_score,gl_mcm_score',
      '--lora-settings', settings, '--batch-size', '4', '--out', out);
    assert.equal(r.code, 0, r.stderr);
    const cfg = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    assert.equal(cfg.temperature, 1);
    assert.match(readFileSync(join(out, 'eval.log'), 'utf8'), /1 weights replaced/);
    const rows = parse(readFileSync(join(out, 'scores_ID_toy_test.csv'), 'utf8')) as string[][];
    assert.deepEqual(rows[0], ['image', 'mcm_score', 'energy_score', 'gl_mcm_score']);
    assert.equal(rows.length, 15);
    for (const row of rows.slice(1)) {
      const mcm = Number(row[1]);
      assert.ok(mcm <= -1 / 7 + 1e-9 && mcm >= -1, `MSP score ${mcm}`);
    }
    assert.ok(existsSync(join(out, 'metrics_mcm_score_test.csv')));

    // a count mismatch names both counts
    rmSync(join(id, 'c6'), { recursive: true });
    const m = setar('eval', '--model', MODEL, '--id', `ID_toy=${id}`, '--ood', `OOD_A=${ood}`, '--out', join(dir, 'out2'));
    assert.equal(m.code, 1);
    assert.match(m.stderr, /6 classes but the Swin V2 classifier .* has 7 outputs/);
  });
});
