import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../../src/io/safetensors.js';
import { ClipModel } from '../../../src/models/clip/model.js';
import { SwinV2Model } from '../../../src/models/swinv2/model.js';
import { tensor } from '../../../src/tensor.js';
import { assertClipTinyReference, CLIP_TINY, clipTinyTensors, copyClipTinySideFiles, positionIdBuffers } from '../../helpers/clip-tiny.js';
import { fixture } from '../../helpers/fixtures.js';
import { writeTorchCheckpoint, type TorchZipTensor } from '../../helpers/torch-zip.js';

function asSafetensors(t: Record<string, TorchZipTensor>): Record<string, TensorToWrite> {
  return Object.fromEntries(Object.entries(t).map(([n, x]) => [n, { dtype: 'F32', shape: x.shape, data: x.data as Float32Array } as TensorToWrite]));
}

describe('clip_ckpt: a whole state dict applied over --model (the official finetuned_model.pth)', () => {
  let root: string;
  let base: string;

  before(() => {
    root = mkdtempSync(join(tmpdir(), 'setar-clipckpt-'));
    // The base folder's weights are all halved: only the overlay can give the reference outputs.
    base = join(root, 'base');
    copyClipTinySideFiles(base);
    copyFileSync(join(CLIP_TINY, 'config.json'), join(base, 'config.json'));
    writeSafetensors(join(base, 'model.safetensors'), asSafetensors(clipTinyTensors(0.5)));
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('the base folder alone does not give the reference (the check below can fail)', async () => {
    const m = await ClipModel.load(base, { threads: 1 });
    try {
      await assert.rejects(assertClipTinyReference(m, 'halved base'), /halved base: image_embeds/);
    } finally {
      await m.dispose();
    }
  });

  it('a torch.save state dict (HF CLIPModel names, position_ids buffers included) gives the float64 reference outputs', async () => {
    const pth = join(root, 'finetuned_model.pth');
    writeTorchCheckpoint(pth, { ...clipTinyTensors(), ...positionIdBuffers() });
    const m = await ClipModel.load(base, { threads: 1, clipCkpt: pth });
    try {
      await assertClipTinyReference(m, 'clip_ckpt .pth');
      // Saving writes the overlay's values under the model's names, without the stale buffers.
      const out = join(root, 'saved');
      m.save(out);
      const f = SafetensorsFile.open(join(out, 'model.safetensors'));
      assert.equal(f.entries.size, 78);
      f.close();
      assert.ok(existsSync(join(out, 'vocab.json')));
      const again = await ClipModel.load(out, { threads: 1 });
      try {
        await assertClipTinyReference(again, 'saved after clip_ckpt');
      } finally {
        await again.dispose();
      }
    } finally {
      await m.dispose();
    }
  });

  it('a safetensors state dict works the same', async () => {
    const st = join(root, 'finetuned.safetensors');
    writeSafetensors(st, asSafetensors(clipTinyTensors()));
    const m = await ClipModel.load(base, { threads: 1, clipCkpt: st });
    try {
      await assertClipTinyReference(m, 'clip_ckpt .safetensors');
    } finally {
      await m.dispose();
    }
  });

  it('names are checked against the model: every mismatch in one error naming the file and the model folder', async () => {
    const t = clipTinyTensors();
    delete t['text_projection.weight'];
    t['visual_projection.weight'] = { dtype: 'F32', shape: [64, 40], data: t['visual_projection.weight']!.data };
    t['text_model.pooler.weight'] = { dtype: 'F32', shape: [1], data: [0] };
    const pth = join(root, 'bad.pth');
    writeTorchCheckpoint(pth, t);
    await assert.rejects(ClipModel.load(base, { clipCkpt: pth }), (e: Error) => {
      assert.equal(e.message, [
        `clip_ckpt '${pth}' does not match the CLIP model in '${base}' (78 tensors, 78 expected):`,
        "  1 unknown name(s): 'text_model.pooler.weight'",
        "  1 missing name(s): 'text_projection.weight'",
        "  1 wrong shape(s): 'visual_projection.weight' is [64, 40], expected [40, 64]",
      ].join('\n'));
      return true;
    });
    await assert.rejects(ClipModel.load(base, { clipCkpt: join(root, 'nope.pth') }), /cannot open checkpoint '.*nope\.pth': no such file/);
  });

  it('Swin V2 takes clip_ckpt too (the official Swin fine-tuning writes one): the original logits exactly', async () => {
    const swin = fixture('swinv2-tiny-a');
    const f = SafetensorsFile.open(join(swin, 'model.safetensors'));
    const orig: Record<string, TorchZipTensor> = {};
    const halved: Record<string, TensorToWrite> = {};
    for (const [n, e] of f.entries) {
      const data = f.readFloat32(n);
      orig[n] = { dtype: 'F32', shape: [...e.shape], data };
      halved[n] = { dtype: 'F32', shape: e.shape, data: data.map((v) => v * 0.5) };
    }
    f.close();
    const dir = join(root, 'swin');
    mkdirSync(dir);
    copyFileSync(join(swin, 'config.json'), join(dir, 'config.json'));
    writeSafetensors(join(dir, 'model.safetensors'), halved);
    const pth = join(root, 'swin_finetuned_model.pth');
    writeTorchCheckpoint(pth, orig);
    const ref = SafetensorsFile.open(join(swin, 'reference.safetensors'));
    const px = ref.read('pixel_values');
    ref.close();
    const pixels = tensor('float32', px.data as Float32Array, px.shape, 'pixel_values');
    const a = await SwinV2Model.load(dir, { threads: 1, clipCkpt: pth });
    const e = await SwinV2Model.load(swin, { threads: 1 });
    try {
      const [x, y] = [await a.classify(pixels), await e.classify(pixels)];
      assert.deepEqual([...x.logits.data], [...y.logits.data]);
      assert.deepEqual([...x.logits_local.data], [...y.logits_local.data]);
    } finally {
      await a.dispose();
      await e.dispose();
    }
  });
});
