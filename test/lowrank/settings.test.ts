import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LoraSettingsError, parseLoraSettings, WEIGHT_TYPES, type LowRankSetting as LoraSetting } from '../../src/lowrank/settings.js';
import { clipWeightName } from '../../src/models/clip/weights.js';
import { SHARED } from '../helpers/fixtures.js';

const config = (...parts: string[]) => join(SHARED, 'reference-configs', ...parts);
const readJson = (path: string): unknown => JSON.parse(readFileSync(path, 'utf8'));

describe('parseLoraSettings on the reference configs', () => {
  it('CLIP ViT-B/16 SeTAR+FT: 24 settings, visual 11..0 then text 11..0', () => {
    const path = config('finetune', 'clip_base', 'ID_ImageNet1K', 'SeTAR+FT.json');
    const s = parseLoraSettings(readJson(path), path);
    assert.equal(s.length, 24);
    assert.deepEqual(s[0], ['visual', 'W_up', 11, 0.15]);
    assert.deepEqual(s.slice(0, 12).map((x) => x[2]), [11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]);
    assert.ok(s.slice(12).every((x) => x[0] === 'text'));
  });
  it('CLIP ViT-L/14: 24 visual + 12 text layers', () => {
    const path = config('finetune', 'clip_large', 'ID_ImageNet1K', 'SeTAR+FT.json');
    const s = parseLoraSettings(readJson(path), path);
    assert.equal(s.length, 36);
    assert.deepEqual(s[0], ['visual', 'W_up', 23, 0]);
    // Names resolve with per-tower depths.
    for (const x of s) assert.match(clipWeightName(x, { visual: 24, text: 12 }), /^(vision|text)_model\.encoder\.layers\.\d+\.mlp\.fc1\.weight$/);
  });
  it('Swin: layer is [stage, block]', () => {
    const path = config('finetune', 'swin_base', 'ID_ImageNet1K', 'SeTAR+FT.json');
    const s = parseLoraSettings(readJson(path), path);
    assert.equal(s.length, 24);
    assert.deepEqual(s[0], ['visual', 'W_up', [3, 1], 0.4]);
  });
  it('"lora_settings": null (search configs) gives no settings', () => {
    const path = config('training_free', 'clip_base', 'ID_ImageNet', 'SeTAR.json');
    assert.deepEqual(parseLoraSettings(readJson(path), path), []);
  });
});

describe('parseLoraSettings', () => {
  it('accepts a bare array; W_p takes null or the number the reference writes', () => {
    const s = parseLoraSettings([
      ['visual', 'W_p', null, 0.1],
      ['text', 'W_p', 11, 0.05],
      ['text', 'W_q', 0, 0],
      ['visual', 'W_down', 3, 12],
    ]);
    assert.deepEqual(s, [
      ['visual', 'W_p', null, 0.1],
      ['text', 'W_p', 11, 0.05],
      ['text', 'W_q', 0, 0],
      ['visual', 'W_down', 3, 12],
    ]);
  });

  it('collects every bad entry into one error naming source, index, value and allowed values', () => {
    const bad = {
      lora_settings: [
        ['visual', 'W_up', 11, 0.15],
        ['vision', 'W_up', 11, 0.15],
        ['text', 'W_fc', 2, 0.1],
        ['text', 'W_up', -1, 0.1],
        ['visual', 'W_up', 1, 1.5],
        ['visual', 'W_up', 1],
        ['visual', 'W_p', 'x', 0.1],
        ['text', 'W_up', [1, 2], 0.1],
        ['visual', 'W_up', 2, -0.05],
      ],
    };
    let err: unknown;
    try {
      parseLoraSettings(bad, 'configs/x.json');
    } catch (e) {
      err = e;
    }
    assert.ok(err instanceof LoraSettingsError, 'throws LoraSettingsError');
    assert.equal(err.problems.length, 8);
    const msg = err.message;
    assert.match(msg, /^configs\/x\.json: 8 invalid lora settings:/);
    assert.match(msg, /lora_settings\[1\]: tower "vision" is not one of "visual", "text"/);
    assert.match(msg, /lora_settings\[2\]: weight "W_fc" is not one of "W_q", "W_k", "W_v", "W_o", "W_up", "W_down", "W_p"/);
    assert.match(msg, /lora_settings\[3\]: layer -1 must be an integer >= 0 \(CLIP\) or \[stage, block\] of integers >= 0 \(Swin\)/);
    assert.match(msg, /lora_settings\[4\]: ratio 1\.5 must be a number in \[0, 1\) or an integer rank >= 1/);
    assert.match(msg, /lora_settings\[5\]: expected \[tower, weight, layer, ratio\], got \["visual","W_up",1\]/);
    assert.match(msg, /lora_settings\[6\]: layer "x" of W_p must be null \(W_p has no layer\) or an integer >= 0/);
    assert.match(msg, /lora_settings\[7\]: layer \[1,2\] is a Swin \[stage, block\] index, but the tower is "text"/);
    assert.match(msg, /lora_settings\[8\]: ratio -0\.05 must be/);
    assert.doesNotMatch(msg, /lora_settings\[0\]/);
  });

  it('rejects input that is neither an array nor a config object', () => {
    assert.throws(() => parseLoraSettings({ settings: [] }, 'a.json'), {
      name: 'LoraSettingsError',
      message: /a\.json: .*expected an array of \[tower, weight, layer, ratio\] settings or an object with a 'lora_settings' key; got an object with keys \["settings"\]/,
    });
    assert.throws(() => parseLoraSettings('W_up', 'b.json'), /b\.json: .*expected an array of \[tower, weight, layer, ratio\] settings, got "W_up"/);
    assert.throws(() => parseLoraSettings({ lora_settings: 3 }, 'c.json'), /c\.json: .*expected 'lora_settings' to be an array .*got 3/);
  });
});

describe('clipWeightName', () => {
  const expected: Record<(typeof WEIGHT_TYPES)[number], string> = {
    W_q: 'self_attn.q_proj',
    W_k: 'self_attn.k_proj',
    W_v: 'self_attn.v_proj',
    W_o: 'self_attn.out_proj',
    W_up: 'mlp.fc1',
    W_down: 'mlp.fc2',
    W_p: '',
  };
  it('maps every weight type of both towers to the Hugging Face tensor name', () => {
    for (const w of WEIGHT_TYPES) {
      for (const [tower, prefix] of [['visual', 'vision_model'], ['text', 'text_model']] as const) {
        const name = clipWeightName([tower, w, 7, 0.1], 12);
        const want = w === 'W_p' ? (tower === 'visual' ? 'visual_projection.weight' : 'text_projection.weight') : `${prefix}.encoder.layers.7.${expected[w]}.weight`;
        assert.equal(name, want);
      }
    }
    assert.equal(clipWeightName(['text', 'W_p', null, 0.1], 12), 'text_projection.weight');
  });
  it('a layer out of range is a RangeError with the interval; per-tower depths apply', () => {
    assert.throws(() => clipWeightName(['visual', 'W_up', 12, 0.1], 12), {
      name: 'RangeError',
      message: /layer 12 of \["visual","W_up",12,0\.1\] is out of range: the visual tower has 12 layers, allowed \[0, 11\]/,
    });
    assert.equal(clipWeightName(['visual', 'W_up', 23, 0.1], { visual: 24, text: 12 }), 'vision_model.encoder.layers.23.mlp.fc1.weight');
    assert.throws(() => clipWeightName(['text', 'W_up', 23, 0.1], { visual: 24, text: 12 }), /the text tower has 12 layers, allowed \[0, 11\]/);
  });
  it('a Swin [stage, block] layer is a TypeError', () => {
    const swin: LoraSetting = ['visual', 'W_up', [3, 1], 0.4];
    assert.throws(() => clipWeightName(swin, 12), { name: 'TypeError', message: /layer \[3,1\] .* is not a CLIP layer index \(an integer in \[0, 11\]\)/ });
  });
});
