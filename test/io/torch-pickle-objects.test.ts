import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readTorchCheckpoint, readTorchPickle, TensorRef, TorchCheckpointError, unpickle } from '../../src/io/torch-checkpoint.js';
import { PythonGlobal, PythonObject } from '../../src/io/python-objects.js';
import {
  b, BINUNICODE, dasslCheckpointValue, EMPTY_TUPLE, GLOBAL, MARK, PROTO2, REDUCE, STOP, TUPLE, TUPLE1, TUPLE2, writeTorchPickle,
} from '../helpers/torch-zip.js';

/**
 * Pickles that hold Python objects besides tensors (Dassl's LoCoOp checkpoints): with
 * `placeholders: true` they become inert PythonGlobal / PythonObject records; nothing is imported
 * or called, and the state-dict reader still refuses them.
 */

// CPython 3.11 pickle.dumps(numpy.float64(43.75), protocol=2), numpy 2.4: a numpy scalar as
// numpy._core.multiarray.scalar(numpy.dtype('f8', False, True) + BUILD state, _codecs.encode(bytes)).
const NUMPY_SCALAR_HEX =
  '8002636e756d70792e5f636f72652e6d756c746961727261790a7363616c61720a7100636e756d70790a64747970650a71015802000000663871028988877103527104284b0358010000003c71054e4e4e4affffffff4affffffff4b0074710662635f636f646563730a656e636f64650a710758090000000000000000c3a04540710858060000006c6174696e31710986710a52710b86710c52710d2e';

// CPython 3.11 pickle.dumps(obj, protocol=5) of
//   {'b': b'\x00\x01', 'ba': bytearray(b'xy'), 's': {1, 2}, 'fs': frozenset({3}), 'big': 2**70, 'neg': -2**70,
//    'slots': labs.tools.Slotted() (a=1 in __slots__, b='two' in __dict__),
//    'ex': labs.tools.Ex(5, k=6) (with __getnewargs_ex__ → ((5,), {'k': 6}))}
// FRAME, MEMOIZE, SHORT_BINUNICODE, SHORT_BINBYTES, BYTEARRAY8, EMPTY_SET/ADDITEMS, FROZENSET, LONG1,
// STACK_GLOBAL, NEWOBJ, BUILD with a (dict, slots) state, NEWOBJ_EX.
const PROTOCOL5_HEX =
  '800595be000000000000007d94288c01629443020001948c026261949602000000000000007879948c0173948f94284b014b02908c02667394284b0391948c03626967948a090000000000000000408c036e6567948a090000000000000000c08c05736c6f7473948c0a6c6162732e746f6f6c73948c07536c6f747465649493942981947d9468018c0374776f94737d948c0161944b01738694628c02657894680c8c0245789493944b0585947d948c016b944b067392947d94288c0178944b05681a4b067562752e';

const asMap = (v: unknown): Map<unknown, unknown> => {
  assert.ok(v instanceof Map, `expected a dict, got ${String(v)}`);
  return v;
};

describe('torch pickles with Python objects (placeholders)', () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), 'setar-pyobj-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const ctx = { dtype: 'F32' as const, shape: [4, 3], data: Float32Array.from({ length: 12 }, (_, i) => i / 8 - 0.5) };

  it('reads a Dassl checkpoint: the tensors, and the scheduler → CosineAnnealingLR → SGD objects as inert records', () => {
    const p = join(dir, 'model.pth.tar-2');
    writeTorchPickle(p, dasslCheckpointValue({ ctx, epoch: 2, valResult: { float: 43.75 } }));
    readTorchPickle(p, (root, read) => {
      const top = asMap(root);
      assert.deepEqual([...top.keys()], ['state_dict', 'epoch', 'optimizer', 'scheduler', 'val_result']);
      assert.equal(top.get('epoch'), 2);
      assert.equal(top.get('val_result'), 43.75);
      const ref = asMap(top.get('state_dict')).get('ctx');
      assert.ok(ref instanceof TensorRef);
      const t = read(ref, 'state_dict.ctx');
      assert.deepEqual(t.shape, [4, 3]);
      assert.deepEqual([...t.data], [...ctx.data]);

      const successor = asMap(top.get('scheduler')).get('successor');
      assert.ok(successor instanceof PythonObject);
      assert.equal(successor.type, 'torch.optim.lr_scheduler.CosineAnnealingLR');
      assert.equal(successor.origin, 'NEWOBJ');
      assert.equal(successor.attribute('T_max'), 50);
      const sgd = successor.attribute('optimizer');
      assert.ok(sgd instanceof PythonObject);
      assert.equal(sgd.type, 'torch.optim.sgd.SGD');
      assert.equal(sgd.describe(), 'a torch.optim.sgd.SGD object');
      // SGD.state is defaultdict(dict) keyed by the ctx Parameter, which shares ctx's storage
      const state = sgd.attribute('state');
      assert.ok(state instanceof PythonObject);
      assert.equal(state.type, 'collections.defaultdict');
      assert.ok(state.args[0] instanceof PythonGlobal && state.args[0].qualified === '__builtin__.dict');
      const [[param, slot]] = [...state.items];
      assert.ok(param instanceof TensorRef);
      assert.equal(param.storage.key, '0');
      assert.deepEqual([...read(param, 'param').data], [...ctx.data]);
      const momentum = read(asMap(slot).get('momentum_buffer') as TensorRef, 'momentum_buffer');
      assert.equal(momentum.data[1], Math.fround(Math.sin(1) / 100));
      // the optimizer's own state dict is plain data
      const groups = asMap(top.get('optimizer')).get('param_groups') as Map<string, unknown>[];
      assert.equal(groups[0]!.get('momentum'), 0.9);
    }, { placeholders: true });
  });

  it('the state-dict reader still refuses such a file, naming the first unknown global', () => {
    const p = join(dir, 'strict.pth.tar-2');
    writeTorchPickle(p, dasslCheckpointValue({ ctx, epoch: 2 }));
    assert.throws(() => readTorchCheckpoint(p), /strict\.pth\.tar-2': pickle asks for global 'torch\.optim\.lr_scheduler\.CosineAnnealingLR' \(data\.pkl byte \d+\); setar only loads tensors/);
    assert.throws(() => readTorchPickle(p, () => 0), /global 'torch\.optim\.lr_scheduler\.CosineAnnealingLR'/);
  });

  it('a pickled os.system / eval / Popen call is recorded, never run: no file appears', () => {
    const marker = join(dir, 'pwned');
    const cmd = `touch ${marker}`;
    // os.system(cmd) as CPython pickles it (protocol 2: the function's module is posix)
    const system = Buffer.concat([PROTO2, GLOBAL('posix', 'system'), BINUNICODE(cmd), TUPLE1, REDUCE, STOP]);
    const v = unpickle(system, 'evil.pkl', { placeholders: true });
    assert.ok(v instanceof PythonObject);
    assert.equal(v.type, 'posix.system');
    assert.equal(v.origin, 'REDUCE');
    assert.deepEqual(v.args, [cmd]);
    assert.equal(v.describe(), 'a call of posix.system (not run)');
    // builtins.eval("__import__('os').system(...)"), subprocess.Popen(['touch', marker]),
    // and getattr(__import__('os'), 'system')(cmd): a call of a call
    const evalCall = Buffer.concat([PROTO2, GLOBAL('builtins', 'eval'), BINUNICODE(`__import__('os').system('${cmd}')`), TUPLE1, REDUCE, STOP]);
    assert.equal((unpickle(evalCall, 'e.pkl', { placeholders: true }) as PythonObject).type, 'builtins.eval');
    const popen = Buffer.concat([PROTO2, GLOBAL('subprocess', 'Popen'), b(0x5d), MARK, BINUNICODE('touch'), BINUNICODE(marker), b(0x65), TUPLE1, REDUCE, STOP]);
    const pv = unpickle(popen, 'p.pkl', { placeholders: true }) as PythonObject;
    assert.equal(pv.type, 'subprocess.Popen');
    assert.deepEqual(pv.args, [['touch', marker]]);
    const chained = Buffer.concat([
      PROTO2, GLOBAL('builtins', 'getattr'), GLOBAL('builtins', '__import__'), BINUNICODE('os'), TUPLE1, REDUCE, BINUNICODE('system'), TUPLE2, REDUCE,
      BINUNICODE(cmd), TUPLE1, REDUCE, STOP]);
    const cv = unpickle(chained, 'c.pkl', { placeholders: true }) as PythonObject;
    assert.ok(cv.callee instanceof PythonObject);
    assert.equal(cv.type, 'builtins.getattr');
    assert.deepEqual(cv.args, [cmd]);
    // the same call inside a real torch zip, read through the file reader
    const p = join(dir, 'evil.pth.tar-1');
    writeTorchPickle(p, null, system);
    const root = readTorchPickle(p, (r) => r, { placeholders: true });
    assert.ok(root instanceof PythonObject && root.type === 'posix.system');
    assert.equal(existsSync(marker), false);
    // and without placeholders it is refused by name, as before
    assert.throws(() => unpickle(system, 'evil.pkl'), /'evil\.pkl': pickle asks for global 'posix\.system' \(data\.pkl byte 2\); setar only loads tensors/);
  });

  it('a numpy scalar (CPython bytes) becomes a call record of numpy._core.multiarray.scalar', () => {
    const v = unpickle(Buffer.from(NUMPY_SCALAR_HEX, 'hex'), 'np.pkl', { placeholders: true });
    assert.ok(v instanceof PythonObject);
    assert.equal(v.type, 'numpy._core.multiarray.scalar');
    const [dtype, data] = v.args as [PythonObject, PythonObject];
    assert.equal(dtype.type, 'numpy.dtype');
    assert.deepEqual(dtype.args, ['f8', false, true]);
    assert.deepEqual(dtype.state, [3, '<', null, null, null, -1, -1, 0]);
    assert.equal(data.type, '_codecs.encode');
    assert.equal(data.args[1], 'latin1');
    assert.throws(() => unpickle(Buffer.from(NUMPY_SCALAR_HEX, 'hex'), 'np.pkl'), /global 'numpy\._core\.multiarray\.scalar'/);
  });

  it('protocol 5 (CPython bytes): frames, memo, bytes, sets, big ints, slots state, NEWOBJ_EX', () => {
    const v = asMap(unpickle(Buffer.from(PROTOCOL5_HEX, 'hex'), 'p5.pkl', { placeholders: true }));
    assert.deepEqual([...(v.get('b') as Uint8Array)], [0, 1]);
    assert.deepEqual([...(v.get('ba') as Uint8Array)], [0x78, 0x79]);
    assert.deepEqual([...(v.get('s') as Set<number>)], [1, 2]);
    assert.deepEqual([...(v.get('fs') as Set<number>)], [3]);
    assert.equal(v.get('big'), 2n ** 70n);
    assert.equal(v.get('neg'), -(2n ** 70n));
    const slots = v.get('slots') as PythonObject;
    assert.equal(slots.type, 'labs.tools.Slotted');
    assert.equal(slots.attribute('a'), 1);
    assert.equal(slots.attribute('b'), 'two');
    const ex = v.get('ex') as PythonObject;
    assert.equal(ex.origin, 'NEWOBJ_EX');
    assert.deepEqual(ex.args, [5]);
    assert.deepEqual([...ex.kwargs!], [['k', 6]]);
    assert.equal(ex.attribute('x'), 5);
    // plain data needs no placeholders: BINBYTES (protocol 3) and the protocol 5 bytes alone
    const binbytes = Buffer.concat([b(0x80, 0x03), b(0x42, 44, 1, 0, 0), Buffer.alloc(300, 0x79), STOP]);
    assert.equal((unpickle(binbytes, 'bb.pkl') as Uint8Array).length, 300);
    assert.throws(() => unpickle(Buffer.from(PROTOCOL5_HEX, 'hex'), 'p5.pkl'), /global 'labs\.tools\.Slotted'/);
  });

  it('placeholders are inert values, not callables: BUILD or SETITEM on a tensor still fails, refused opcodes name why', () => {
    const g = unpickle(Buffer.concat([PROTO2, GLOBAL('torch.optim.sgd', 'SGD'), STOP]), 'g.pkl', { placeholders: true });
    assert.ok(g instanceof PythonGlobal);
    assert.equal(g.qualified, 'torch.optim.sgd.SGD');
    // NEWOBJ on an allow-listed global is not something a state dict does
    assert.throws(() => unpickle(Buffer.concat([PROTO2, GLOBAL('collections', 'OrderedDict'), EMPTY_TUPLE, b(0x81), STOP]), 'n.pkl', { placeholders: true }),
      /'n\.pkl': data\.pkl byte \d+ \(NEWOBJ\): NEWOBJ of global 'collections\.OrderedDict' is not supported/);
    // a placeholder in a persistent id is not a storage type
    const pid = Buffer.concat([PROTO2, MARK, BINUNICODE('storage'), GLOBAL('posix', 'system'), BINUNICODE('0'), BINUNICODE('cpu'), b(0x4b, 1), TUPLE, b(0x51), STOP]);
    assert.throws(() => unpickle(pid, 'pid.pkl', { placeholders: true }), /persistent id names storage type global 'posix\.system'; supported: FloatStorage/);
    assert.throws(() => unpickle(Buffer.concat([b(0x80, 0x02), b(0x82, 7), STOP]), 'x.pkl', { placeholders: true }),
      /'x\.pkl': data\.pkl byte 2: unsupported pickle opcode 0x82, EXT1 \(copyreg extension registry\)/);
    assert.throws(() => unpickle(Buffer.concat([b(0x80, 0x05), b(0x97), STOP]), 'x.pkl', { placeholders: true }), /0x97, NEXT_BUFFER \(out-of-band buffer\)/);
    assert.throws(() => unpickle(Buffer.concat([PROTO2, Buffer.from('ios\nsystem\n'), STOP]), 'x.pkl', { placeholders: true }), /0x69 \('i'\), INST/);
  });

  it('errors are TorchCheckpointError naming the file', () => {
    assert.throws(() => unpickle(Buffer.concat([PROTO2, GLOBAL('a', 'b'), STOP]), 'named.pkl'), (e: unknown) => e instanceof TorchCheckpointError && e.file === 'named.pkl');
  });
});
