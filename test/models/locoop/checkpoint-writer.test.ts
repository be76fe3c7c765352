import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClipModel } from '../../../src/models/clip/model.js';
import { ClipTokenizer } from '../../../src/models/clip/tokenizer.js';
import { readLocoopContext, type LocoopContext } from '../../../src/models/locoop/context.js';
import { coopTokenBuffers } from '../../../src/models/locoop/coop-buffers.js';
import { sgdStateDict, writeLocoopCheckpoint } from '../../../src/models/locoop/checkpoint-writer.js';
import { locoopClassPrompts } from '../../../src/models/locoop/prompt.js';
import { encodeLocoopTexts } from '../../../src/models/locoop/text.js';
import { readTorchPickle, TensorRef } from '../../../src/io/torch-checkpoint.js';
import { torchSavePickle } from '../../../src/io/torch-save.js';
import type { SafetensorsFile } from '../../../src/io/safetensors.js';
import { ZipFile } from '../../../src/io/zip-reader.js';
import { fixture } from '../../helpers/fixtures.js';
import { runPython, torchPython } from '../../helpers/torch-python.js';
import { weightsOnlyScan } from '../../helpers/weights-only.js';
import { DASSL_CHECKPOINT, loadReference, type LocoopReference } from './fixture.js';

describe('LoCoOp checkpoints in Dassl\'s layout: writeLocoopCheckpoint', () => {
  let dir: string;
  let model: ClipModel;
  let tokenizer: ClipTokenizer;
  let meta: LocoopReference;
  let ref: SafetensorsFile;
  let c16: LocoopContext;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-locoop-out-'));
    model = await ClipModel.load(fixture('clip-tiny-a'), { threads: 1 });
    tokenizer = await ClipTokenizer.fromDir(fixture('clip-tiny-a'));
    ({ meta, tensors: ref } = loadReference());
    c16 = { ctx: ref.read('ctx_n16').data as Float32Array, n: 16, width: 48, dtype: 'F32', source: 'reference ctx_n16' };
  });
  after(async () => {
    await model.dispose();
    ref.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const classRows = () => meta.class_prompts_for_buffers.map((t) => tokenizer.encode(t));

  it('token_prefix / token_suffix as CoOp computes them: the reference\'s, and the real Dassl file\'s, exactly', () => {
    const b = coopTokenBuffers(classRows(), 16, model.textEmbeddingTables().token_embedding, 48);
    assert.equal(b.suffixLength, 60);
    assert.deepEqual(b.tokenPrefix, ref.read('token_prefix_n16').data as Float32Array);
    assert.deepEqual(b.tokenSuffix, ref.read('token_suffix_n16').data as Float32Array);
    readTorchPickle(DASSL_CHECKPOINT, (root, read) => {
      const sd = (root as Map<string, unknown>).get('state_dict') as Map<string, TensorRef>;
      const suffix = read(sd.get('token_suffix')!, 'token_suffix');
      assert.deepEqual(suffix.shape, [3, 60, 48]);
      assert.deepEqual(suffix.data, b.tokenSuffix);
      assert.deepEqual(read(sd.get('token_prefix')!, 'token_prefix').data, b.tokenPrefix);
    }, { placeholders: true });
    assert.throws(() => coopTokenBuffers([[49406, 99999, 49407]], 4, model.textEmbeddingTables().token_embedding, 48), /class prompt 0: id 99999 at position 1 is outside the vocabulary \[0, 49408\)/);
  });

  it('writes OUT/prompt_learner/model.pth.tar-<epoch>, Dassl\'s checkpoint pointer and OUT/ctx.safetensors; reading back gives the context bit for bit', async () => {
    const out = join(dir, 'run');
    const buffers = coopTokenBuffers(classRows(), 16, model.textEmbeddingTables().token_embedding, 48);
    const files = writeLocoopCheckpoint(out, { context: c16, epoch: 50, buffers });
    assert.equal(files.checkpoint, join(out, 'prompt_learner', 'model.pth.tar-50'));
    assert.equal(files.safetensors, join(out, 'ctx.safetensors'));
    assert.equal(readFileSync(join(out, 'prompt_learner', 'checkpoint'), 'utf8'), 'model.pth.tar-50\n');
    const back = readLocoopContext(files.checkpoint, { nCtx: 16 });
    assert.equal(back.epoch, 50);
    assert.deepEqual(back.ctx, c16.ctx);
    assert.deepEqual(readLocoopContext(files.safetensors).ctx, c16.ctx);
    readTorchPickle(files.checkpoint, (root, read) => {
      const top = root as Map<string, unknown>;
      assert.deepEqual([...top.keys()], ['state_dict', 'epoch', 'optimizer', 'scheduler', 'val_result']);
      const sd = top.get('state_dict') as Map<string, TensorRef>;
      assert.deepEqual([...sd.keys()], ['ctx', 'token_prefix', 'token_suffix']);
      assert.deepEqual(read(sd.get('token_suffix')!, 'token_suffix').shape, [3, 60, 48]);
      assert.equal(top.get('optimizer'), null);
    });
    // the text features from the written file are exactly those of the context it was given
    const prompts = locoopClassPrompts(['tench', 'kite (bird of prey)', 'Black and Tan Coonhound']);
    const before = await encodeLocoopTexts(model, tokenizer, prompts, c16);
    const after = await encodeLocoopTexts(model, tokenizer, prompts, back);
    assert.deepEqual(after.data, before.data);
  });

  it('with an SGD state (momentum buffer) and val_result; only plain data and tensors, as weights_only reads', () => {
    const out = join(dir, 'sgd');
    const momentum = Float32Array.from({ length: 16 * 48 }, (_, i) => Math.cos(i) / 50);
    const optimizer = sgdStateDict({ lr: 0.002, momentum: 0.9, weightDecay: 5e-4, initialLr: 0.002 }, { data: momentum, shape: [16, 48] });
    const files = writeLocoopCheckpoint(out, { context: c16, epoch: 3, optimizer, valResult: 43.75 });
    readTorchPickle(files.checkpoint, (root, read) => {
      const top = root as Map<string, unknown>;
      assert.equal(top.get('val_result'), 43.75);
      const opt = top.get('optimizer') as Map<string, unknown>;
      const slot = (opt.get('state') as Map<number, Map<string, TensorRef>>).get(0)!;
      assert.deepEqual(read(slot.get('momentum_buffer')!, 'momentum').data, momentum);
      const group = (opt.get('param_groups') as Map<string, unknown>[])[0]!;
      assert.deepEqual([...group.keys()], ['lr', 'momentum', 'dampening', 'weight_decay', 'nesterov', 'maximize', 'foreach', 'differentiable', 'initial_lr', 'params']);
      assert.deepEqual(group.get('params'), [0]);
    });
    const zip = ZipFile.open(files.checkpoint);
    try {
      const globals = weightsOnlyScan(zip.read('model.pth/data.pkl'));
      assert.deepEqual([...new Set(globals)].sort(), ['collections.OrderedDict', 'torch.FloatStorage', 'torch._utils._rebuild_tensor_v2']);
    } finally {
      zip.close();
    }
    assert.throws(() => writeLocoopCheckpoint(out, { context: { ctx: new Float32Array(5), n: 2, width: 3 }, epoch: 1 }), /context holds 5 values, \[2, 3\] needs 6/);
    assert.throws(() => writeLocoopCheckpoint(out, { context: c16, epoch: -1 }), /epoch must be a non-negative integer, got -1/);
    assert.ok(torchSavePickle(optimizer).pkl.length > 0);
  });

  // LoCoOp's own code loads with Dassl's load_checkpoint + load_state_dict(strict=False) after
  // dropping the token buffers; the official SeTAR code reads checkpoint["state_dict"]["ctx"] and
  // checkpoint["epoch"]. Both are replayed here with torch itself, when it is installed.
  it('torch.load reads it as LoCoOp\'s Dassl loader and SeTAR\'s loader do, weights_only True and False (when PyTorch is on this machine)', (t) => {
    const py = torchPython();
    if (!py) {
      t.skip('no Python with torch here (set SETAR_TORCH_PYTHON to check against torch.load)');
      return;
    }
    const out = join(dir, 'torch');
    const buffers = coopTokenBuffers(classRows(), 16, model.textEmbeddingTables().token_embedding, 48);
    const plain = writeLocoopCheckpoint(join(out, 'plain'), { context: c16, epoch: 50, buffers }).checkpoint;
    const withSgd = writeLocoopCheckpoint(join(out, 'sgd'), {
      context: c16, epoch: 50, buffers, valResult: 43.75,
      optimizer: sgdStateDict({ lr: 0.002, momentum: 0.9, weightDecay: 5e-4 }, { data: new Float32Array(16 * 48).fill(0.25), shape: [16, 48] }),
    }).checkpoint;
    const res = JSON.parse(runPython(py, `
import sys, json, torch
from torch import nn
major = int(torch.__version__.split('.')[0])
out = {'major': major}
for name, path in (('plain', sys.argv[1]), ('sgd', sys.argv[2])):
    # weights_only=True reads BINFLOAT from torch 2.0 on; the plain file has no float at all
    for wo in ((True, False) if (major >= 2 or name == 'plain') else (False,)):
        ck = torch.load(path, map_location='cpu', weights_only=wo)
        # Dassl load_model (LoCoOp): drop the fixed token vectors, load into the prompt learner
        sd = ck['state_dict']
        sd.pop('token_prefix', None); sd.pop('token_suffix', None)
        learner = nn.Module()
        learner.ctx = nn.Parameter(torch.zeros(16, 48))
        missing, unexpected = learner.load_state_dict(sd, strict=False)
        out[f'{name}/{wo}'] = {'epoch': ck['epoch'], 'ctx': learner.ctx.detach().flatten().tolist(), 'missing': list(missing),
                               'unexpected': list(unexpected), 'keys': sorted(ck.keys()), 'val': ck['val_result']}
print(json.dumps(out))
`, [plain, withSgd]).trim().split('\n').pop()!) as Record<string, { epoch: number; ctx: number[]; missing: string[]; unexpected: string[]; keys: string[]; val: number | null }> & { major: number };
    const cases = ['plain/True', 'plain/False', 'sgd/False', ...(res.major >= 2 ? ['sgd/True'] : [])];
    for (const k of cases) {
      const r = res[k]!;
      assert.ok(r, k);
      assert.equal(r.epoch, 50, k);
      assert.deepEqual(r.ctx, [...c16.ctx], k);
      assert.deepEqual(r.missing, [], k);
      assert.deepEqual(r.unexpected, [], k);
      assert.deepEqual(r.keys, ['epoch', 'optimizer', 'scheduler', 'state_dict', 'val_result'], k);
      assert.equal(r.val, k.startsWith('sgd') ? 43.75 : null, k);
    }
  });
});
