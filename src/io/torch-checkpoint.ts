import { closeSync, openSync, readSync } from 'node:fs';
import { toFloat32 } from './safetensors.js';
import { ZipFile, ZipReadError } from './zip-reader.js';

/**
 * Reads PyTorch zip checkpoints (`torch.save` since 1.6, e.g. `pytorch_model.bin`) without Python
 * and without ever running code from the file.
 *
 * Layout: a zip whose records all sit under one folder `<archive>/`:
 *   - `<archive>/data.pkl`   pickle (protocol 2) of the state dict, an `collections.OrderedDict`;
 *   - `<archive>/data/<key>` raw little-endian bytes of each storage (STORED, 64-byte aligned);
 *   - `<archive>/version`, optionally `<archive>/byteorder` ("little" | "big").
 * Each tensor in the pickle is `torch._utils._rebuild_tensor_v2(storage, storage_offset, size,
 * stride, requires_grad, backward_hooks[, metadata])`, its storage a persistent id
 * `('storage', torch.FloatStorage, key, location, numel)` loaded by BINPERSID.
 *
 * The unpickler below is restricted: it implements only the opcodes a state dict uses, builds plain
 * JS values, and resolves GLOBAL against a fixed allow-list (OrderedDict, the two tensor rebuild
 * functions, storage classes). Anything else throws naming the global; nothing is ever imported or
 * called.
 */

/** Element types a torch checkpoint may hold here (names as in safetensors). */
export type TorchDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'U8' | 'BOOL';

/**
 * One tensor of the checkpoint, contiguous, in its own aligned buffer. Data by dtype: F32 and (by
 * default) F16/BF16 → Float32Array (half types widened exactly, as `SafetensorsFile.read` does; with
 * `halfAs: 'raw'` they stay Uint16Array of IEEE binary16 / bfloat16 bits), F64 → Float64Array,
 * I64 → BigInt64Array, I32 → Int32Array, U8 and BOOL → Uint8Array (BOOL as 0/1).
 */
export interface TorchTensor {
  readonly dtype: TorchDtype;
  readonly shape: number[];
  readonly data: Float32Array | Float64Array | BigInt64Array | Int32Array | Uint16Array | Uint8Array;
}

export interface ReadTorchOptions {
  /** How F16/BF16 tensors come back: widened to Float32Array (default) or their raw 16-bit words. */
  readonly halfAs?: 'float32' | 'raw';
}

/** Any problem with a torch checkpoint; the message names the file and, where there is one, the tensor. */
export class TorchCheckpointError extends Error {
  constructor(message: string, readonly file: string, readonly tensor?: string) {
    super(message);
    this.name = 'TorchCheckpointError';
  }
}

interface StorageClass {
  readonly dtype: TorchDtype;
  readonly itemSize: number;
}

const STORAGE_CLASSES: Readonly<Record<string, StorageClass>> = {
  FloatStorage: { dtype: 'F32', itemSize: 4 },
  HalfStorage: { dtype: 'F16', itemSize: 2 },
  BFloat16Storage: { dtype: 'BF16', itemSize: 2 },
  DoubleStorage: { dtype: 'F64', itemSize: 8 },
  LongStorage: { dtype: 'I64', itemSize: 8 },
  IntStorage: { dtype: 'I32', itemSize: 4 },
  ByteStorage: { dtype: 'U8', itemSize: 1 },
  BoolStorage: { dtype: 'BOOL', itemSize: 1 },
};

/** The globals a state-dict pickle may name, as `module.name`. */
export const ALLOWED_GLOBALS: readonly string[] = [
  'collections.OrderedDict',
  'torch._utils._rebuild_tensor_v2',
  'torch._utils._rebuild_parameter',
  ...Object.keys(STORAGE_CLASSES).map((s) => `torch.${s}`),
];

/** Reads every tensor of a torch zip checkpoint, in state-dict order. */
export function readTorchCheckpoint(path: string, options: ReadTorchOptions = {}): Map<string, TorchTensor> {
  let zip: ZipFile;
  try {
    zip = ZipFile.open(path);
  } catch (e) {
    if (e instanceof ZipReadError) {
      const legacy = looksLikeLegacyTorch(path) ? '; it looks like the legacy (pre-1.6) torch.save format, which setar does not read: re-save it with torch >= 1.6 or convert it to safetensors' : '';
      throw new TorchCheckpointError(`${e.message}${legacy}`, path);
    }
    throw e;
  }
  try {
    const prefix = findArchivePrefix(zip, path);
    const pklName = `${prefix}data.pkl`;
    let pkl: Buffer;
    try {
      pkl = zip.read(pklName);
    } catch (e) {
      throw wrap(e, path);
    }
    const bigEndian = readByteorder(zip, prefix, path);
    const root = unpickle(pkl, path);
    if (!(root instanceof Map)) {
      throw new TorchCheckpointError(`'${path}': data.pkl holds ${describe(root)}, not a state dict (OrderedDict of tensors)`, path);
    }
    const out = new Map<string, TorchTensor>();
    for (const [key, value] of root) {
      if (typeof key !== 'string') {
        throw new TorchCheckpointError(`'${path}': state dict key ${describe(key)} is not a string`, path);
      }
      if (!(value instanceof TensorRef)) {
        throw new TorchCheckpointError(`'${path}': entry '${key}' is ${describe(value)}, not a tensor`, path, key);
      }
      out.set(key, materialize(zip, prefix, path, key, value, bigEndian, options));
    }
    return out;
  } finally {
    zip.close();
  }
}

function wrap(e: unknown, path: string, tensor?: string): unknown {
  if (e instanceof ZipReadError) return new TorchCheckpointError(e.message, path, tensor);
  return e;
}

function findArchivePrefix(zip: ZipFile, path: string): string {
  const names = [...zip.entries.keys()];
  const candidates = names.filter((n) => /^([^/]*\/)?data\.pkl$/.test(n));
  if (candidates.length === 0) {
    const shown = names.slice(0, 5).map((n) => `'${n}'`).join(', ');
    throw new TorchCheckpointError(
      `'${path}' has no data.pkl record, so it is not a torch.save checkpoint (${names.length} entries${names.length ? `: ${shown}${names.length > 5 ? ', …' : ''}` : ''})`, path);
  }
  // torch names the archive folder after the first record; prefer that one if several match.
  const first = names[0]!;
  const firstDir = first.includes('/') ? first.slice(0, first.indexOf('/') + 1) : '';
  const pick = candidates.find((c) => c === `${firstDir}data.pkl`) ?? candidates[0]!;
  return pick.slice(0, pick.length - 'data.pkl'.length);
}

function readByteorder(zip: ZipFile, prefix: string, path: string): boolean {
  const name = `${prefix}byteorder`;
  if (!zip.entry(name)) return false;
  let text: string;
  try {
    text = zip.read(name).toString('utf8').trim();
  } catch (e) {
    throw wrap(e, path);
  }
  if (text === 'little') return false;
  if (text === 'big') return true;
  throw new TorchCheckpointError(`'${path}': byteorder record says '${text}', expected 'little' or 'big'`, path);
}

function looksLikeLegacyTorch(path: string): boolean {
  let fd: number | null = null;
  try {
    fd = openSync(path, 'r');
    const head = Buffer.alloc(3);
    readSync(fd, head, 0, 3, 0);
    // legacy files start with a pickled magic number: PROTO 2, LONG1 ...
    return head[0] === 0x80 && head[1] === 0x02 && head[2] === 0x8a;
  } catch {
    return false;
  } finally {
    if (fd !== null) closeSync(fd);
  }
}

function materialize(zip: ZipFile, prefix: string, path: string, name: string, t: TensorRef, bigEndian: boolean, options: ReadTorchOptions): TorchTensor {
  const where = `tensor '${name}' in '${path}'`;
  const { storage } = t;
  const { dtype, itemSize } = storage.cls;
  const shape = t.size;
  if (t.stride.length !== shape.length) {
    throw new TorchCheckpointError(`${where}: size [${shape.join(', ')}] and stride [${t.stride.join(', ')}] differ in rank`, path, name);
  }
  const numel = shape.reduce((a, b) => a * b, 1);
  if (numel > 0) {
    let expected = 1;
    for (let d = shape.length - 1; d >= 0; d--) {
      if (shape[d] !== 1 && t.stride[d] !== expected) {
        throw new TorchCheckpointError(
          `${where} is not contiguous (size [${shape.join(', ')}], stride [${t.stride.join(', ')}]); setar reads only contiguous tensors — save tensor.contiguous() instead`, path, name);
      }
      expected *= shape[d]!;
    }
    if (t.offset + numel > storage.numel) {
      throw new TorchCheckpointError(
        `${where} needs elements [${t.offset}, ${t.offset + numel}) of storage '${storage.key}', which holds ${storage.numel}`, path, name);
    }
  }
  const record = `${prefix}data/${storage.key}`;
  const entry = zip.entry(record);
  if (!entry) {
    throw new TorchCheckpointError(`${where}: its storage record '${record}' is missing from the archive`, path, name);
  }
  const needBytes = storage.numel * itemSize;
  if (entry.size < needBytes) {
    throw new TorchCheckpointError(
      `${where}: storage record '${record}' has ${entry.size} bytes, but ${storage.numel} × ${dtype} needs ${needBytes} (short storage; truncated file?)`, path, name);
  }
  const bytes = new Uint8Array(new ArrayBuffer(numel * itemSize));
  try {
    zip.readRange(record, t.offset * itemSize, bytes.length, bytes);
  } catch (e) {
    throw wrap(e, path, name);
  }
  if (bigEndian && itemSize > 1) {
    for (let i = 0; i < bytes.length; i += itemSize) bytes.subarray(i, i + itemSize).reverse();
  }
  const buf = bytes.buffer;
  let data: TorchTensor['data'];
  switch (dtype) {
    case 'F32': data = new Float32Array(buf); break;
    case 'F64': data = new Float64Array(buf); break;
    case 'I64': data = new BigInt64Array(buf); break;
    case 'I32': data = new Int32Array(buf); break;
    case 'U8': case 'BOOL': data = bytes; break;
    case 'F16': case 'BF16':
      data = options.halfAs === 'raw' ? new Uint16Array(buf) : toFloat32(Buffer.from(buf), dtype);
      break;
  }
  return { dtype, shape: [...shape], data };
}

// ---------------------------------------------------------------------------------------------
// Restricted unpickler

/** A global the pickle named, from the allow-list. */
class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A storage loaded by BINPERSID (only its description; bytes are read per tensor). */
class StorageRef {
  constructor(readonly cls: StorageClass, readonly key: string, readonly location: string, readonly numel: number) {}
}

/** The arguments of one `_rebuild_tensor_v2` call. */
class TensorRef {
  constructor(
    readonly storage: StorageRef,
    readonly offset: number,
    readonly size: readonly number[],
    readonly stride: readonly number[],
    readonly requiresGrad: boolean,
  ) {}
}

/** Opcodes this unpickler implements, by byte. Everything else is refused. */
export const SUPPORTED_OPCODES: Readonly<Record<number, string>> = {
  0x80: 'PROTO', 0x95: 'FRAME', 0x2e: 'STOP', 0x28: 'MARK', 0x30: 'POP', 0x31: 'POP_MARK', 0x32: 'DUP',
  0x4e: 'NONE', 0x88: 'NEWTRUE', 0x89: 'NEWFALSE',
  0x4a: 'BININT', 0x4b: 'BININT1', 0x4d: 'BININT2', 0x8a: 'LONG1', 0x8b: 'LONG4', 0x47: 'BINFLOAT',
  0x58: 'BINUNICODE', 0x8c: 'SHORT_BINUNICODE', 0x8d: 'BINUNICODE8', 0x54: 'BINSTRING', 0x55: 'SHORT_BINSTRING',
  0x29: 'EMPTY_TUPLE', 0x74: 'TUPLE', 0x85: 'TUPLE1', 0x86: 'TUPLE2', 0x87: 'TUPLE3',
  0x5d: 'EMPTY_LIST', 0x6c: 'LIST', 0x61: 'APPEND', 0x65: 'APPENDS',
  0x7d: 'EMPTY_DICT', 0x64: 'DICT', 0x73: 'SETITEM', 0x75: 'SETITEMS',
  0x63: 'GLOBAL', 0x93: 'STACK_GLOBAL', 0x52: 'REDUCE', 0x62: 'BUILD', 0x51: 'BINPERSID',
  0x71: 'BINPUT', 0x72: 'LONG_BINPUT', 0x94: 'MEMOIZE', 0x68: 'BINGET', 0x6a: 'LONG_BINGET',
};

const MAX_LONG_BYTES = 64;

/**
 * Parses a state-dict pickle into plain values: dicts/OrderedDicts as Map, lists as arrays, tuples
 * as frozen arrays, tensors as TensorRef. Exported for tests; throws TorchCheckpointError naming
 * `file`, the opcode and its byte offset.
 */
export function unpickle(bytes: Uint8Array, file: string): unknown {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const memo = new Map<number, unknown>();
  let stack: unknown[] = [];
  const metastack: unknown[][] = [];
  let pos = 0;
  let at = 0;
  let opName = '';

  const fail = (msg: string): never => {
    throw new TorchCheckpointError(`'${file}': data.pkl byte ${at} (${opName}): ${msg}`, file);
  };
  const need = (n: number): number => {
    if (pos + n > buf.length) fail(`pickle ends after ${buf.length} bytes, ${n} more needed (truncated data.pkl?)`);
    const p = pos;
    pos += n;
    return p;
  };
  const pop = (): unknown => {
    if (stack.length === 0) fail('stack is empty');
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail('stack is empty');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const prev = metastack.pop();
    if (prev === undefined) fail('no MARK to pop to');
    stack = prev!;
    return items;
  };
  const readLine = (): string => {
    const end = buf.indexOf(0x0a, pos);
    if (end < 0) fail('unterminated line');
    const s = buf.toString('latin1', pos, end);
    pos = end + 1;
    return s;
  };
  const str = (n: number, enc: 'utf8' | 'latin1'): string => {
    const p = need(n);
    return buf.toString(enc, p, p + n);
  };
  const len8 = (): number => {
    const v = buf.readBigUInt64LE(need(8));
    if (v > BigInt(buf.length)) fail(`string of ${v} bytes is longer than the pickle`);
    return Number(v);
  };
  const setItems = (dict: unknown, items: unknown[]): void => {
    if (!(dict instanceof Map)) fail(`SETITEM(S) target is ${describe(dict)}, not a dict`);
    if (items.length % 2) fail('SETITEMS has an odd number of items');
    for (let i = 0; i < items.length; i += 2) (dict as Map<unknown, unknown>).set(items[i], items[i + 1]);
  };
  const appendItems = (list: unknown, items: unknown[]): void => {
    if (!Array.isArray(list) || Object.isFrozen(list)) fail(`APPEND(S) target is ${describe(list)}, not a list`);
    (list as unknown[]).push(...items);
  };
  const findGlobal = (module: string, name: string): PyGlobal => {
    const q = `${module}.${name}`;
    if (!ALLOWED_GLOBALS.includes(q)) {
      throw new TorchCheckpointError(`'${file}': pickle asks for global '${q}' (data.pkl byte ${at}); setar only loads tensors`, file);
    }
    return new PyGlobal(module, name);
  };

  for (;;) {
    at = pos;
    const op = buf[need(1)]!;
    opName = SUPPORTED_OPCODES[op] ?? `0x${op.toString(16).padStart(2, '0')}`;
    switch (op) {
      case 0x80: { // PROTO
        const v = buf[need(1)]!;
        if (v > 5) fail(`pickle protocol ${v} is newer than 5`);
        break;
      }
      case 0x95: need(8); break; // FRAME: framing only, the bytes follow inline
      case 0x2e: { // STOP
        const result = pop();
        if (metastack.length) fail('STOP inside an open MARK');
        return result;
      }
      case 0x28: metastack.push(stack); stack = []; break; // MARK
      case 0x30: pop(); break; // POP
      case 0x31: popMark(); break; // POP_MARK
      case 0x32: stack.push(top()); break; // DUP
      case 0x4e: stack.push(null); break;
      case 0x88: stack.push(true); break;
      case 0x89: stack.push(false); break;
      case 0x4a: stack.push(buf.readInt32LE(need(4))); break;
      case 0x4b: stack.push(buf[need(1)]!); break;
      case 0x4d: stack.push(buf.readUInt16LE(need(2))); break;
      case 0x8a: case 0x8b: { // LONG1, LONG4
        const n = op === 0x8a ? buf[need(1)]! : buf.readInt32LE(need(4));
        if (n < 0 || n > MAX_LONG_BYTES) fail(`integer of ${n} bytes is out of range`);
        const p = need(n);
        let v = 0n;
        for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(buf[p + i]!);
        if (n > 0 && buf[p + n - 1]! & 0x80) v -= 1n << BigInt(8 * n);
        stack.push(v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
        break;
      }
      case 0x47: stack.push(buf.readDoubleBE(need(8))); break;
      case 0x58: stack.push(str(buf.readUInt32LE(need(4)), 'utf8')); break;
      case 0x8c: stack.push(str(buf[need(1)]!, 'utf8')); break;
      case 0x8d: stack.push(str(len8(), 'utf8')); break;
      case 0x54: {
        const n = buf.readInt32LE(need(4));
        if (n < 0) fail('negative string length');
        stack.push(str(n, 'latin1'));
        break;
      }
      case 0x55: stack.push(str(buf[need(1)]!, 'latin1')); break;
      case 0x29: stack.push(Object.freeze([])); break;
      case 0x74: { const items = popMark(); stack.push(Object.freeze(items)); break; } // popMark swaps `stack`: call it first
      case 0x85: case 0x86: case 0x87: { // TUPLE1..3
        const n = op - 0x84;
        if (stack.length < n) fail(`stack holds ${stack.length} items, ${n} needed`);
        stack.push(Object.freeze(stack.splice(stack.length - n, n)));
        break;
      }
      case 0x5d: stack.push([]); break;
      case 0x6c: { const items = popMark(); stack.push(items); break; }
      case 0x61: { const v = pop(); appendItems(top(), [v]); break; }
      case 0x65: { const items = popMark(); appendItems(top(), items); break; }
      case 0x7d: stack.push(new Map()); break;
      case 0x64: { const m = new Map(); setItems(m, popMark()); stack.push(m); break; }
      case 0x73: { const v = pop(); const k = pop(); setItems(top(), [k, v]); break; }
      case 0x75: { const items = popMark(); setItems(top(), items); break; }
      case 0x63: { // GLOBAL
        const module = readLine();
        const name = readLine();
        stack.push(findGlobal(module, name));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') fail('STACK_GLOBAL needs two strings');
        stack.push(findGlobal(module as string, name as string));
        break;
      }
      case 0x52: { // REDUCE
        const args = pop();
        const fn = pop();
        if (!Array.isArray(args)) fail(`REDUCE arguments are ${describe(args)}, not a tuple`);
        stack.push(call(fn, args as unknown[], fail));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const obj = top();
        // OrderedDict state: the instance __dict__, i.e. {'_metadata': OrderedDict(...)} on a state dict. Ignored.
        if (obj instanceof Map && (state === null || state instanceof Map)) break;
        fail(`BUILD of ${describe(obj)} with ${describe(state)} is not supported`);
        break;
      }
      case 0x51: stack.push(persistentLoad(pop(), fail)); break; // BINPERSID
      case 0x71: memo.set(buf[need(1)]!, top()); break;
      case 0x72: memo.set(buf.readUInt32LE(need(4)), top()); break;
      case 0x94: memo.set(memo.size, top()); break;
      case 0x68: case 0x6a: { // BINGET, LONG_BINGET
        const k = op === 0x68 ? buf[need(1)]! : buf.readUInt32LE(need(4));
        if (!memo.has(k)) fail(`memo slot ${k} is empty`);
        stack.push(memo.get(k));
        break;
      }
      default:
        throw new TorchCheckpointError(
          `'${file}': data.pkl byte ${at}: unsupported pickle opcode 0x${op.toString(16).padStart(2, '0')}${op >= 0x20 && op < 0x7f ? ` ('${String.fromCharCode(op)}')` : ''}; setar's restricted unpickler reads only state dicts of tensors`, file);
    }
  }
}

function call(fn: unknown, args: unknown[], fail: (m: string) => never): unknown {
  if (!(fn instanceof PyGlobal)) return fail(`REDUCE on ${describe(fn)}, which is not a callable global`);
  switch (fn.qualified) {
    case 'collections.OrderedDict': {
      const m = new Map<unknown, unknown>();
      if (args.length === 0) return m;
      const items = args[0];
      if (args.length === 1 && Array.isArray(items)) {
        for (const pair of items) {
          if (!Array.isArray(pair) || pair.length !== 2) return fail('OrderedDict(items) needs (key, value) pairs');
          m.set(pair[0], pair[1]);
        }
        return m;
      }
      return fail(`OrderedDict called with ${args.length} unsupported arguments`);
    }
    case 'torch._utils._rebuild_tensor_v2': {
      if (args.length < 6 || args.length > 7) return fail(`_rebuild_tensor_v2 takes 6 or 7 arguments, got ${args.length}`);
      const [storage, offset, size, stride, requiresGrad] = args;
      if (!(storage instanceof StorageRef)) return fail(`_rebuild_tensor_v2 storage is ${describe(storage)}`);
      if (!isCount(offset)) return fail(`_rebuild_tensor_v2 storage_offset ${describe(offset)} is not a non-negative integer`);
      if (!Array.isArray(size) || !size.every(isCount)) return fail(`_rebuild_tensor_v2 size ${describe(size)} is not a tuple of non-negative integers`);
      if (!Array.isArray(stride) || !stride.every((s) => Number.isSafeInteger(s))) return fail(`_rebuild_tensor_v2 stride ${describe(stride)} is not a tuple of integers`);
      return new TensorRef(storage, offset as number, size as number[], stride as number[], requiresGrad === true);
    }
    case 'torch._utils._rebuild_parameter': {
      if (args.length !== 3 || !(args[0] instanceof TensorRef)) return fail('_rebuild_parameter takes (tensor, requires_grad, backward_hooks)');
      return args[0];
    }
    default:
      return fail(`global '${fn.qualified}' is not callable here`);
  }
}

function persistentLoad(pid: unknown, fail: (m: string) => never): StorageRef {
  if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage') {
    return fail(`persistent id ${describe(pid)} is not ('storage', type, key, location, numel)`);
  }
  const [, type, key, location, numel] = pid as unknown[];
  if (!(type instanceof PyGlobal) || type.module !== 'torch' || !(type.name in STORAGE_CLASSES)) {
    return fail(`persistent id names storage type ${describe(type)}; supported: ${Object.keys(STORAGE_CLASSES).join(', ')}`);
  }
  if (typeof key !== 'string' || key === '' || key.includes('/') || key.includes('\\') || key.includes('..')) {
    return fail(`storage key ${describe(key)} is not a plain record name`);
  }
  if (!isCount(numel)) return fail(`storage '${key}' numel ${describe(numel)} is not a non-negative integer`);
  return new StorageRef(STORAGE_CLASSES[type.name]!, key, typeof location === 'string' ? location : String(location), numel as number);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function describe(v: unknown): string {
  if (v === null) return 'None';
  if (v instanceof Map) return `a dict of ${v.size} items`;
  if (Array.isArray(v)) return Object.isFrozen(v) ? `a tuple of ${v.length}` : `a list of ${v.length}`;
  if (v instanceof PyGlobal) return `global '${v.qualified}'`;
  if (v instanceof StorageRef) return `storage '${v.key}'`;
  if (v instanceof TensorRef) return 'a tensor';
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  return `${typeof v} ${String(v)}`;
}
