import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ClipModel } from '../../../src/models/clip/model.js';
import { clipLogits } from '../../../src/models/clip/logits.js';
import { SafetensorsFile } from '../../../src/io/safetensors.js';
import { tensor, type Tensor } from '../../../src/tensor.js';
import { fixture } from '../../helpers/fixtures.js';
import { assertRelMax } from '../../helpers/close.js';

// Tolerance from the fixture README: float32 against the float64 reference, per tensor,
// max |x − ref| ≤ 1e-5 · max |ref| (PyTorch's own float32 run reaches ≤ 1.2e-6).
const REL = 1e-5;
const DIR = fixture('clip-tiny-a');

describe('CLIP on ONNX Runtime: parity with OpenAI CLIP (clip-tiny-a)', () => {
  let model: ClipModel;
  let ref: SafetensorsFile;
  let pixels: Tensor<'float32'>;
  let ids: { ids: Int32Array; batch: number; length: number };
  const f64 = (n: string) => ref.read(n).data as Float64Array;

  before(async () => {
    model = await ClipModel.load(DIR, { threads: 1 });
    ref = SafetensorsFile.open(fixture('clip-tiny-a', 'reference.safetensors'));
    const px = ref.read('pixel_values');
    pixels = tensor('float32', px.data as Float32Array, px.shape, 'pixel_values');
    ids = { ids: ref.read('input_ids').data as Int32Array, batch: 6, length: 77 };
  });
  after(async () => {
    await model.dispose();
    ref.close();
  });

  it('reads config and logit_scale', () => {
    assert.equal(model.grid, 4);
    assert.equal(model.logitScale, Math.fround(4.605170249938965));
  });

  it('image_embeds and image_embeds_local', async () => {
    const out = await model.encodeImages(pixels);
    assert.deepEqual(out.image_embeds.dims, [5, 40]);
    assert.deepEqual(out.image_embeds_local!.dims, [5, 4, 4, 40]);
    assertRelMax(out.image_embeds.data, f64('image_embeds'), 'image_embeds', REL);
    assertRelMax(out.image_embeds_local!.data, f64('image_embeds_local'), 'image_embeds_local', REL);
  });

  it('vision intermediates: embeddings → pre_layrnorm', async () => {
    const h = await model.visionEmbeddings(pixels);
    assert.deepEqual(h.dims, [5, 17, 64]);
    assertRelMax(h.data, f64('vision_pre_layrnorm_output'), 'vision_pre_layrnorm_output', REL);
  });

  it('text_embeds, OpenAI padding (0) and HF padding (49407) alike', async () => {
    const t = await model.encodeTokenIds(ids);
    assert.deepEqual(t.dims, [6, 40]);
    assertRelMax(t.data, f64('text_embeds'), 'text_embeds', REL);
    const hf = ref.read('input_ids_hf').data as BigInt64Array;
    const t2 = await model.encodeTokenIds({ ids: hf, batch: 6, length: 77 });
    assertRelMax(t2.data, f64('text_embeds'), 'text_embeds (HF ids)', REL);
  });

  it('pool positions follow transformers (first end token)', () => {
    assert.deepEqual([...model.poolPositions(ids)], [7, 11, 11, 7, 1, 76]);
  });

  it('logits_per_image and logits_per_image_local', async () => {
    const img = await model.encodeImages(pixels);
    const txt = await model.encodeTokenIds(ids);
    assertRelMax(clipLogits(img.image_embeds, txt, model.logitScale).data, f64('logits_per_image'), 'logits_per_image', REL);
    assertRelMax(clipLogits(img.image_embeds_local!, txt, model.logitScale).data, f64('logits_per_image_local'), 'logits_per_image_local', REL);
  });

  it('replacing weights at run time gives the pruned_* outputs, and resetting restores', async () => {
    const vName = 'vision_model.encoder.layers.0.mlp.fc1.weight';
    const tName = 'text_model.encoder.layers.1.mlp.fc1.weight';
    model.setWeight(vName, Float32Array.from(f64('pruned_vision_fc1_weight')));
    model.setWeight(tName, Float32Array.from(f64('pruned_text_fc1_weight')));
    const img = await model.encodeImages(pixels);
    const txt = await model.encodeTokenIds(ids);
    assertRelMax(img.image_embeds.data, f64('pruned_image_embeds'), 'pruned_image_embeds', REL);
    assertRelMax(img.image_embeds_local!.data, f64('pruned_image_embeds_local'), 'pruned_image_embeds_local', REL);
    assertRelMax(txt.data, f64('pruned_text_embeds'), 'pruned_text_embeds', REL);
    assertRelMax(clipLogits(img.image_embeds, txt, model.logitScale).data, f64('pruned_logits_per_image'), 'pruned_logits_per_image', REL);
    assertRelMax(clipLogits(img.image_embeds_local!, txt, model.logitScale).data, f64('pruned_logits_per_image_local'), 'pruned_logits_per_image_local', REL);
    model.resetWeight();
    const back = await model.encodeImages(pixels);
    assertRelMax(back.image_embeds.data, f64('image_embeds'), 'image_embeds after reset', REL);
  });

  it('runs a tower from a given layer on cached hidden states', async () => {
    const h0 = await model.visionEmbeddings(pixels);
    const h1 = await model.visionLayers(h0, 0, 1);
    const out = await model.visionFrom(h1, 1);
    assertRelMax(out.image_embeds.data, f64('image_embeds'), 'image_embeds from layer 1', REL);
    const te = await model.textEmbeddings(ids);
    const t1 = await model.textLayers(te, 0, 1);
    const txt = await model.textFrom(t1, 1, model.poolPositions(ids));
    assertRelMax(txt.data, f64('text_embeds'), 'text_embeds from layer 1', REL);
  });

  it('splits large image batches without changing results', async () => {
    const small = await ClipModel.load(DIR, { threads: 1, maxVisionBatch: 2 });
    try {
      const out = await small.encodeImages(pixels);
      assertRelMax(out.image_embeds.data, f64('image_embeds'), 'image_embeds (micro-batches of 2)', REL);
    } finally {
      await small.dispose();
    }
  });

  it('rejects wrong shapes and non-finite weights with the tensor named', async () => {
    await assert.rejects(model.encodeImages(tensor('float32', new Float32Array(3 * 16 * 16), [1, 3, 16, 16])), /'pixel_values' must be \[batch, 3, 32, 32\], got \[1, 3, 16, 16\]/);
    assert.throws(() => model.setWeight('vision_model.encoder.layers.0.mlp.fc1.weight', new Float32Array(5)), /setWeight\('vision_model.encoder.layers.0.mlp.fc1.weight'\): 5 values given, shape \[256, 64\] needs 16384/);
    const bad = new Float32Array(256 * 64);
    bad[7] = NaN;
    assert.throws(() => model.setWeight('vision_model.encoder.layers.0.mlp.fc1.weight', bad), /flat index 7 is NaN/);
    assert.throws(() => model.getWeight('vision_model.encoder.layers.9.mlp.fc1.weight'), /is not a weight of this CLIP model/);
  });
});

describe('SPEC §2 low-rank settings applied to clip-tiny-a give the reference pruned_* outputs', () => {
  it('W_up of visual layer 0 at 0.25 and text layer 1 at 0.4', async () => {
    const { applyLoraSettings } = await import('../../../src/lowrank/apply.js');
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const cacheDir = mkdtempSync(join(tmpdir(), 'setar-svd-'));
    const model = await ClipModel.load(DIR, { threads: 1 });
    const ref = SafetensorsFile.open(fixture('clip-tiny-a', 'reference.safetensors'));
    try {
      const changed = await applyLoraSettings(model, [['visual', 'W_up', 0, 0.25], ['text', 'W_up', 1, 0.4]], { cacheDir });
      assert.deepEqual(changed, ['vision_model.encoder.layers.0.mlp.fc1.weight', 'text_model.encoder.layers.1.mlp.fc1.weight']);
      const f64 = (n: string) => ref.read(n).data as Float64Array;
      assertRelMax(model.getWeight(changed[0]!), f64('pruned_vision_fc1_weight'), 'pruned_vision_fc1_weight', REL);
      assertRelMax(model.getWeight(changed[1]!), f64('pruned_text_fc1_weight'), 'pruned_text_fc1_weight', REL);
      const px = ref.read('pixel_values');
      const img = await model.encodeImages(tensor('float32', px.data as Float32Array, px.shape));
      const txt = await model.encodeTokenIds({ ids: ref.read('input_ids').data as Int32Array, batch: 6, length: 77 });
      assertRelMax(img.image_embeds.data, f64('pruned_image_embeds'), 'pruned_image_embeds', REL);
      assertRelMax(img.image_embeds_local!.data, f64('pruned_image_embeds_local'), 'pruned_image_embeds_local', REL);
      assertRelMax(txt.data, f64('pruned_text_embeds'), 'pruned_text_embeds', REL);
      // applying again does not compound; ratio 0 restores
      await applyLoraSettings(model, [['visual', 'W_up', 0, 0.25]], { cacheDir });
      assertRelMax(model.getWeight(changed[0]!), f64('pruned_vision_fc1_weight'), 'pruned_vision_fc1_weight (re-applied)', REL);
      await applyLoraSettings(model, [['visual', 'W_up', 0, 0]], { cacheDir });
      assert.deepEqual(model.getWeight(changed[0]!), model.getOriginalWeight(changed[0]!));
      await assert.rejects(applyLoraSettings(model, [['visual', 'W_up', 0, 0.1], ['visual', 'W_up', 0, 0.2]]), /lora settings 0 and 1 both modify 'vision_model\.encoder\.layers\.0\.mlp\.fc1\.weight'/);
      await assert.rejects(applyLoraSettings(model, [['visual', 'W_q', 2, 0.1]]), /layer 2 .* out of range: the visual tower has 2 layers, allowed \[0, 1\]/);
    } finally {
      ref.close();
      await model.dispose();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });
});

describe('ClipLogitsHead', () => {
  it('matches the reference logits_per_image and logits_per_image_local', async () => {
    const { ClipLogitsHead } = await import('../../../src/models/clip/logits.js');
    const model = await ClipModel.load(DIR, { threads: 1 });
    const ref = SafetensorsFile.open(fixture('clip-tiny-a', 'reference.safetensors'));
    try {
      const px = ref.read('pixel_values');
      const img = await model.encodeImages(tensor('float32', px.data as Float32Array, px.shape));
      const txt = await model.encodeTokenIds({ ids: ref.read('input_ids').data as Int32Array, batch: 6, length: 77 });
      const head = await ClipLogitsHead.create(txt, model.logitScale, { threads: 1 });
      const g = await head.logits(img.image_embeds);
      const l = await head.logits(img.image_embeds_local!);
      assert.deepEqual(g.dims, [5, 6]);
      assert.deepEqual(l.dims, [5, 4, 4, 6]);
      assertRelMax(g.data, ref.read('logits_per_image').data as Float64Array, 'logits_per_image', REL);
      assertRelMax(l.data, ref.read('logits_per_image_local').data as Float64Array, 'logits_per_image_local', REL);
      await head.release();
    } finally {
      ref.close();
      await model.dispose();
    }
  });
});

describe('every SPEC §2 weight type, both towers, each prune mode', () => {
  it('replaces exactly the named weight with its low-rank approximation and changes the features', async () => {
    const { applyLoraSettings } = await import('../../../src/lowrank/apply.js');
    const { lowRankApprox } = await import('../../../src/lowrank/lowrank.js');
    const { clipWeightName } = await import('../../../src/models/clip/weights.js');
    const { mkdtempSync, rmSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const cacheDir = mkdtempSync(join(tmpdir(), 'setar-svd-'));
    const model = await ClipModel.load(DIR, { threads: 1 });
    const ref = SafetensorsFile.open(fixture('clip-tiny-a', 'reference.safetensors'));
    try {
      const px = ref.read('pixel_values');
      const pixels = tensor('float32', px.data as Float32Array, px.shape);
      const ids = { ids: ref.read('input_ids').data as Int32Array, batch: 6, length: 77 };
      const base = { img: (await model.encodeImages(pixels)).image_embeds.data, txt: (await model.encodeTokenIds(ids)).data };
      for (const tower of ['visual', 'text'] as const) {
        for (const w of ['W_q', 'W_k', 'W_v', 'W_o', 'W_up', 'W_down', 'W_p'] as const) {
          for (const mode of ['small', 'large', 'random'] as const) {
            const setting = [tower, w, w === 'W_p' ? null : 1, 0.25] as const;
            const name = clipWeightName(setting, 2);
            await applyLoraSettings(model, [setting], { mode, seed: 3, cacheDir });
            const orig = model.getOriginalWeight(name);
            const want = lowRankApprox({ weight: orig, shape: model.weightShape(name) as [number, number], ratio: 0.25, mode, seed: 3 });
            assert.deepEqual(model.getWeight(name), want, `${name} (${mode})`);
            assert.deepEqual(model.replacedWeights(), [name]);
            const changed = tower === 'visual' ? (await model.encodeImages(pixels)).image_embeds.data : (await model.encodeTokenIds(ids)).data;
            const before = tower === 'visual' ? base.img : base.txt;
            assert.ok(changed.some((v, i) => Math.abs(v - before[i]!) > 1e-6), `${name} (${mode}) changes the ${tower} features`);
            model.resetWeight();
          }
        }
      }
    } finally {
      ref.close();
      await model.dispose();
      rmSync(cacheDir, { recursive: true, force: true });
    }
  });
});
