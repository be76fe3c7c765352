import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../../src/io/safetensors.js';
import { SwinV2Model } from '../../../src/models/swinv2/model.js';
import { tensor } from '../../../src/tensor.js';
import { fixture } from '../../helpers/fixtures.js';
import { assertRelMax } from '../../helpers/close.js';

const SRC = fixture('swinv2-tiny-a');

describe('Swin V2 checkpoint loading', () => {
  let root: string;
  let all: Record<string, TensorToWrite>;

  before(() => {
    root = mkdtempSync(join(tmpdir(), 'setar-swinv2-'));
    const f = SafetensorsFile.open(join(SRC, 'model.safetensors'));
    try {
      all = Object.fromEntries([...f.entries.keys()].map((n) => [n, { dtype: 'F32', shape: f.entry(n).shape, data: f.readFloat32(n) }]));
    } finally {
      f.close();
    }
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  function dir(name: string, tensors: Record<string, TensorToWrite>): string {
    const d = join(root, name);
    mkdirSync(d, { recursive: true });
    copyFileSync(join(SRC, 'config.json'), join(d, 'config.json'));
    writeSafetensors(join(d, 'model.safetensors'), tensors);
    return d;
  }

  it('ignores stale relative_coords_table / relative_position_index buffers', async () => {
    const p = 'swinv2.encoder.layers.0.blocks.0.attention.self';
    const d = dir('buffers', {
      ...all,
      [`${p}.relative_coords_table`]: { dtype: 'F32', shape: [1, 7, 7, 2], data: new Float32Array(98).fill(123) },
      [`${p}.relative_position_index`]: { dtype: 'I64', shape: [16, 16], data: new BigInt64Array(256) },
    });
    const model = await SwinV2Model.load(d, { threads: 1 });
    const ref = SafetensorsFile.open(join(SRC, 'reference.safetensors'));
    try {
      const px = ref.read('pixel_values');
      const out = await model.classify(tensor('float32', px.data as Float32Array, px.shape, 'pixel_values'));
      assertRelMax(out.logits.data, ref.read('logits').data as Float64Array, 'logits', 1e-4);
    } finally {
      ref.close();
      await model.dispose();
    }
  });

  it('names a missing tensor and a wrong shape', async () => {
    const missing = { ...all };
    delete missing['swinv2.encoder.layers.2.downsample.reduction.weight'];
    await assert.rejects(SwinV2Model.load(dir('missing', missing)), /swinv2\.encoder\.layers\.2\.downsample\.reduction\.weight/);
    const bad = { ...all, 'classifier.bias': { dtype: 'F32', shape: [8], data: new Float32Array(8) } } as Record<string, TensorToWrite>;
    await assert.rejects(SwinV2Model.load(dir('shape', bad)), /classifier\.bias.*\[8\].*\[7\]/);
  });
});
