import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { PyFloat, PyOrderedDict, PyTuple, SaveTensor, torchSavePickle, writeTorchSave, type SaveValue } from '../../src/io/torch-save.js';
import { readTorchCheckpoint, readTorchPickle, TensorRef } from '../../src/io/torch-checkpoint.js';
import { ZipFile } from '../../src/io/zip-reader.js';
import { crc32 } from '../../src/io/zip-writer.js';
import { floatToHalf } from '../../src/io/safetensors.js';
import { runPython, torchPython } from '../helpers/torch-python.js';
import { weightsOnlyScan } from '../helpers/weights-only.js';

describe('torch.save writer', () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), 'setar-torchsave-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const w = Float32Array.from({ length: 6 }, (_, i) => i / 4 - 0.6);
  const shared = new SaveTensor('F32', [2, 3], w);
  const value = (): SaveValue => new Map<string, SaveValue>([
    ['state_dict', new PyOrderedDict(new Map<string, SaveValue>([
      ['w', shared],
      ['h', new SaveTensor('F16', [2], Uint16Array.of(floatToHalf(0.5), floatToHalf(-2)))],
      ['d', new SaveTensor('F64', [1, 1], Float64Array.of(Math.PI))],
      ['i', new SaveTensor('I64', [3], BigInt64Array.of(-1n, 2n ** 40n, 7n))],
      ['s', new SaveTensor('F32', [], Float32Array.of(3))],
    ]))],
    ['epoch', 50],
    ['big', 2n ** 70n],
    ['neg', -70000],
    ['lr', 0.002],
    ['t_max', new PyFloat(50)],
    ['flags', [true, false, null, 'é']],
    ['pair', new PyTuple([1, new PyFloat(2), 3, 4])],
    ['again', shared],
    ['groups', [new Map<string | number, SaveValue>([['params', [0]], [0, 'int key']])]],
  ]);

  it('round-trips through the reader: tensors (shared storage), ints, floats, lists, tuples, dicts', () => {
    const p = join(dir, 'model.pth.tar-50');
    writeTorchSave(p, value());
    readTorchPickle(p, (root, read) => {
      const top = root as Map<string, unknown>;
      const sd = top.get('state_dict') as Map<string, TensorRef>;
      assert.deepEqual([...sd.keys()], ['w', 'h', 'd', 'i', 's']);
      assert.deepEqual([...read(sd.get('w')!, 'w').data], [...w]);
      assert.deepEqual([...read(sd.get('h')!, 'h').data], [0.5, -2]);
      assert.deepEqual([...read(sd.get('d')!, 'd').data], [Math.PI]);
      assert.deepEqual([...read(sd.get('i')!, 'i').data as BigInt64Array], [-1n, 2n ** 40n, 7n]);
      assert.deepEqual(read(sd.get('s')!, 's').shape, []);
      assert.equal(top.get('again'), sd.get('w')); // the same object, memoized
      assert.equal(top.get('epoch'), 50);
      assert.equal(top.get('big'), 2n ** 70n);
      assert.equal(top.get('neg'), -70000);
      assert.equal(top.get('lr'), 0.002);
      assert.equal(top.get('t_max'), 50);
      assert.deepEqual(top.get('flags'), [true, false, null, 'é']);
      assert.deepEqual(top.get('pair'), [1, 2, 3, 4]);
      assert.ok(Object.isFrozen(top.get('pair')));
      assert.deepEqual([...(top.get('groups') as Map<unknown, unknown>[])[0]!], [['params', [0]], [0, 'int key']]);
    });
    // the state dict alone reads with the strict reader
    const q = join(dir, 'sd.bin');
    writeTorchSave(q, new PyOrderedDict(new Map([['w', new SaveTensor('F32', [2, 3], w)]])));
    assert.deepEqual([...readTorchCheckpoint(q).get('w')!.data], [...w]);
  });

  it('uses only the opcodes and globals of torch\'s weights_only unpickler', () => {
    const globals = weightsOnlyScan(torchSavePickle(value()).pkl);
    assert.deepEqual([...new Set(globals)].sort(), [
      'collections.OrderedDict', 'torch.DoubleStorage', 'torch.FloatStorage', 'torch.HalfStorage', 'torch.LongStorage', 'torch._utils._rebuild_tensor_v2',
    ]);
  });

  it('lays the zip out as torch does: one archive folder, records 64-byte aligned, CRC-32 right', () => {
    const p = join(dir, 'model.pth.tar-7');
    writeTorchSave(p, value());
    const zip = ZipFile.open(p);
    try {
      assert.deepEqual([...zip.entries.keys()], [
        'model.pth/data.pkl', 'model.pth/byteorder', 'model.pth/data/0', 'model.pth/data/1', 'model.pth/data/2', 'model.pth/data/3', 'model.pth/data/4', 'model.pth/version',
      ]);
      const bytes = readFileSync(p);
      for (const e of zip.entries.values()) {
        const nameLen = bytes.readUInt16LE(e.localHeaderOffset + 26);
        const extraLen = bytes.readUInt16LE(e.localHeaderOffset + 28);
        const start = e.localHeaderOffset + 30 + nameLen + extraLen;
        assert.equal(start % 64, 0, `${e.name} data offset ${start}`);
        const data = zip.read(e.name);
        assert.equal(crc32(data), e.crc32 >>> 0, e.name);
        const z = (zlib as { crc32?: (d: Uint8Array) => number }).crc32;
        if (z) assert.equal(z(data) >>> 0, e.crc32 >>> 0);
      }
      assert.equal(zip.read('model.pth/version').toString(), '3\n');
    } finally {
      zip.close();
    }
  });

  it('refuses values it cannot write as plain data, naming where they are', () => {
    assert.throws(() => torchSavePickle(new Map([['opt', new Map([['fn', (() => 1) as unknown as SaveValue]])]])), /value\['opt'\]\['fn'\]: cannot pickle function; torch\.save files written here hold only dicts/);
    assert.throws(() => torchSavePickle(new Map([[true as unknown as string, 1]])), /value: dict key true must be a string or an integer/);
    assert.throws(() => new SaveTensor('F32', [2, 2], new Float32Array(3)), /tensor of shape \[2, 2\] needs 4 values, got 3/);
    assert.throws(() => new SaveTensor('F16', [1], new Float32Array(1)), /an F16 tensor takes its binary16 bits as a Uint16Array, got Float32Array/);
  });

  // torch.load's weights_only unpickler reads BINFLOAT from torch 2.0 on (1.13, Debian's, lacks it):
  // with an older torch, weights_only=True is checked on the float-free state dict only.
  it('loads with torch.load, weights_only True and False (when PyTorch is on this machine)', (t) => {
    const py = torchPython();
    if (!py) {
      t.skip('no Python with torch here (set SETAR_TORCH_PYTHON to check against torch.load)');
      return;
    }
    const p = join(dir, 'model.pth.tar-3');
    writeTorchSave(p, value());
    const q = join(dir, 'state_dict.bin');
    writeTorchSave(q, new PyOrderedDict(new Map([['w', new SaveTensor('F32', [2, 3], w)]])));
    const out = runPython(py, `
import sys, torch, json
res = {'major': int(torch.__version__.split('.')[0])}
if res['major'] < 2:
    sd = torch.load(sys.argv[2], weights_only=True)
    res['sd_only'] = {'type': type(sd).__name__, 'w': sd['w'].tolist()}
for wo in ((True, False) if res['major'] >= 2 else (False,)):
    c = torch.load(sys.argv[1], weights_only=wo)
    sd = c['state_dict']
    res[str(wo)] = {
        'type': type(sd).__name__, 'w': sd['w'].tolist(), 'h': sd['h'].tolist(), 'hdtype': str(sd['h'].dtype),
        'i': [str(x) for x in sd['i'].tolist()], 's': sd['s'].item(), 'sshape': list(sd['s'].shape),
        'shared': c['again'].data_ptr() == sd['w'].data_ptr(), 'epoch': c['epoch'], 'big': str(c['big']),
        't_max': repr(c['t_max']), 'pair': list(c['pair']), 'flags': c['flags'], 'groups': [[k, v] for k, v in c['groups'][0].items()],
    }
print(json.dumps(res))
`, [p, q]);
    const res = JSON.parse(out.trim().split('\n').pop()!) as Record<string, Record<string, unknown>> & { major: number };
    if (res.major < 2) assert.deepEqual(res.sd_only, { type: 'OrderedDict', w: [[...w.subarray(0, 3)], [...w.subarray(3)]] });
    for (const wo of res.major >= 2 ? ['True', 'False'] : ['False']) {
      const r = res[wo]!;
      assert.equal(r.type, 'OrderedDict');
      assert.deepEqual(r.w, [[...w.subarray(0, 3)], [...w.subarray(3)]]);
      assert.deepEqual(r.h, [0.5, -2]);
      assert.equal(r.hdtype, 'torch.float16');
      assert.deepEqual(r.i, ['-1', String(2n ** 40n), '7']);
      assert.equal(r.s, 3);
      assert.deepEqual(r.sshape, []);
      assert.equal(r.shared, true);
      assert.equal(r.epoch, 50);
      assert.equal(r.big, String(2n ** 70n));
      assert.equal(r.t_max, '50.0');
      assert.deepEqual(r.pair, [1, 2, 3, 4]);
      assert.deepEqual(r.flags, [true, false, null, 'é']);
      assert.deepEqual(r.groups, [['params', [0]], [0, 'int key']]);
    }
  });
});
