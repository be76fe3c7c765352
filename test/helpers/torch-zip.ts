import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { crc32, deflateRawSync } from 'node:zlib';
import { floatToHalf } from '../../src/io/safetensors.js';

// ---------------------------------------------------------------------------------------------
// Pickle opcodes, as CPython's pickle.py names them (protocol 2 subset torch.save emits).

export const b = (...xs: number[]) => Buffer.from(xs);
export const PROTO2 = b(0x80, 0x02);
export const MARK = b(0x28);
export const STOP = b(0x2e);
export const TUPLE = b(0x74);
export const TUPLE1 = b(0x85);
export const TUPLE2 = b(0x86);
export const TUPLE3 = b(0x87);
export const EMPTY_TUPLE = b(0x29);
export const EMPTY_DICT = b(0x7d);
export const REDUCE = b(0x52);
export const BUILD = b(0x62);
export const BINPERSID = b(0x51);
export const SETITEM = b(0x73);
export const SETITEMS = b(0x75);
export const NEWFALSE = b(0x89);
export const GLOBAL = (module: string, name: string) => Buffer.concat([b(0x63), Buffer.from(`${module}\n${name}\n`, 'latin1')]);
export const BINUNICODE = (s: string) => {
  const u = Buffer.from(s, 'utf8');
  const n = Buffer.alloc(4);
  n.writeUInt32LE(u.length);
  return Buffer.concat([b(0x58), n, u]);
};
export const BININT1 = (v: number) => b(0x4b, v);
export const BINPUT = (i: number) => b(0x71, i);
export const BINGET = (i: number) => b(0x68, i);

/** CPython's save_long for protocol >= 1 (non-negative and int32 ranges; LONG1 beyond). */
function int(v: number): Buffer {
  if (v >= 0 && v <= 0xff) return BININT1(v);
  if (v >= 0 && v <= 0xffff) { const x = Buffer.alloc(3); x[0] = 0x4d; x.writeUInt16LE(v, 1); return x; }
  if (v >= -(2 ** 31) && v < 2 ** 31) { const x = Buffer.alloc(5); x[0] = 0x4a; x.writeInt32LE(v, 1); return x; }
  let n = BigInt(v);
  const bytes: number[] = [];
  while (true) {
    bytes.push(Number(n & 0xffn));
    const top = n >> 7n;
    if (top === 0n || top === -1n) break;
    n >>= 8n;
  }
  return Buffer.concat([b(0x8a, bytes.length), Buffer.from(bytes)]);
}

// ---------------------------------------------------------------------------------------------
// Zip writer, laid out as torch's PyTorchStreamWriter (miniz) does: local header + data per record,
// every record STORED with its data padded to a 64-byte boundary by an extra field of id 'FB'
// (0x4246), then the central directory and the end record.

/** A zip of `records`, STORED and 64-byte aligned as torch writes them (names in `deflate` are DEFLATED instead). */
export function makeZip(records: [name: string, data: Uint8Array][], opts: { deflate?: string[] } = {}): Buffer {
  const chunks: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const [name, data] of records) {
    const nameBuf = Buffer.from(name, 'utf8');
    const deflated = opts.deflate?.includes(name) ?? false;
    const body = deflated ? deflateRawSync(data) : Buffer.from(data.buffer, data.byteOffset, data.byteLength);
    const crc = crc32(data);
    let extra = Buffer.alloc(0);
    if (!deflated) {
      const unpadded = offset + 30 + nameBuf.length + 4;
      const pad = (64 - (unpadded % 64)) % 64;
      extra = Buffer.alloc(4 + pad);
      extra.writeUInt16LE(0x4246, 0);
      extra.writeUInt16LE(pad, 2);
    }
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(deflated ? 8 : 0, 8);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBuf.length, 26);
    local.writeUInt16LE(extra.length, 28);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(20, 4);
    cd.writeUInt16LE(20, 6);
    cd.writeUInt16LE(deflated ? 8 : 0, 10);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(body.length, 20);
    cd.writeUInt32LE(data.length, 24);
    cd.writeUInt16LE(nameBuf.length, 28);
    cd.writeUInt32LE(offset, 42);
    central.push(cd, nameBuf);
    chunks.push(local, nameBuf, extra, body);
    if (!deflated) assert.equal((offset + 30 + nameBuf.length + extra.length) % 64, 0);
    offset += local.length + nameBuf.length + extra.length + body.length;
  }
  const cdBuf = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(records.length, 8);
  end.writeUInt16LE(records.length, 10);
  end.writeUInt32LE(cdBuf.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...chunks, cdBuf, end]);
}

export const bytesOf = (a: ArrayBufferView) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

// ---------------------------------------------------------------------------------------------
// torch.save of a state dict.

export type TorchZipDtype = 'F32' | 'F16' | 'I64';

/** One tensor to save. F16 data may be float values (rounded with floatToHalf) or raw binary16 bits. */
export interface TorchZipTensor {
  dtype: TorchZipDtype;
  shape: number[];
  data: Float32Array | Uint16Array | BigInt64Array | ArrayLike<number>;
}

const STORAGE: Record<TorchZipDtype, string> = { F32: 'FloatStorage', F16: 'HalfStorage', I64: 'LongStorage' };

function storageBytes(name: string, t: TorchZipTensor): Uint8Array {
  const numel = t.shape.reduce((a, c) => a * c, 1);
  if (t.data.length !== numel) throw new RangeError(`tensor '${name}': ${t.data.length} values for shape [${t.shape.join(', ')}]`);
  switch (t.dtype) {
    case 'F32':
      return bytesOf(t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as ArrayLike<number>));
    case 'F16':
      return bytesOf(t.data instanceof Uint16Array ? t.data : Uint16Array.from(t.data as ArrayLike<number>, (v) => floatToHalf(v)));
    case 'I64':
      return bytesOf(t.data instanceof BigInt64Array ? t.data : BigInt64Array.from(t.data as ArrayLike<number>, (v) => BigInt(v)));
  }
}

/**
 * The data.pkl torch.save writes (protocol 2, CPython's memo) for an OrderedDict of contiguous
 * tensors, each on its own storage keyed '0', '1', … in order:
 *   OrderedDict() { key: _rebuild_tensor_v2(persid ('storage', torch.<X>Storage, key, 'cpu', numel),
 *                                           0, size, stride, False, OrderedDict()) … }
 * Memo reuse follows object identity in torch: the OrderedDict and rebuild globals, each storage
 * class, and the interned 'storage' / 'cpu' strings are fetched back with BINGET; keys, size and
 * stride tuples are fresh objects every time.
 */
export function torchStateDictPickle(tensors: Record<string, TorchZipTensor>): Buffer {
  const out: Buffer[] = [PROTO2];
  let memoSize = 0;
  const put = () => { out.push(BINPUT0(memoSize)); return memoSize++; };
  // shared (identity-memoized) objects: emit once, BINGET afterwards
  const shared = new Map<string, number>();
  const once = (id: string, emit: () => Buffer) => {
    const at = shared.get(id);
    if (at !== undefined) { out.push(BINGET0(at)); return; }
    out.push(emit());
    shared.set(id, put());
  };
  const fresh = (bytes: Buffer) => { out.push(bytes); put(); };
  const tuple = (xs: number[]) => {
    if (xs.length === 0) { out.push(EMPTY_TUPLE); return; }
    if (xs.length > 3) out.push(MARK);
    for (const x of xs) out.push(int(x));
    out.push(xs.length > 3 ? TUPLE : [TUPLE1, TUPLE2, TUPLE3][xs.length - 1]!);
    put();
  };
  const orderedDict = () => once('g:collections.OrderedDict', () => GLOBAL('collections', 'OrderedDict'));

  orderedDict(); out.push(EMPTY_TUPLE, REDUCE); put();
  const names = Object.keys(tensors);
  for (let start = 0; start < names.length; start += 1000) {
    const batch = names.slice(start, start + 1000);
    if (batch.length > 1) out.push(MARK);
    for (const [i, name] of batch.entries()) {
      const t = tensors[name]!;
      const numel = t.shape.reduce((a, c) => a * c, 1);
      const stride = t.shape.map((_, d) => t.shape.slice(d + 1).reduce((a, c) => a * c, 1));
      fresh(BINUNICODE(name));
      once('g:torch._utils._rebuild_tensor_v2', () => GLOBAL('torch._utils', '_rebuild_tensor_v2'));
      out.push(MARK);
      out.push(MARK);
      once('s:storage', () => BINUNICODE('storage'));
      once(`g:torch.${STORAGE[t.dtype]}`, () => GLOBAL('torch', STORAGE[t.dtype]));
      fresh(BINUNICODE(String(start + i)));
      once('s:cpu', () => BINUNICODE('cpu'));
      out.push(int(numel), TUPLE); put();
      out.push(BINPERSID);
      out.push(int(0));
      tuple(t.shape);
      tuple(stride);
      out.push(NEWFALSE);
      orderedDict(); out.push(EMPTY_TUPLE, REDUCE); put();
      out.push(TUPLE); put();
      out.push(REDUCE); put();
    }
    out.push(batch.length > 1 ? SETITEMS : SETITEM);
  }
  out.push(STOP);
  return Buffer.concat(out);
}

// BINPUT/BINGET, switching to LONG_BINPUT/LONG_BINGET past 255 memo entries as CPython does.
function BINPUT0(i: number): Buffer {
  if (i < 256) return BINPUT(i);
  const x = Buffer.alloc(5); x[0] = 0x72; x.writeUInt32LE(i, 1); return x;
}
function BINGET0(i: number): Buffer {
  if (i < 256) return BINGET(i);
  const x = Buffer.alloc(5); x[0] = 0x6a; x.writeUInt32LE(i, 1); return x;
}

/** The zip records of torch.save(tensors, 'archive/...'): data.pkl, byteorder, data/<key>…, version, serialization id. */
export function torchCheckpointRecords(tensors: Record<string, TorchZipTensor>, archive = 'archive'): [string, Uint8Array][] {
  const recs: [string, Uint8Array][] = [
    [`${archive}/data.pkl`, torchStateDictPickle(tensors)],
    [`${archive}/byteorder`, Buffer.from('little')],
  ];
  Object.entries(tensors).forEach(([name, t], i) => recs.push([`${archive}/data/${i}`, storageBytes(name, t)]));
  recs.push([`${archive}/version`, Buffer.from('3\n')], [`${archive}/.data/serialization_id`, Buffer.from('0000000000000000000000000000000000000000')]);
  return recs;
}

/** Writes `tensors` to `path` as torch.save (zip format, torch >= 1.6) would, archive folder named after the file. */
export function writeTorchCheckpoint(path: string, tensors: Record<string, TorchZipTensor>): void {
  const base = path.replace(/^.*[\\/]/, '').replace(/\.[^.]*$/, '') || 'archive';
  writeFileSync(path, makeZip(torchCheckpointRecords(tensors, base)));
}

// ---------------------------------------------------------------------------------------------
// torch.save of any Python object (protocol 2, CPython's memo by identity): what Dassl checkpoints
// hold besides tensors — plain dicts, floats, lists, and pickled class instances.

/** A Python value to pickle. Plain JS: None, bool, int (integral number or bigint), str, list (array). */
export type Py =
  | null | boolean | number | bigint | string | readonly Py[]
  | { readonly float: number }                                  // a Python float, also when integral (50.0)
  | { readonly tuple: readonly Py[] }
  | { readonly dict: readonly (readonly [Py, Py])[] }           // dict, keys may be any value (tensors too)
  | { readonly ordered: readonly (readonly [Py, Py])[] }        // collections.OrderedDict
  | { readonly tensor: TorchZipTensor; readonly storage: string; readonly parameter?: boolean } // storage key shared by identity of key
  | { readonly global: string }                                 // a class or function itself, 'module.name'
  | { readonly newobj: string; readonly state: Py }             // cls.__new__(cls) then BUILD(state); cls as 'module.Name'
  | { readonly reduce: string; readonly args: readonly Py[]; readonly items?: readonly (readonly [Py, Py])[] }; // callable(*args), then SETITEMS

const isList = (v: Py): v is readonly Py[] => Array.isArray(v);

function splitQualified(q: string): [string, string] {
  const i = q.lastIndexOf('.');
  return [q.slice(0, i), q.slice(i + 1)];
}

function BINFLOAT(x: number): Buffer {
  const out = Buffer.alloc(9);
  out[0] = 0x47;
  out.writeDoubleBE(x, 1);
  return out;
}

/**
 * Pickles `value` as torch.save would (protocol 2): containers and instances are memoized on
 * first sight (BINPUT) and fetched back with BINGET when the same JS object appears again, so
 * shared objects (a Parameter in both an optimizer's state and its param_groups) stay shared.
 * Tensors are `_rebuild_tensor_v2` (wrapped in `_rebuild_parameter` if `parameter`) over the
 * named storage; returns the pickle and each storage's bytes.
 */
export function torchPickle(value: Py): { pkl: Buffer; storages: Map<string, Uint8Array> } {
  const out: Buffer[] = [PROTO2];
  const memo = new Map<unknown, number>();
  const globals = new Map<string, number>();
  const storages = new Map<string, Uint8Array>();
  const put = (obj: unknown) => { memo.set(obj, memo.size + globals.size); out.push(BINPUT0(memo.size + globals.size - 1)); };
  const global = (q: string) => {
    const at = globals.get(q);
    if (at !== undefined) { out.push(BINGET0(at)); return; }
    out.push(GLOBAL(...splitQualified(q)));
    const i = memo.size + globals.size;
    globals.set(q, i);
    out.push(BINPUT0(i));
  };
  const pairs = (items: readonly (readonly [Py, Py])[]) => {
    if (items.length === 0) return;
    out.push(MARK);
    for (const [k, v] of items) { emit(k); emit(v); }
    out.push(SETITEMS);
  };
  const emit = (v: Py): void => {
    if (v !== null && typeof v === 'object' && memo.has(v)) { out.push(BINGET0(memo.get(v)!)); return; }
    if (v === null) out.push(b(0x4e));
    else if (v === true) out.push(b(0x88));
    else if (v === false) out.push(NEWFALSE);
    else if (typeof v === 'number') out.push(Number.isInteger(v) ? int(v) : BINFLOAT(v));
    else if (typeof v === 'bigint') out.push(int(Number(v)));
    else if (typeof v === 'string') out.push(BINUNICODE(v));
    else if (isList(v)) {
      out.push(b(0x5d)); put(v);
      if (v.length) { out.push(MARK); v.forEach(emit); out.push(b(0x65)); }
    } else if ('float' in v) out.push(BINFLOAT(v.float));
    else if ('tuple' in v) {
      if (v.tuple.length === 0) { out.push(EMPTY_TUPLE); return; }
      out.push(MARK); v.tuple.forEach(emit); out.push(TUPLE); put(v);
    } else if ('dict' in v) { out.push(EMPTY_DICT); put(v); pairs(v.dict); }
    else if ('ordered' in v) { global('collections.OrderedDict'); out.push(EMPTY_TUPLE, REDUCE); put(v); pairs(v.ordered); }
    else if ('tensor' in v) {
      const t = v.tensor;
      const numel = t.shape.reduce((a, c) => a * c, 1);
      if (!storages.has(v.storage)) storages.set(v.storage, storageBytes(v.storage, t));
      if (v.parameter) global('torch._utils._rebuild_parameter');
      global('torch._utils._rebuild_tensor_v2');
      out.push(MARK, MARK, BINUNICODE('storage'));
      global(`torch.${STORAGE[t.dtype]}`);
      out.push(BINUNICODE(v.storage), BINUNICODE('cpu'), int(numel), TUPLE, BINPERSID, int(0));
      emit({ tuple: t.shape });
      emit({ tuple: t.shape.map((_, d) => t.shape.slice(d + 1).reduce((a, c) => a * c, 1)) });
      out.push(NEWFALSE);
      global('collections.OrderedDict'); out.push(EMPTY_TUPLE, REDUCE, TUPLE, REDUCE);
      if (v.parameter) { out.push(b(0x88)); global('collections.OrderedDict'); out.push(EMPTY_TUPLE, REDUCE, TUPLE3, REDUCE); }
      put(v);
    } else if ('global' in v) {
      global(v.global);
    } else if ('newobj' in v) {
      global(v.newobj); out.push(EMPTY_TUPLE, b(0x81)); put(v);
      emit(v.state); out.push(BUILD);
    } else {
      global(v.reduce);
      emit({ tuple: v.args });
      out.push(REDUCE); put(v);
      pairs(v.items ?? []);
    }
  };
  emit(value);
  out.push(STOP);
  return { pkl: Buffer.concat(out), storages };
}

/** Writes `value` as a torch.save zip (archive folder named after the file, as torch does). */
export function writeTorchPickle(path: string, value: Py, pkl?: Buffer): void {
  const base = path.replace(/^.*[\\/]/, '').replace(/\.[^.]*$/, '') || 'archive';
  const { pkl: own, storages } = torchPickle(value);
  const recs: [string, Uint8Array][] = [[`${base}/data.pkl`, pkl ?? own]];
  for (const [key, bytes] of storages) recs.push([`${base}/data/${key}`, bytes]);
  recs.push([`${base}/version`, Buffer.from('3\n')]);
  writeFileSync(path, makeZip(recs));
}

/** Contents of a LoCoOp prompt-learner checkpoint, as Dassl's trainer saves one. */
export interface DasslCheckpointSpec {
  ctx: TorchZipTensor; // [n, d], F32 or F16
  tokenPrefix?: TorchZipTensor; // [C, 1, d]
  tokenSuffix?: TorchZipTensor; // [C, 77 - 1 - n, d]
  epoch: number;
  valResult?: Py;
}

/**
 * The object Dassl's save_checkpoint pickles for LoCoOp's prompt learner after a few SGD steps with
 * the constant warm-up + cosine schedule (the layout a real torch.save of it has, see
 * test/reference/dassl_checkpoint.py):
 *   {"state_dict": OrderedDict(ctx, token_prefix, token_suffix), "epoch",
 *    "optimizer": {"state": {0: {"momentum_buffer"}}, "param_groups": [...]},
 *    "scheduler": {"cons_lr", "successor": <CosineAnnealingLR object, BUILD state holding
 *                  "optimizer": <SGD object: defaults, state = defaultdict(dict){Parameter: ...},
 *                  param_groups with the Parameter>>, "warmup_epoch", …},
 *    "val_result"}
 * The ctx Parameter shares storage '0' with state_dict.ctx, as in torch.
 */
export function dasslCheckpointValue(spec: DasslCheckpointSpec): Py {
  const [n, d] = spec.ctx.shape as [number, number];
  const momentum: TorchZipTensor = { dtype: 'F32', shape: [n, d], data: Float32Array.from({ length: n * d }, (_, i) => Math.sin(i) / 100) };
  const buffer = { dict: [['momentum_buffer', { tensor: momentum, storage: 'm' }]] } as const;
  const hyper = (lr: number): (readonly [Py, Py])[] => [
    ['lr', { float: lr }], ['momentum', { float: 0.9 }], ['dampening', 0], ['weight_decay', { float: 0.0005 }],
    ['nesterov', false], ['maximize', false], ['foreach', null], ['differentiable', false],
  ];
  const parameter = { tensor: spec.ctx, storage: '0', parameter: true };
  const sgd = {
    newobj: 'torch.optim.sgd.SGD',
    state: {
      dict: [
        ['defaults', { dict: hyper(0.002) }],
        ['state', { reduce: 'collections.defaultdict', args: [{ global: '__builtin__.dict' }], items: [[parameter, buffer]] }],
        ['param_groups', [{ dict: [['params', [parameter]], ...hyper(0.0019980267284282717), ['initial_lr', { float: 0.002 }]] }]],
      ],
    },
  } as const;
  const lastLr = [{ float: 0.0019980267284282717 }];
  const cosine = {
    newobj: 'torch.optim.lr_scheduler.CosineAnnealingLR',
    state: {
      dict: [
        ['T_max', { float: 50 }], ['eta_min', 0], ['optimizer', sgd], ['base_lrs', [{ float: 0.002 }]], ['last_epoch', 1],
        ['verbose', false], ['_step_count', 2], ['_get_lr_called_within_step', false], ['_last_lr', lastLr],
      ],
    },
  } as const;
  const stateDict: (readonly [Py, Py])[] = [['ctx', { tensor: spec.ctx, storage: '0' }]];
  if (spec.tokenPrefix) stateDict.push(['token_prefix', { tensor: spec.tokenPrefix, storage: '1' }]);
  if (spec.tokenSuffix) stateDict.push(['token_suffix', { tensor: spec.tokenSuffix, storage: '2' }]);
  return {
    dict: [
      ['state_dict', { ordered: stateDict }],
      ['epoch', spec.epoch],
      ['optimizer', {
        dict: [
          ['state', { dict: [[0, buffer]] }],
          ['param_groups', [{ dict: [...hyper(0.0019980267284282717), ['initial_lr', { float: 0.002 }], ['params', [0]]] }]],
        ],
      }],
      ['scheduler', {
        dict: [
          ['cons_lr', { float: 1e-5 }], ['successor', cosine], ['warmup_epoch', 1], ['base_lrs', [{ float: 0.002 }]], ['last_epoch', 1],
          ['verbose', false], ['_step_count', 2], ['_get_lr_called_within_step', false], ['_last_lr', lastLr],
        ],
      }],
      ['val_result', spec.valResult ?? null],
    ],
  };
}
