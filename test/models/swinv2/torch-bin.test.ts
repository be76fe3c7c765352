import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SwinV2Model } from '../../../src/models/swinv2/model.js';
import { SafetensorsFile } from '../../../src/io/safetensors.js';
import { readTorchCheckpoint } from '../../../src/io/torch-checkpoint.js';
import { tensor, type Tensor } from '../../../src/tensor.js';
import { fixture } from '../../helpers/fixtures.js';
import { writeTorchCheckpoint, type TorchZipTensor } from '../../helpers/torch-zip.js';

const DIR = fixture('swinv2-tiny-a');

describe('Swin V2 from pytorch_model.bin (swinv2-tiny-a re-saved in torch.save format)', () => {
  let tmp: string;
  let pixels: Tensor<'float32'>;
  let stale: string[];

  before(() => {
    tmp = mkdtempSync(join(tmpdir(), 'setar-swinv2-bin-'));
    copyFileSync(join(DIR, 'config.json'), join(tmp, 'config.json'));
    const st = SafetensorsFile.open(join(DIR, 'model.safetensors'));
    const tensors: Record<string, TorchZipTensor> = {};
    stale = [];
    try {
      for (const [name, e] of st.entries) {
        assert.equal(e.dtype, 'F32', name);
        tensors[name] = { dtype: 'F32', shape: [...e.shape], data: st.readFloat32(name) };
        // HF checkpoints carry these buffers next to each attention's logit_scale; give wrong values, which must be ignored.
        const m = /^(.*\.attention\.self)\.logit_scale$/.exec(name);
        if (m) {
          const w = 4;
          const coords = `${m[1]}.relative_coords_table`;
          const index = `${m[1]}.relative_position_index`;
          tensors[coords] = { dtype: 'F32', shape: [1, 2 * w - 1, 2 * w - 1, 2], data: new Float32Array(2 * (2 * w - 1) ** 2).fill(123) };
          tensors[index] = { dtype: 'I64', shape: [w * w, w * w], data: new BigInt64Array(w ** 4).fill(5n) };
          stale.push(coords, index);
        }
      }
    } finally {
      st.close();
    }
    assert.ok(stale.length > 0, 'no attention blocks found for the stale buffers');
    writeTorchCheckpoint(join(tmp, 'pytorch_model.bin'), tensors);
    const ref = SafetensorsFile.open(fixture('swinv2-tiny-a', 'reference.safetensors'));
    try {
      const px = ref.read('pixel_values');
      pixels = tensor('float32', px.data as Float32Array, px.shape, 'pixel_values');
    } finally {
      ref.close();
    }
  });
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('the written file holds every safetensors tensor plus the stale buffers', () => {
    const sd = readTorchCheckpoint(join(tmp, 'pytorch_model.bin'));
    assert.equal(sd.size, 169 + stale.length);
    for (const s of stale) assert.ok(sd.has(s), s);
  });

  it('classify gives exactly the logits and logits_local of the safetensors folder', async () => {
    const fromBin = await SwinV2Model.load(tmp, { threads: 2 });
    const fromSt = await SwinV2Model.load(DIR, { threads: 2 });
    try {
      const a = await fromBin.classify(pixels);
      const e = await fromSt.classify(pixels);
      assert.deepEqual(a.logits.dims, e.logits.dims);
      assert.deepEqual(a.logits_local.dims, e.logits_local.dims);
      assert.deepEqual([...a.logits.data], [...e.logits.data]);
      assert.deepEqual([...a.logits_local.data], [...e.logits_local.data]);
    } finally {
      await fromBin.dispose();
      await fromSt.dispose();
    }
  });
});
