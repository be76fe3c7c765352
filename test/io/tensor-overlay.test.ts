import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSafetensors } from '../../src/io/safetensors.js';
import { checkOverlay, openTensorFile, OverlayTensorSource } from '../../src/io/tensor-overlay.js';
import { openTensorSource } from '../../src/io/tensor-source.js';
import { writeTorchCheckpoint } from '../helpers/torch-zip.js';

const EXPECTED = new Map<string, number[]>([
  ['a.weight', [2, 3]],
  ['a.bias', [2]],
  ['b.weight', [3, 3]],
  ['logit_scale', []],
]);

describe('checkpoint overlays (--clip-ckpt): one file of either format over a model folder', () => {
  let root: string;
  before(() => (root = mkdtempSync(join(tmpdir(), 'setar-overlay-'))));
  after(() => rmSync(root, { recursive: true, force: true }));

  it('a torch zip and a safetensors file are told apart by their bytes, not their names', () => {
    const pth = join(root, 'finetuned_model.pth');
    writeTorchCheckpoint(pth, { 'a.bias': { dtype: 'F32', shape: [2], data: [1, 2] } });
    const st = join(root, 'weights.pth');
    writeSafetensors(st, { 'a.bias': { dtype: 'F32', shape: [2], data: Float32Array.of(3, 4) } });
    const a = openTensorFile(pth);
    const b = openTensorFile(st);
    assert.deepEqual([...a.readFloat32('a.bias')], [1, 2]);
    assert.deepEqual([...b.readFloat32('a.bias')], [3, 4]);
    a.close();
    b.close();
    assert.throws(() => openTensorFile(join(root, 'missing.pth')), /cannot open checkpoint '.*missing\.pth': no such file/);
    const junk = join(root, 'junk.pth');
    writeFileSync(junk, 'not a checkpoint at all');
    assert.throws(() => openTensorFile(junk), /junk\.pth/);
  });

  it('reads the overlay first and the base for everything else; names are the union', async () => {
    const base = join(root, 'base');
    mkdirSync(base);
    writeSafetensors(join(base, 'model.safetensors'), {
      'a.bias': { dtype: 'F16', shape: [2], data: Float32Array.of(1, 2) },
      'b.weight': { dtype: 'F32', shape: [1], data: Float32Array.of(5) },
    });
    writeTorchCheckpoint(join(root, 'over.pth'), { 'a.bias': { dtype: 'F32', shape: [2], data: [7, 8] }, 'extra': { dtype: 'F32', shape: [1], data: [9] } });
    const src = new OverlayTensorSource(await openTensorSource(base), openTensorFile(join(root, 'over.pth')));
    assert.equal(src.dir, base);
    assert.deepEqual(src.names().sort(), ['a.bias', 'b.weight', 'extra']);
    assert.deepEqual([...src.readFloat32('a.bias')], [7, 8]);
    assert.equal(src.entry('a.bias').dtype, 'F32');
    assert.deepEqual([...src.readFloat32('b.weight')], [5]);
    assert.equal(src.has('extra'), true);
    src.close();
  });

  it('every mismatch is listed in one error: unknown names, missing names, wrong shapes, non-float dtypes', () => {
    const f = join(root, 'bad.pth');
    writeTorchCheckpoint(f, {
      'a.weight': { dtype: 'F32', shape: [3, 2], data: new Float32Array(6) },
      'a.bias': { dtype: 'I64', shape: [2], data: [0, 1] },
      'c.weight': { dtype: 'F32', shape: [1], data: [0] },
      'logit_scale': { dtype: 'F32', shape: [1], data: [4.6] },
    });
    const src = openTensorFile(f);
    assert.throws(
      () => checkOverlay(src, EXPECTED, { complete: true, label: `clip_ckpt '${f}'`, against: "the CLIP model in 'm'" }),
      (e: Error) => {
        assert.equal(e.message, [
          `clip_ckpt '${f}' does not match the CLIP model in 'm' (4 tensors, 4 expected):`,
          "  1 unknown name(s): 'c.weight'",
          "  1 missing name(s): 'b.weight'",
          "  1 wrong shape(s): 'a.weight' is [3, 2], expected [2, 3]",
          "  1 non-float tensor(s): 'a.bias' is I64, expected one of F32, F16, BF16, F64",
        ].join('\n'));
        return true;
      });
    // A partial overlay may leave names out; a [1] logit_scale stands for the 0-d one.
    const ok = join(root, 'ok.pth');
    writeTorchCheckpoint(ok, { 'a.bias': { dtype: 'F32', shape: [2], data: [0, 1] }, 'logit_scale': { dtype: 'F32', shape: [1], data: [4.6] } });
    const partial = openTensorFile(ok);
    checkOverlay(partial, EXPECTED, { complete: false, label: 'x', against: 'y' });
    assert.throws(() => checkOverlay(partial, EXPECTED, { complete: true, label: 'x', against: 'y' }), /2 missing name\(s\): 'a\.weight', 'b\.weight'/);
    src.close();
    partial.close();
  });

  it('names behind a wrapper prefix (module. from DataParallel) get a hint', () => {
    const f = join(root, 'ddp.pth');
    writeTorchCheckpoint(f, Object.fromEntries([...EXPECTED].map(([n, s]) => [`module.${n}`, { dtype: 'F32' as const, shape: s, data: new Float32Array(s.reduce((a, b) => a * b, 1)) }])));
    const src = openTensorFile(f);
    assert.throws(() => checkOverlay(src, EXPECTED, { complete: true, label: 'clip_ckpt', against: 'the model' }),
      /4 unknown name\(s\): 'module\.a\.weight'.*\n.*4 missing name\(s\)[\s\S]*every unknown name is a model tensor behind the prefix 'module\.'/);
    src.close();
  });

  it('long lists show their first 12 entries and a count', () => {
    const f = join(root, 'many.pth');
    writeTorchCheckpoint(f, Object.fromEntries(Array.from({ length: 20 }, (_, i) => [`x${i}`, { dtype: 'F32' as const, shape: [1], data: [0] }])));
    const src = openTensorFile(f);
    assert.throws(() => checkOverlay(src, EXPECTED, { complete: false, label: 'c', against: 'm' }),
      /20 unknown name\(s\): 'x0', 'x1', .*'x11', … \(8 more\)$/);
    src.close();
  });
});
