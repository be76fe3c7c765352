import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSafetensors, type TensorToWrite } from '../../src/io/safetensors.js';
import { openTensorSource, type TensorSource } from '../../src/io/tensor-source.js';
import { CLIP_TINY, clipTinyTensors, positionIdBuffers } from '../helpers/clip-tiny.js';
import { writeTorchCheckpoint, type TorchZipTensor } from '../helpers/torch-zip.js';

const isPositionIds = (n: string) => n.endsWith('.position_ids');

function dump(src: TensorSource): Map<string, { dtype: string; shape: readonly number[]; data: number[] }> {
  return new Map(src.names().sort().map((n) => {
    const e = src.entry(n);
    return [n, { dtype: e.dtype, shape: e.shape, data: [...src.readFloat32(n)] }];
  }));
}

describe('openTensorSource: one interface over safetensors and torch checkpoints, single or sharded', () => {
  let root: string;
  let tensors: Record<string, TorchZipTensor>;
  let reference: ReturnType<typeof dump>;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'setar-tsrc-'));
    tensors = { ...clipTinyTensors(), ...positionIdBuffers() };
    const st = await openTensorSource(CLIP_TINY);
    reference = dump(st);
    st.close();
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  it('pytorch_model.bin gives the safetensors names, dtypes, shapes and values; position_ids are left out when ignored', async () => {
    const d = join(root, 'bin');
    mkdirSync(d);
    writeTorchCheckpoint(join(d, 'pytorch_model.bin'), tensors);
    const all = await openTensorSource(d);
    assert.equal(all.names().length, 78 + 2);
    assert.equal(all.entry('text_model.embeddings.position_ids').dtype, 'I64');
    assert.deepEqual([...(all.read('vision_model.embeddings.position_ids').data as BigInt64Array)].map(Number), Array.from({ length: 17 }, (_, i) => i));
    all.close();
    const src = await openTensorSource(d, { ignore: isPositionIds });
    assert.equal(src.has('text_model.embeddings.position_ids'), false);
    assert.deepEqual(dump(src), reference);
    src.close();
  });

  it('a sharded pytorch_model.bin.index.json reads each shard on demand and gives the same tensors', async () => {
    const d = join(root, 'bin-sharded');
    mkdirSync(d);
    const names = Object.keys(tensors);
    const weightMap: Record<string, string> = {};
    for (const [i, part] of [names.slice(0, 40), names.slice(40)].entries()) {
      const file = `pytorch_model-0000${i + 1}-of-00002.bin`;
      writeTorchCheckpoint(join(d, file), Object.fromEntries(part.map((n) => [n, tensors[n]!])));
      for (const n of part) weightMap[n] = file;
    }
    writeFileSync(join(d, 'pytorch_model.bin.index.json'), JSON.stringify({ weight_map: weightMap }));
    const src = await openTensorSource(d, { ignore: isPositionIds });
    assert.deepEqual(dump(src), reference);
    src.close();
  });

  it('safetensors win over pytorch_model.bin when both are present (as in transformers), and ignored names are left out there too', async () => {
    const d = join(root, 'both');
    mkdirSync(d);
    writeTorchCheckpoint(join(d, 'pytorch_model.bin'), clipTinyTensors(2));
    const st: Record<string, TensorToWrite> = {};
    for (const [n, t] of Object.entries(tensors)) {
      st[n] = t.dtype === 'I64'
        ? { dtype: 'I64', shape: t.shape, data: BigInt64Array.from(t.data as number[], (v) => BigInt(v)) }
        : { dtype: 'F32', shape: t.shape, data: t.data as Float32Array };
    }
    writeSafetensors(join(d, 'model.safetensors'), st);
    const src = await openTensorSource(d, { ignore: isPositionIds });
    assert.deepEqual(dump(src), reference);
    assert.throws(() => src.entry('text_model.embeddings.position_ids'), /recomputed buffer/);
    src.close();
  });

  it('errors name the folder and what was looked for', async () => {
    const empty = join(root, 'empty');
    mkdirSync(empty);
    await assert.rejects(openTensorSource(empty),
      new RegExp(`no model weights in '${empty}': expected one of model\\.safetensors, model\\.safetensors\\.index\\.json, pytorch_model\\.bin, pytorch_model\\.bin\\.index\\.json`));
    await assert.rejects(openTensorSource(join(root, 'nowhere')), /model folder '.*nowhere' does not exist/);
    const d = join(root, 'bad-index');
    mkdirSync(d);
    writeFileSync(join(d, 'pytorch_model.bin.index.json'), JSON.stringify({ weight_map: { 'logit_scale': 'pytorch_model-00001-of-00002.bin' } }));
    await assert.rejects(openTensorSource(d), /lists shard\(s\) missing from '.*bad-index': pytorch_model-00001-of-00002\.bin/);
    writeFileSync(join(d, 'pytorch_model.bin.index.json'), JSON.stringify({ weight_map: { 'logit_scale': '../x.bin' } }));
    await assert.rejects(openTensorSource(d), /weight_map\["logit_scale"\] is "\.\.\/x\.bin", expected a file name beside the index/);
    writeFileSync(join(d, 'pytorch_model.bin.index.json'), '{"metadata": {}}');
    await assert.rejects(openTensorSource(d), /has no "weight_map" object/);
  });
});
