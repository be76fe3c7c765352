import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { SwinV2Model } from '../../../src/models/swinv2/model.js';
import { parseSwinV2Config } from '../../../src/models/swinv2/config.js';
import { relativeCoordsTable, relativePositionBias, relativePositionIndex, shiftMask } from '../../../src/models/swinv2/graph.js';
import { blockPrefix, wUpName } from '../../../src/models/swinv2/weights.js';
import { SafetensorsFile } from '../../../src/io/safetensors.js';
import { lowRankApprox } from '../../../src/lowrank/lowrank.js';
import { tensor, type Tensor } from '../../../src/tensor.js';
import { fixture } from '../../helpers/fixtures.js';
import { assertRelMax } from '../../helpers/close.js';

// The swinv2-tiny-a README's criterion: float32 against the float64 reference, per tensor,
// max |x − ref| ≤ 1e-4 · max |ref| (PyTorch's own float32 run reaches ≤ 7.2e-6).
const REL = 1e-4;
const DIR = fixture('swinv2-tiny-a');

interface PlanRow {
  stage: number; block: number; construction_resolution: number[]; resolution: number[]; window_size: number; shift_size: number;
  padded_resolution: number[]; num_windows: number; pretrained_window_size: number; num_heads: number; dim: number;
}

describe('Swin V2 on ONNX Runtime: parity with HF transformers (swinv2-tiny-a)', () => {
  let model: SwinV2Model;
  let ref: SafetensorsFile;
  let pixels: Tensor<'float32'>;
  const ratios: Record<string, number> = {};
  const f64 = (n: string) => ref.read(n).data as Float64Array;
  const refJson = JSON.parse(readFileSync(fixture('swinv2-tiny-a', 'reference.json'), 'utf8')) as {
    block_plan: PlanRow[]; pruning: Array<{ setting: [string, string, [number, number], number]; hf_name: string }>;
    pruning2: Array<{ setting: [string, string, [number, number], number]; hf_name: string }>;
  };

  before(async () => {
    model = await SwinV2Model.load(DIR, { threads: 2 });
    ref = SafetensorsFile.open(fixture('swinv2-tiny-a', 'reference.safetensors'));
    const px = ref.read('pixel_values');
    pixels = tensor('float32', px.data as Float32Array, px.shape, 'pixel_values');
  });
  after(async () => {
    await model.dispose();
    ref.close();
    console.log(`swinv2-tiny-a parity (max |x − ref| / max |ref|): ${JSON.stringify(ratios)}`);
  });

  it('parses the config', () => {
    const c = model.config;
    assert.deepEqual(c.image_size, [80, 80]);
    assert.deepEqual(c.depths, [2, 2, 2, 2]);
    assert.deepEqual(c.pretrained_window_sizes, [0, 3, 0, 0]);
    assert.equal(model.numLabels, 7);
    const d = parseSwinV2Config({ model_type: 'swinv2' });
    assert.equal(d.embed_dim, 96);
    assert.equal(d.window_size, 7);
    assert.deepEqual(d.num_heads, [3, 6, 12, 24]);
    assert.throws(() => parseSwinV2Config({ model_type: 'swinv2', depths: 'x' }), /"depths"/);
    assert.throws(() => parseSwinV2Config({ model_type: 'vit' }), /model_type/);
    assert.throws(() => parseSwinV2Config({ hidden_act: 'mish' }), /"hidden_act"/);
  });

  it('matches the per-block window/shift/padding plan', () => {
    const plan = model.plan();
    assert.equal(plan.length, refJson.block_plan.length);
    plan.forEach((p, i) => {
      const r = refJson.block_plan[i]!;
      assert.deepEqual(
        [p.stage, p.block, p.constructionResolution, p.resolution, p.windowSize, p.shiftSize, p.paddedResolution, p.numWindows, p.pretrainedWindowSize, p.heads, p.dim],
        [r.stage, r.block, r.construction_resolution, r.resolution, r.window_size, r.shift_size, r.padded_resolution, r.num_windows, r.pretrained_window_size, r.num_heads, r.dim],
        `block ${i}`,
      );
    });
  });

  it('computes the buffers: coords tables, indices, position biases, shift masks', () => {
    const src = (n: string) => model.getWeight(n);
    for (const p of model.plan()) {
      const s = p.stage;
      assertRelMax(relativeCoordsTable(p.windowSize, p.pretrainedWindowSize), f64(`relative_coords_table.${s}`), `relative_coords_table.${s}`, 1e-12);
      const idx = ref.read(`relative_position_index.${s}`).data as BigInt64Array;
      assert.deepEqual([...relativePositionIndex(p.windowSize)], [...idx].map(Number), `relative_position_index.${s}`);
      const bias = relativePositionBias(src, `${blockPrefix(s, p.block)}.attention.self`, p.windowSize, p.pretrainedWindowSize, p.heads);
      assertRelMax(bias, f64(`relative_position_bias.${s}.${p.block}`), `relative_position_bias.${s}.${p.block}`, 1e-10);
      if (p.shiftSize > 0) {
        const m = shiftMask(p.paddedResolution[0], p.paddedResolution[1], p.windowSize, p.shiftSize);
        assert.deepEqual([...m], [...f64(`attn_mask.${s}.${p.block}`)], `attn_mask.${s}.${p.block}`);
      }
    }
  });

  const check = (out: { logits: Tensor<'float32'>; logits_local: Tensor<'float32'> }, prefix: string) => {
    assert.deepEqual([...out.logits.dims], [...ref.entry(`${prefix}logits`).shape]);
    assert.deepEqual([...out.logits_local.dims], [...ref.entry(`${prefix}logits_local`).shape]);
    ratios[`${prefix}logits`] = assertRelMax(out.logits.data, f64(`${prefix}logits`), `${prefix}logits`, REL);
    ratios[`${prefix}logits_local`] = assertRelMax(out.logits_local.data, f64(`${prefix}logits_local`), `${prefix}logits_local`, REL);
  };

  it('reproduces logits and SeTAR logits_local', async () => {
    const out = await model.classify(pixels);
    assert.deepEqual([...out.logits_local.dims], [4, 3, 3, 7]);
    check(out, '');
  });

  it('reproduces the pruned variants (W_up swapped with setWeight)', async () => {
    for (const [prefix, list] of [['pruned_', refJson.pruning], ['pruned2_', refJson.pruning2]] as const) {
      for (const item of list) {
        const [s, b] = item.setting[2];
        assert.equal(item.hf_name, wUpName(s, b));
        model.setWeight(item.hf_name, Float32Array.from(f64(`${prefix}w_up.${s}.${b}`)));
      }
      check(await model.classify(pixels), prefix);
      model.resetWeight();
    }
    // Back to the checkpoint's weights.
    const out = await model.classify(pixels);
    assertRelMax(out.logits.data, f64('logits'), 'logits after reset', REL);
  });

  it('reproduces the pruned variants with W_up pruned by setar\'s own SVD (small mode)', async () => {
    for (const [prefix, list] of [['pruned_', refJson.pruning], ['pruned2_', refJson.pruning2]] as const) {
      for (const item of list) {
        const [s, b] = item.setting[2];
        const shape = model.weightShape(item.hf_name) as [number, number];
        const w = lowRankApprox({ weight: model.getOriginalWeight(item.hf_name), shape, ratio: item.setting[3], mode: 'small', name: item.hf_name });
        assertRelMax(w, f64(`${prefix}w_up.${s}.${b}`), `${prefix}w_up.${s}.${b}`, 1e-6);
        model.setWeight(item.hf_name, w);
      }
      const out = await model.classify(pixels);
      ratios[`${prefix}logits (own SVD)`] = assertRelMax(out.logits.data, f64(`${prefix}logits`), `${prefix}logits (own SVD)`, REL);
      ratios[`${prefix}logits_local (own SVD)`] = assertRelMax(out.logits_local.data, f64(`${prefix}logits_local`), `${prefix}logits_local (own SVD)`, REL);
      model.resetWeight();
    }
  });

  it('getWeight / getOriginalWeight / weightShape', () => {
    const n = wUpName(3, 1);
    assert.deepEqual(model.weightShape(n), [512, 128]);
    const w = model.getOriginalWeight(n);
    model.setWeight(n, new Float32Array(w.length));
    assert.equal(model.getWeight(n)[0], 0);
    assert.equal(model.getOriginalWeight(n)[0], w[0]);
    model.resetWeight(n);
    assert.equal(model.getWeight(n)[0], w[0]);
    assert.throws(() => model.weightShape('swinv2.encoder.layers.0.blocks.0.attention.self.relative_coords_table'), /not a weight/);
    assert.throws(() => model.setWeight(n, new Float32Array(3)), /needs/);
  });
});
