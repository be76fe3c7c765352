import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkLocoopContext, LocoopCheckpointError, readLocoopContext } from '../../../src/models/locoop/context.js';
import { loadClipConfig } from '../../../src/models/clip/config.js';
import { floatToBf16, floatToHalf, halfToFloat, writeSafetensors, type SafetensorsFile } from '../../../src/io/safetensors.js';
import { fixture } from '../../helpers/fixtures.js';
import { dasslCheckpointValue, writeTorchPickle, type Py, type TorchZipTensor } from '../../helpers/torch-zip.js';
import { DASSL_CHECKPOINT, loadReference } from './fixture.js';

describe('LoCoOp checkpoints: readLocoopContext', () => {
  let dir: string;
  let ref: SafetensorsFile;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'setar-locoop-ctx-'));
    ref = loadReference().tensors;
  });
  after(() => {
    ref.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const ctx43: TorchZipTensor = { dtype: 'F32', shape: [4, 3], data: Float32Array.from({ length: 12 }, (_, i) => (i - 6) / 7) };
  const write = (name: string, value: Py, pkl?: Buffer) => {
    const p = join(dir, name);
    writeTorchPickle(p, value, pkl);
    return p;
  };

  it('reads state_dict.ctx of a real torch.save of a Dassl prompt learner (scheduler and optimizer objects inside)', () => {
    const c = readLocoopContext(DASSL_CHECKPOINT);
    assert.equal(c.n, 16);
    assert.equal(c.width, 48);
    assert.equal(c.dtype, 'F32');
    assert.equal(c.epoch, 2);
    assert.equal(c.source, DASSL_CHECKPOINT);
    assert.deepEqual(c.ctx, ref.read('ctx_n16').data as Float32Array);
    assert.equal(readLocoopContext(DASSL_CHECKPOINT, { nCtx: 16 }).n, 16);
  });

  it('an n_ctx that disagrees with the checkpoint is an error naming both numbers', () => {
    assert.throws(() => readLocoopContext(DASSL_CHECKPOINT, { nCtx: 4 }), (e: unknown) => {
      assert.ok(e instanceof LocoopCheckpointError);
      assert.match(e.message, /model\.pth\.tar-2': the checkpoint's context has 16 vectors \(n_ctx 16\), but n_ctx 4 was given/);
      return true;
    });
    assert.throws(() => readLocoopContext(DASSL_CHECKPOINT, { nCtx: 0 }), /n_ctx must be a positive integer, got 0/);
  });

  it('a context width other than the text hidden size is an error naming both', async () => {
    const config = await loadClipConfig(fixture('clip-tiny-a'));
    checkLocoopContext(readLocoopContext(DASSL_CHECKPOINT), config.text_config);
    const wide = write('wide.pth.tar-1', dasslCheckpointValue({ ctx: { dtype: 'F32', shape: [4, 64], data: new Float32Array(256) }, epoch: 1 }));
    assert.throws(() => checkLocoopContext(readLocoopContext(wide), config.text_config),
      /wide\.pth\.tar-1': the LoCoOp context has width 64, but this CLIP model's text hidden size \(text_config\.hidden_size\) is 48/);
    const long = write('long.pth.tar-1', dasslCheckpointValue({ ctx: { dtype: 'F32', shape: [76, 48], data: new Float32Array(76 * 48) }, epoch: 1 }));
    assert.throws(() => checkLocoopContext(readLocoopContext(long), config.text_config), /n_ctx 76 leaves no room for the start and end tokens in 77 positions \(at most 75\)/);
  });

  it('widens F16 contexts exactly (torch zip) and reads BF16 / F32 ctx.safetensors', () => {
    const bits = Uint16Array.from(ctx43.data as Float32Array, (v) => floatToHalf(v));
    const p = write('half.pth.tar-3', dasslCheckpointValue({ ctx: { dtype: 'F16', shape: [4, 3], data: bits }, epoch: 3 }));
    const c = readLocoopContext(p, { nCtx: 4 });
    assert.equal(c.dtype, 'F16');
    assert.deepEqual([...c.ctx], [...bits].map(halfToFloat));
    const st = join(dir, 'ctx.safetensors');
    writeSafetensors(st, { ctx: { dtype: 'BF16', shape: [4, 3], data: ctx43.data as Float32Array } });
    const s = readLocoopContext(st);
    assert.equal(s.dtype, 'BF16');
    assert.deepEqual([...s.ctx], Array.from(ctx43.data as Float32Array, (v) => new Float32Array(new Uint32Array([floatToBf16(v) << 16]).buffer)[0]));
    assert.equal(s.epoch, undefined);
    const other = join(dir, 'other.safetensors');
    writeSafetensors(other, { prompt: { dtype: 'F32', shape: [1], data: Float32Array.of(1) } });
    assert.throws(() => readLocoopContext(other), /other\.safetensors' has no tensor 'ctx' \(tensors: 'prompt'\)/);
  });

  it('a pickled os.system call never runs: elsewhere it is ignored, as state_dict.ctx it is refused', () => {
    const marker = join(dir, 'pwned');
    const call: Py = { reduce: 'posix.system', args: [`touch ${marker}`] };
    const base = dasslCheckpointValue({ ctx: ctx43, epoch: 2 }) as { dict: (readonly [Py, Py])[] };
    const withCall = { dict: base.dict.map(([k, v]) => (k === 'val_result' ? [k, call] as const : [k, v] as const)) };
    assert.equal(readLocoopContext(write('call-elsewhere.pth.tar-2', withCall)).n, 4);
    const asCtx = { dict: [['state_dict', { ordered: [['ctx', call]] }], ['epoch', 2]] as (readonly [Py, Py])[] };
    assert.throws(() => readLocoopContext(write('call-ctx.pth.tar-2', asCtx)),
      /call-ctx\.pth\.tar-2': state_dict\.ctx is a call of posix\.system \(not run\), not a tensor/);
    assert.equal(existsSync(marker), false);
  });

  it('names what is missing: no state_dict, no ctx, a class-specific context, a non-float ctx, a missing file', () => {
    assert.throws(() => readLocoopContext(write('nosd.pth.tar-1', { dict: [['model', 1], ['epoch', 1]] })),
      /nosd\.pth\.tar-1': no "state_dict" \(top-level keys: 'model', 'epoch'\); expected LoCoOp's prompt_learner\/model\.pth\.tar-<epoch> as Dassl saves it/);
    assert.throws(() => readLocoopContext(write('noctx.pth.tar-1', { dict: [['state_dict', { ordered: [['weight', { tensor: ctx43, storage: '0' }]] }]] })),
      /noctx\.pth\.tar-1': state_dict has no 'ctx' \(keys: 'weight'\); is this a prompt-learner checkpoint\?/);
    const csc = write('csc.pth.tar-1', dasslCheckpointValue({ ctx: { dtype: 'F32', shape: [2, 4, 3], data: new Float32Array(24) }, epoch: 1 }));
    assert.throws(() => readLocoopContext(csc), /csc\.pth\.tar-1': state_dict\.ctx has shape \[2, 4, 3\], a class-specific context \[n_cls, n_ctx, width\]; setar reads LoCoOp's context shared by all classes, \[n_ctx, width\]/);
    const ints = write('ints.pth.tar-1', { dict: [['state_dict', { ordered: [['ctx', { tensor: { dtype: 'I64', shape: [2, 2], data: [1, 2, 3, 4] }, storage: '0' }]] }]] });
    assert.throws(() => readLocoopContext(ints), /ints\.pth\.tar-1': state_dict\.ctx has dtype I64; expected a float tensor/);
    // a bare prompt-learner state dict (ctx at the top) is read as well
    assert.equal(readLocoopContext(write('bare.pth', { ordered: [['ctx', { tensor: ctx43, storage: '0' }]] })).n, 4);
    assert.throws(() => readLocoopContext(join(dir, 'absent.pth.tar-5')), /cannot open LoCoOp checkpoint '.*absent\.pth\.tar-5'/);
    const nan = write('nan.pth.tar-1', dasslCheckpointValue({ ctx: { dtype: 'F32', shape: [1, 2], data: [0, NaN] }, epoch: 1 }));
    assert.throws(() => readLocoopContext(nan), /nan\.pth\.tar-1': state_dict\.ctx holds a non-finite value \(NaN\) at flat index 1/);
  });
});
