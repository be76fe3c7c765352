import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, mkdirSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, writeSafetensors, type SafetensorsDtype, type TensorToWrite } from '../../../src/io/safetensors.js';
import { ClipModel } from '../../../src/models/clip/model.js';
import { parseClipConfig } from '../../../src/models/clip/config.js';
import { tensor } from '../../../src/tensor.js';
import { fixture } from '../../helpers/fixtures.js';

const SRC = fixture('clip-tiny-a');

/** All tensors of the fixture checkpoint, as float32. */
function fixtureTensors(): Map<string, { shape: readonly number[]; data: Float32Array }> {
  const f = SafetensorsFile.open(join(SRC, 'model.safetensors'));
  try {
    return new Map([...f.entries.keys()].map((n) => [n, { shape: f.entry(n).shape, data: f.readFloat32(n) }]));
  } finally {
    f.close();
  }
}

function makeModelDir(root: string, name: string, tensors: Record<string, TensorToWrite>, config?: object): string {
  const d = join(root, name);
  mkdirSync(d, { recursive: true });
  if (config) writeFileSync(join(d, 'config.json'), JSON.stringify(config));
  else copyFileSync(join(SRC, 'config.json'), join(d, 'config.json'));
  writeSafetensors(join(d, 'model.safetensors'), tensors);
  return d;
}

describe('CLIP checkpoint loading', () => {
  let root: string;
  let all: ReturnType<typeof fixtureTensors>;
  let pixels: ReturnType<typeof tensor<'float32'>>;
  const ids = { ids: Int32Array.from([49406, 320, 1125, 539, 320, 1149, 634, 49407]), batch: 1, length: 8 };

  before(() => {
    root = mkdtempSync(join(tmpdir(), 'setar-ckpt-'));
    all = fixtureTensors();
    const ref = SafetensorsFile.open(join(SRC, 'reference.safetensors'));
    pixels = tensor('float32', ref.readFloat32('pixel_values'), ref.entry('pixel_values').shape);
    ref.close();
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  async function outputs(dir: string) {
    const m = await ClipModel.load(dir, { threads: 1 });
    try {
      const img = await m.encodeImages(pixels);
      return { image: img.image_embeds.data, local: img.image_embeds_local!.data, text: (await m.encodeTokenIds(ids)).data };
    } finally {
      await m.dispose();
    }
  }

  for (const dtype of ['F16', 'BF16'] as SafetensorsDtype[]) {
    it(`${dtype} checkpoints compute in float32 exactly as the same values stored in F32`, async () => {
      const lowp: Record<string, TensorToWrite> = {};
      for (const [n, t] of all) lowp[n] = { dtype: n === 'logit_scale' ? 'F32' : dtype, shape: t.shape, data: t.data };
      const dLow = makeModelDir(root, `m-${dtype}`, lowp);
      // the F32 twin holds exactly the values the low-precision file decodes to
      const f = SafetensorsFile.open(join(dLow, 'model.safetensors'));
      const twin: Record<string, TensorToWrite> = {};
      for (const n of f.entries.keys()) twin[n] = { dtype: 'F32', shape: f.entry(n).shape, data: f.readFloat32(n) };
      f.close();
      const dTwin = makeModelDir(root, `m-${dtype}-twin`, twin);
      const [a, b] = [await outputs(dLow), await outputs(dTwin)];
      assert.deepEqual(a, b);
    });
  }

  it('sharded checkpoints (model.safetensors.index.json) give identical outputs', async () => {
    const d = join(root, 'sharded');
    mkdirSync(d);
    copyFileSync(join(SRC, 'config.json'), join(d, 'config.json'));
    const names = [...all.keys()];
    const shards = [names.filter((_, i) => i % 2 === 0), names.filter((_, i) => i % 2 === 1)];
    const weightMap: Record<string, string> = {};
    shards.forEach((ns, k) => {
      const file = `model-0000${k + 1}-of-00002.safetensors`;
      const ts: Record<string, TensorToWrite> = {};
      for (const n of ns) {
        ts[n] = { dtype: 'F32', shape: all.get(n)!.shape, data: all.get(n)!.data };
        weightMap[n] = file;
      }
      writeSafetensors(join(d, file), ts);
    });
    writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    assert.deepEqual(await outputs(d), await outputs(SRC));
  });

  it('lists every missing tensor, wrong shape and unsupported dtype in one error', async () => {
    const ts: Record<string, TensorToWrite> = {};
    for (const [n, t] of all) ts[n] = { dtype: 'F32', shape: t.shape, data: t.data };
    delete ts['vision_model.encoder.layers.1.mlp.fc2.bias'];
    ts['text_projection.weight'] = { dtype: 'F32', shape: [48, 40], data: all.get('text_projection.weight')!.data };
    ts['vision_model.post_layernorm.bias'] = { dtype: 'I32', shape: [64], data: new Int32Array(64) };
    const d = makeModelDir(root, 'broken', ts);
    await assert.rejects(ClipModel.load(d), (e: Error) => {
      assert.match(e.message, /checkpoint '.*broken' does not match its config\.json/);
      assert.match(e.message, /missing tensor 'vision_model\.encoder\.layers\.1\.mlp\.fc2\.bias' \(expected shape \[64\]\)/);
      assert.match(e.message, /tensor 'text_projection\.weight' has shape \[48, 40\], expected \[40, 48\]/);
      assert.match(e.message, /tensor 'vision_model\.post_layernorm\.bias' has dtype I32, expected one of F32, F16, BF16, F64/);
      return true;
    });
  });

  it('skips legacy position_ids buffers and fills HF defaults for absent config keys', async () => {
    const ts: Record<string, TensorToWrite> = {};
    for (const [n, t] of all) ts[n] = { dtype: 'F32', shape: t.shape, data: t.data };
    ts['text_model.embeddings.position_ids'] = { dtype: 'I64', shape: [1, 77], data: BigInt64Array.from({ length: 77 }, (_, i) => BigInt(i)) };
    const cfg = JSON.parse(readFileSync(join(SRC, 'config.json'), 'utf8')) as { text_config: Record<string, unknown>; vision_config: Record<string, unknown> };
    // keys equal to transformers' defaults may be absent from real hub configs
    delete cfg.text_config.vocab_size;
    delete cfg.text_config.max_position_embeddings;
    delete cfg.vision_config.num_channels;
    delete cfg.vision_config.layer_norm_eps;
    const d = makeModelDir(root, 'legacy', ts, cfg);
    assert.deepEqual(await outputs(d), await outputs(SRC));
  });

  it('config errors name the file and key', () => {
    assert.throws(() => parseClipConfig({ model_type: 'clip', vision_config: { hidden_act: 'swish' } }, 'x/config.json'), /x\/config\.json: "vision_config\.hidden_act" is "swish"; supported: quick_gelu/);
    assert.throws(() => parseClipConfig({ text_config: { hidden_size: '512' } }, 'c.json'), /c\.json: "text_config\.hidden_size" must be a number, got "512"/);
    assert.throws(() => parseClipConfig({ model_type: 'swinv2' }, 'c.json'), /model_type is "swinv2", expected "clip"/);
    assert.throws(() => parseClipConfig({ text_config: { hidden_size: 50, num_attention_heads: 8 } }, 'c.json'), /must be divisible by num_attention_heads/);
    assert.equal(parseClipConfig({}).vision_config.patch_size, 32);
  });

  it('a missing model directory or config.json is named', async () => {
    await assert.rejects(ClipModel.load(join(root, 'nowhere')), /cannot read '.*nowhere\/config\.json'/);
  });
});

describe('saving a model', () => {
  it('writes the current weights with the original names and dtypes, plus config and tokenizer files', async () => {
    const { mkdtempSync, rmSync, existsSync } = await import('node:fs');
    const root = mkdtempSync(join(tmpdir(), 'setar-save-'));
    try {
      const src = await ClipModel.load(SRC, { threads: 1 });
      const name = 'vision_model.encoder.layers.1.mlp.fc2.weight';
      const w = src.getWeight(name).map((x) => x * 0.5);
      src.setWeight(name, w);
      src.save(join(root, 'm'));
      await src.dispose();
      for (const f of ['config.json', 'vocab.json', 'merges.txt', 'model.safetensors']) assert.ok(existsSync(join(root, 'm', f)), f);
      const a = SafetensorsFile.open(join(SRC, 'model.safetensors'));
      const b = SafetensorsFile.open(join(root, 'm', 'model.safetensors'));
      try {
        assert.deepEqual([...b.entries.keys()].sort(), [...a.entries.keys()].sort());
        assert.equal(b.metadata.format, 'pt');
        for (const n of a.entries.keys()) {
          assert.equal(b.entry(n).dtype, a.entry(n).dtype, n);
          assert.deepEqual(b.readFloat32(n), n === name ? w : a.readFloat32(n), n);
        }
      } finally {
        a.close();
        b.close();
      }
      const again = await ClipModel.load(join(root, 'm'), { threads: 1 });
      assert.deepEqual(again.getWeight(name), w);
      await again.dispose();
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});
