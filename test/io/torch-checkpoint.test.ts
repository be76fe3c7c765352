import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { readTorchCheckpoint, TorchCheckpointError, unpickle } from '../../src/io/torch-checkpoint.js';
import { floatToHalf, halfToFloat } from '../../src/io/safetensors.js';
import {
  b, BINGET, BININT1, BINPERSID, BINPUT, BINUNICODE, BUILD, bytesOf, EMPTY_DICT, EMPTY_TUPLE, GLOBAL, makeZip, MARK, NEWFALSE, PROTO2,
  REDUCE, SETITEM, SETITEMS, STOP, torchStateDictPickle, TUPLE, TUPLE1, TUPLE2, writeTorchCheckpoint,
} from '../helpers/torch-zip.js';

/**
 * The state-dict pickle torch.save writes (protocol 2) for
 *   OrderedDict(w = float32 [2,3] on storage '0' (6 elements),
 *               h = float16 [4] at storage_offset 1 of storage '1' (5 elements),
 *               ids = int64 [2] on storage '2'),  _metadata = {'': {'version': 1}}
 * spelled out opcode by opcode. CPython's own pickle.Pickler(protocol=2), given torch.save's
 * persistent_id and the same globals, produces exactly these bytes (CPYTHON_HEX below, recorded with
 * fake `torch`/`torch._utils` modules since there is no torch here); the test checks they agree.
 *
 *   PROTO 2
 *   GLOBAL 'collections OrderedDict' BINPUT 0  EMPTY_TUPLE REDUCE BINPUT 1     ← the state dict
 *   MARK                                                                      ← its items
 *     'w' : GLOBAL 'torch._utils _rebuild_tensor_v2' BINPUT 3
 *           MARK                                                              ← args tuple (6)
 *             MARK 'storage' GLOBAL 'torch FloatStorage' '0' 'cpu' 6 TUPLE   ← persistent id
 *             BINPERSID                                                       ← storage
 *             0 (2,3) (3,1) False OrderedDict()                               ← offset, size, stride, requires_grad, hooks
 *           TUPLE REDUCE
 *     'h' : ... ('storage', HalfStorage, '1', 'cpu', 5) offset 1, (4,), (1,) ...
 *     'ids': ... ('storage', LongStorage, '2', 'cpu', 2) offset 0, (2,), (1,) ...
 *   SETITEMS
 *   {'_metadata': OrderedDict('': {'version': 1})} BUILD                      ← state dict's attribute
 *   STOP
 */
function cpythonLayoutPickle(): Buffer {
  return Buffer.concat([
    PROTO2,
    GLOBAL('collections', 'OrderedDict'), BINPUT(0), EMPTY_TUPLE, REDUCE, BINPUT(1),
    MARK,
    // 'w'
    BINUNICODE('w'), BINPUT(2),
    GLOBAL('torch._utils', '_rebuild_tensor_v2'), BINPUT(3),
    MARK,
    MARK, BINUNICODE('storage'), BINPUT(4), GLOBAL('torch', 'FloatStorage'), BINPUT(5),
    BINUNICODE('0'), BINPUT(6), BINUNICODE('cpu'), BINPUT(7), BININT1(6), TUPLE, BINPUT(8),
    BINPERSID,
    BININT1(0), BININT1(2), BININT1(3), TUPLE2, BINPUT(9), BININT1(3), BININT1(1), TUPLE2, BINPUT(10),
    NEWFALSE, BINGET(0), EMPTY_TUPLE, REDUCE, BINPUT(11),
    TUPLE, BINPUT(12), REDUCE, BINPUT(13),
    // 'h'
    BINUNICODE('h'), BINPUT(14), BINGET(3),
    MARK,
    MARK, BINGET(4), GLOBAL('torch', 'HalfStorage'), BINPUT(15), BINUNICODE('1'), BINPUT(16), BINGET(7), BININT1(5), TUPLE, BINPUT(17),
    BINPERSID,
    BININT1(1), BININT1(4), TUPLE1, BINPUT(18), BININT1(1), TUPLE1, BINPUT(19),
    NEWFALSE, BINGET(0), EMPTY_TUPLE, REDUCE, BINPUT(20),
    TUPLE, BINPUT(21), REDUCE, BINPUT(22),
    // 'ids'
    BINUNICODE('ids'), BINPUT(23), BINGET(3),
    MARK,
    MARK, BINGET(4), GLOBAL('torch', 'LongStorage'), BINPUT(24), BINUNICODE('2'), BINPUT(25), BINGET(7), BININT1(2), TUPLE, BINPUT(26),
    BINPERSID,
    BININT1(0), BININT1(2), TUPLE1, BINPUT(27), BINGET(19),
    NEWFALSE, BINGET(0), EMPTY_TUPLE, REDUCE, BINPUT(28),
    TUPLE, BINPUT(29), REDUCE, BINPUT(30),
    SETITEMS,
    // state: {'_metadata': OrderedDict([('', {'version': 1})])}
    EMPTY_DICT, BINPUT(31), BINUNICODE('_metadata'), BINPUT(32),
    BINGET(0), EMPTY_TUPLE, REDUCE, BINPUT(33),
    BINUNICODE(''), BINPUT(34), EMPTY_DICT, BINPUT(35), BINUNICODE('version'), BINPUT(36), BININT1(1), SETITEM,
    SETITEM, SETITEM, BUILD,
    STOP,
  ]);
}

/** CPython 3.11 pickle.Pickler(protocol=2) output for the same state dict (see cpythonLayoutPickle). */
const CPYTHON_HEX =
  '800263636f6c6c656374696f6e730a4f726465726564446963740a71002952710128580100000077710263746f7263682e5f7574696c730a5f7265' +
  '6275696c645f74656e736f725f76320a71032828580700000073746f72616765710463746f7263680a466c6f617453746f726167650a7105580100' +
  '000030710658030000006370757107' + '4b06747108514b004b024b038671094b034b0186710a8968002952710b74710c52710d580100000068710e' +
  '68032828680463746f7263680a48616c6653746f726167650a710f580100000031711068074b05747111514b014b048571124b0185711389680029' +
  '5271147471155271165803000000696473711768032828680463746f7263680a4c6f6e6753746f726167650a7118580100000032711968074b0274' +
  '711a514b004b0285711b68138968002952711c74711d52711e757d711f58090000005f6d657461646174617120680029527121580000000071227d' +
  '7123580700000076657273696f6e71244b01737373622e';

interface TensorSpec {
  name: string;
  storage: string; // torch storage class, e.g. 'FloatStorage'
  key: string;
  numel: number;
  offset: number;
  size: number[];
  stride: number[];
}

/** A plainer state-dict pickle (no memo), for the error cases. */
function simplePickle(tensors: TensorSpec[]): Buffer {
  const tuple = (xs: number[]) => Buffer.concat([MARK, ...xs.map(BININT1), TUPLE]);
  const parts: Buffer[] = [PROTO2, GLOBAL('collections', 'OrderedDict'), EMPTY_TUPLE, REDUCE, MARK];
  for (const t of tensors) {
    parts.push(
      BINUNICODE(t.name), GLOBAL('torch._utils', '_rebuild_tensor_v2'),
      MARK,
      MARK, BINUNICODE('storage'), GLOBAL('torch', t.storage), BINUNICODE(t.key), BINUNICODE('cpu'), BININT1(t.numel), TUPLE, BINPERSID,
      BININT1(t.offset), tuple(t.size), tuple(t.stride), NEWFALSE, GLOBAL('collections', 'OrderedDict'), EMPTY_TUPLE, REDUCE,
      TUPLE, REDUCE);
  }
  parts.push(SETITEMS, STOP);
  return Buffer.concat(parts);
}

const W = Float32Array.from([0.5, -1, 2, 3.25, 0.001, 100]);
const H_BITS = Uint16Array.from([0x7e00, floatToHalf(1), floatToHalf(-2), floatToHalf(0.5), 0x7bff]); // [0] is skipped (offset 1)
const IDS = BigInt64Array.of(-3n, 2n ** 40n);

/** The records of a torch.save checkpoint of the state dict in cpythonLayoutPickle. */
function torchRecords(pkl: Uint8Array, prefix = 'pytorch_model/'): [string, Uint8Array][] {
  return [
    [`${prefix}data.pkl`, pkl],
    [`${prefix}byteorder`, Buffer.from('little')],
    [`${prefix}data/0`, bytesOf(W)],
    [`${prefix}data/1`, bytesOf(H_BITS)],
    [`${prefix}data/2`, bytesOf(IDS)],
    [`${prefix}version`, Buffer.from('3\n')],
    [`${prefix}.data/serialization_id`, Buffer.from('0123456789')],
  ];
}

describe('torch checkpoint (pytorch_model.bin)', () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), 'setar-torch-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));
  const write = (name: string, data: Uint8Array) => {
    const p = join(dir, name);
    writeFileSync(p, data);
    return p;
  };

  it('the hand-assembled pickle is byte for byte what CPython pickles for torch.save', () => {
    assert.equal(cpythonLayoutPickle().toString('hex'), CPYTHON_HEX);
  });

  it('reads F32, F16 (storage_offset 1) and I64 tensors with their shapes, in state-dict order', () => {
    const p = write('pytorch_model.bin', makeZip(torchRecords(cpythonLayoutPickle())));
    const sd = readTorchCheckpoint(p);
    assert.deepEqual([...sd.keys()], ['w', 'h', 'ids']);
    const w = sd.get('w')!;
    assert.equal(w.dtype, 'F32');
    assert.deepEqual(w.shape, [2, 3]);
    assert.ok(w.data instanceof Float32Array);
    assert.deepEqual([...w.data], [...W]);
    const h = sd.get('h')!;
    assert.equal(h.dtype, 'F16');
    assert.deepEqual(h.shape, [4]);
    assert.ok(h.data instanceof Float32Array);
    assert.deepEqual([...h.data], [1, -2, 0.5, 65504]);
    const ids = sd.get('ids')!;
    assert.equal(ids.dtype, 'I64');
    assert.deepEqual(ids.shape, [2]);
    assert.deepEqual([...(ids.data as BigInt64Array)], [-3n, 2n ** 40n]);

    const raw = readTorchCheckpoint(p, { halfAs: 'raw' }).get('h')!;
    assert.ok(raw.data instanceof Uint16Array);
    assert.deepEqual([...raw.data].map(halfToFloat), [1, -2, 0.5, 65504]);
  });

  it('reads any archive folder name, DEFLATED records and big-endian storages', () => {
    const recs = torchRecords(cpythonLayoutPickle(), 'archive/').map(([n, d]): [string, Uint8Array] => {
      if (n === 'archive/byteorder') return [n, Buffer.from('big')];
      if (!n.includes('/data/')) return [n, d];
      const swapped = Buffer.from(d);
      const item = n.endsWith('/0') ? 4 : n.endsWith('/1') ? 2 : 8;
      for (let i = 0; i < swapped.length; i += item) swapped.subarray(i, i + item).reverse();
      return [n, swapped];
    });
    const p = write('be.bin', makeZip(recs, { deflate: ['archive/data.pkl', 'archive/data/1'] }));
    const sd = readTorchCheckpoint(p);
    assert.deepEqual([...sd.get('w')!.data], [...W]);
    assert.deepEqual([...sd.get('h')!.data], [1, -2, 0.5, 65504]);
    assert.deepEqual([...(sd.get('ids')!.data as BigInt64Array)], [-3n, 2n ** 40n]);
  });

  it('writeTorchCheckpoint pickles one tensor exactly as the CPython layout above (less _metadata)', () => {
    const pk = cpythonLayoutPickle();
    const mark = pk.indexOf(MARK, pk.indexOf(BINPUT(1)));
    const hAt = pk.indexOf(BINUNICODE('h'));
    const expected = Buffer.concat([pk.subarray(0, mark), pk.subarray(mark + 1, hAt), SETITEM, STOP]);
    assert.equal(torchStateDictPickle({ w: { dtype: 'F32', shape: [2, 3], data: W } }).toString('hex'), expected.toString('hex'));
  });

  it('writeTorchCheckpoint round-trips F32, F16 and I64, many tensors (LONG_BINPUT) and large sizes (BININT2)', () => {
    const tensors: Parameters<typeof writeTorchCheckpoint>[1] = {
      w: { dtype: 'F32', shape: [2, 3], data: W },
      h: { dtype: 'F16', shape: [2, 2], data: [1, -2, 0.5, 65504] },
      hb: { dtype: 'F16', shape: [1], data: Uint16Array.of(floatToHalf(0.25)) },
      ids: { dtype: 'I64', shape: [2], data: IDS },
      s: { dtype: 'F32', shape: [], data: [7] },
      big: { dtype: 'F32', shape: [300, 2, 1, 2], data: Float32Array.from({ length: 1200 }, (_, i) => i / 3) },
    };
    for (let i = 0; i < 40; i++) tensors[`layer.${i}.bias`] = { dtype: 'F32', shape: [3], data: [i, -i, i / 2] };
    const p = join(dir, 'helper.bin');
    writeTorchCheckpoint(p, tensors);
    const sd = readTorchCheckpoint(p);
    assert.deepEqual([...sd.keys()], Object.keys(tensors));
    for (const [name, t] of Object.entries(tensors)) {
      const got = sd.get(name)!;
      assert.equal(got.dtype, t.dtype, name);
      assert.deepEqual(got.shape, t.shape, name);
      if (name === 'hb') assert.deepEqual([...got.data], [0.25]);
      else if (t.dtype === 'I64') assert.deepEqual([...(got.data as BigInt64Array)], [...(t.data as BigInt64Array)]);
      else assert.deepEqual([...got.data], [...Float32Array.from(t.data as ArrayLike<number>)], name);
    }
  });

  it('refuses a pickle that asks for os.system, naming the global, without running anything', () => {
    const marker = join(dir, 'pwned');
    // GLOBAL 'os\nsystem\n', the argument tuple ('touch <marker>',), REDUCE → os.system('touch …') in Python.
    const evil = Buffer.concat([PROTO2, GLOBAL('os', 'system'), BINUNICODE(`touch ${marker}`), TUPLE1, REDUCE, STOP]);
    const p = write('evil.bin', makeZip([['archive/data.pkl', evil], ['archive/version', Buffer.from('3\n')]]));
    assert.throws(() => readTorchCheckpoint(p), (e: unknown) => {
      assert.ok(e instanceof TorchCheckpointError);
      assert.match(e.message, /evil\.bin': pickle asks for global 'os\.system' \(data\.pkl byte 2\); setar only loads tensors/);
      assert.equal(e.file, p);
      return true;
    });
    assert.equal(existsSync(marker), false);
    // the same through protocol 4's STACK_GLOBAL, and a builtins escape
    const stackGlobal = Buffer.concat([b(0x80, 0x04), b(0x8c, 5), Buffer.from('posix'), b(0x8c, 6), Buffer.from('system'), b(0x93), STOP]);
    assert.throws(() => unpickle(stackGlobal, 'x.bin'), /pickle asks for global 'posix\.system'/);
    assert.throws(() => unpickle(Buffer.concat([PROTO2, GLOBAL('builtins', 'eval'), STOP]), 'x.bin'), /global 'builtins\.eval'/);
    // an allowed module with a name outside the allow-list
    assert.throws(() => unpickle(Buffer.concat([PROTO2, GLOBAL('torch', 'load'), STOP]), 'x.bin'), /global 'torch\.load'/);
  });

  it('refuses unknown opcodes naming the byte and offset, and truncated pickles', () => {
    // INST (0x69 'i') instantiates a class by name in Python
    assert.throws(() => unpickle(Buffer.concat([PROTO2, Buffer.from('ios\nsystem\n'), STOP]), 'm.bin'),
      /'m\.bin': data\.pkl byte 2: unsupported pickle opcode 0x69 \('i'\)/);
    assert.throws(() => unpickle(Buffer.concat([PROTO2, BINUNICODE('abc').subarray(0, 6)]), 'm.bin'),
      /'m\.bin': data\.pkl byte 2 \(BINUNICODE\): pickle ends after 8 bytes/);
    assert.throws(() => unpickle(PROTO2, 'm.bin'), /'m\.bin': data\.pkl byte 2 .*pickle ends/);
  });

  it('names the file for a truncated zip, a non-zip and a zip without data.pkl', () => {
    const full = makeZip(torchRecords(cpythonLayoutPickle()));
    const cut = write('cut.bin', full.subarray(0, full.length - 100));
    assert.throws(() => readTorchCheckpoint(cut), /'.*cut\.bin' is not a zip file, or is truncated: no end-of-central-directory record/);
    const tiny = write('tiny.bin', Buffer.from('PK'));
    assert.throws(() => readTorchCheckpoint(tiny), /'.*tiny\.bin' is not a zip file, or is truncated/);
    const legacy = write('legacy.bin', Buffer.concat([PROTO2, b(0x8a, 0x0a), Buffer.alloc(64)]));
    assert.throws(() => readTorchCheckpoint(legacy), /legacy\.bin' .*legacy \(pre-1\.6\) torch\.save format/);
    const nopkl = write('nopkl.bin', makeZip([['archive/version', Buffer.from('3\n')]]));
    assert.throws(() => readTorchCheckpoint(nopkl), /'.*nopkl\.bin' has no data\.pkl record, so it is not a torch\.save checkpoint \(1 entries: 'archive\/version'\)/);
    assert.throws(() => readTorchCheckpoint(join(dir, 'absent.bin')), /cannot open '.*absent\.bin'/);
    // a data.pkl whose bytes no longer match the CRC in the directory
    const bad = Buffer.from(full);
    const at = bad.indexOf(Buffer.from('_rebuild_tensor_v2'));
    bad[at] = 0x5f ^ 1;
    const crcBad = write('crc.bin', bad);
    // Node >= 20.15 has zlib.crc32 and the check fires; older Nodes still refuse the altered global.
    assert.throws(() => readTorchCheckpoint(crcBad), /crc\.bin'.*(fails its CRC-32 check|global 'torch\._utils\.\^rebuild_tensor_v2')/);
  });

  it('names file and tensor for a missing storage record, a short storage and a non-contiguous tensor', () => {
    const t = (over: Partial<TensorSpec>): TensorSpec => ({ name: 'enc.w', storage: 'FloatStorage', key: '0', numel: 6, offset: 0, size: [2, 3], stride: [3, 1], ...over });
    const ok = write('ok.bin', makeZip([['a/data.pkl', simplePickle([t({})])], ['a/data/0', bytesOf(W)]]));
    assert.deepEqual([...readTorchCheckpoint(ok).get('enc.w')!.data], [...W]);

    const missing = write('missing.bin', makeZip([['a/data.pkl', simplePickle([t({ key: '7' })])], ['a/data/0', bytesOf(W)]]));
    assert.throws(() => readTorchCheckpoint(missing), (e: unknown) => {
      assert.ok(e instanceof TorchCheckpointError);
      assert.equal(e.tensor, 'enc.w');
      assert.match(e.message, /tensor 'enc\.w' in '.*missing\.bin': its storage record 'a\/data\/7' is missing from the archive/);
      return true;
    });
    const short = write('short.bin', makeZip([['a/data.pkl', simplePickle([t({})])], ['a/data/0', bytesOf(W).subarray(0, 20)]]));
    assert.throws(() => readTorchCheckpoint(short),
      /tensor 'enc\.w' in '.*short\.bin': storage record 'a\/data\/0' has 20 bytes, but 6 × F32 needs 24 \(short storage; truncated file\?\)/);
    const past = write('past.bin', makeZip([['a/data.pkl', simplePickle([t({ offset: 2 })])], ['a/data/0', bytesOf(W)]]));
    assert.throws(() => readTorchCheckpoint(past), /tensor 'enc\.w' in '.*past\.bin' needs elements \[2, 8\) of storage '0', which holds 6/);
    const transposed = write('t.bin', makeZip([['a/data.pkl', simplePickle([t({ size: [3, 2], stride: [1, 3] })])], ['a/data/0', bytesOf(W)]]));
    assert.throws(() => readTorchCheckpoint(transposed), /tensor 'enc\.w' in '.*t\.bin' is not contiguous \(size \[3, 2\], stride \[1, 3\]\)/);
    // size-1 dimensions may carry any stride (torch does that after unsqueeze)
    const unsq = write('u.bin', makeZip([['a/data.pkl', simplePickle([t({ size: [1, 6], stride: [1, 1] })])], ['a/data/0', bytesOf(W)]]));
    assert.deepEqual(readTorchCheckpoint(unsq).get('enc.w')!.shape, [1, 6]);
    const unknownStorage = write('cf.bin', makeZip([['a/data.pkl', simplePickle([t({ storage: 'ComplexFloatStorage' })])], ['a/data/0', bytesOf(W)]]));
    assert.throws(() => readTorchCheckpoint(unknownStorage), /cf\.bin'.*global 'torch\.ComplexFloatStorage'/);
  });

  it('reads a real pytorch_model.bin when one is on this machine (SETAR_TORCH_BIN)', (t) => {
    const real = process.env.SETAR_TORCH_BIN;
    if (!real || !existsSync(real)) {
      t.skip('no real torch checkpoint here (none found on this machine; set SETAR_TORCH_BIN to test one)');
      return;
    }
    const sd = readTorchCheckpoint(real);
    assert.ok(sd.size > 0);
    for (const [name, v] of sd) assert.equal(v.data.length, v.shape.reduce((a, c) => a * c, 1), name);
  });
});
