import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { resolveEvalConfig } from '../../src/eval/config.js';
import { resolveSearchConfig } from '../../src/search/config.js';
import { fixture, SHARED } from '../helpers/fixtures.js';
import { join } from 'node:path';

const MODEL = fixture('clip-tiny-a');

describe('setar eval configuration', () => {
  it('accepts the official configs unchanged apart from the model and data_root', () => {
    for (const f of ['training_free/clip_base/ID_ImageNet/Vanilla_MCM.json', 'training_free/clip_base/ID_VOC/Vanilla_GL_MCM.json', 'training_free/clip_large/ID_ImageNet/Vanilla_GL_MCM.json']) {
      const json = JSON.parse(readFileSync(join(SHARED, 'reference-configs', f), 'utf8')) as Record<string, unknown>;
      const c = resolveEvalConfig(json, { model: MODEL, dataRoot: '/data' }, f);
      assert.equal(c.id.kind, 'benchmark');
      assert.equal(c.split, 'test');
      assert.equal(c.temperature, 100);
      assert.equal(c.recall_level, 0.95);
      assert.equal(c.batch_size, json.batch_size);
      assert.deepEqual(c.scorers, json.scorers);
      // log_directory's {args.id_dataset}/{args.exp_name} placeholders become the output folder
      assert.match(c.out, new RegExp(`results/training-free/clip_(base|large)/${String(json.id_dataset)}/${String(json.exp_name)}$`));
    }
  });

  it('takes lora_settings from a config or a flag, with lora_svd_init_type', () => {
    const c = resolveEvalConfig({ lora_svd_init: true, lora_svd_init_type: 'large', lora_settings: [['visual', 'W_up', 1, 0.15]] }, { model: MODEL, id: `ID=${MODEL}`, ood: [`O=${MODEL}`], out: '/tmp/x' });
    assert.deepEqual(c.lora_settings, [['visual', 'W_up', 1, 0.15]]);
    assert.equal(c.lora_svd_init_type, 'large');
    const off = resolveEvalConfig({ lora_svd_init: false, lora_settings: [['visual', 'W_up', 1, 0.15]] }, { model: MODEL, id: `ID=${MODEL}`, ood: [`O=${MODEL}`], out: '/tmp/x' });
    assert.equal(off.lora_settings, null);
  });

  it('clip_ckpt (the official key, or --clip-ckpt which wins) is resolved to an absolute path; null means none', () => {
    const base = { model: MODEL, id: `ID=${MODEL}`, ood: [`O=${MODEL}`], out: '/tmp/x' };
    assert.equal(resolveEvalConfig({ clip_ckpt: 'runs/finetuned_model.pth' }, base).clip_ckpt, join(process.cwd(), 'runs/finetuned_model.pth'));
    assert.equal(resolveEvalConfig({ clip_ckpt: 'a.pth' }, { ...base, clipCkpt: '/abs/b.pth' }).clip_ckpt, '/abs/b.pth');
    assert.equal(resolveEvalConfig({ clip_ckpt: null }, base).clip_ckpt, undefined);
    assert.equal('clip_ckpt' in resolveEvalConfig(null, base), false);
    assert.throws(() => resolveEvalConfig({ clip_ckpt: 3 }, base), /config key "clip_ckpt" must be a checkpoint file path \(or null\), got 3/);
    // The search carries it to its model, its final evaluation and config_best.json.
    const s = resolveSearchConfig({ clip_ckpt: '/abs/c.pth' }, { model: MODEL, id: `ID=${MODEL}`, out: '/tmp/x' });
    assert.equal(s.clip_ckpt, '/abs/c.pth');
    assert.equal(s.official.clip_ckpt, '/abs/c.pth');
  });

  it('names unknown keys, bad values, unknown scorers and missing inputs', () => {
    const base = { model: MODEL, id: `ID=${MODEL}`, ood: [`O=${MODEL}`], out: '/tmp/x' };
    assert.throws(() => resolveEvalConfig({ scorerz: ['mcm_score'] }, base, 'my.json'), /my\.json: unknown key\(s\) "scorerz"; accepted: data_root, /);
    assert.throws(() => resolveEvalConfig({ temperature: -1 }, base), /config key "temperature" must be a positive number, got -1/);
    assert.throws(() => resolveEvalConfig({ scorers: ['msp'] }, base), /unknown scorer\(s\) "msp"; valid scorers: mcm_score, l_mcm_score, gl_mcm_score/);
    assert.throws(() => resolveEvalConfig({ lora_svd_init_type: 'medium' }, base), /"lora_svd_init_type" must be one of small, large, random/);
    assert.throws(() => resolveEvalConfig({ model_type: 'SwinV2' }, base), /model_type "SwinV2" is not supported yet/);
    assert.throws(() => resolveEvalConfig({ model_name: 'openai/clip-vit-base-patch16' }, { ...base, model: undefined }), /"openai\/clip-vit-base-patch16" is not a local directory; resolve a hub id to its cached folder first \(resolveModel\), or pass --model DIR/);
    assert.throws(() => resolveEvalConfig(null, { ...base, ood: [] }), /no OOD data: give --ood NAME=DIR/);
    assert.throws(() => resolveEvalConfig(null, { ...base, id: 'nodir' }), /--id expects NAME=DIR, got 'nodir'/);
    assert.throws(() => resolveEvalConfig({ id_dataset: 'ID_VOC' }, { model: MODEL, out: '/tmp/x' }), /benchmark ID_VOC needs a data root: --data-root DIR/);
  });
});
