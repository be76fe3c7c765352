import { PythonGlobal, PythonObject } from './python-objects.js';

/**
 * The restricted unpickler of setar's torch checkpoint readers. It interprets the pickle opcodes
 * of protocols 2–5 into plain JS values and never imports, looks up or calls anything named in
 * the file. GLOBAL / STACK_GLOBAL resolve against a fixed allow-list (OrderedDict, the tensor
 * rebuild functions, storage classes); what an allowed global builds is computed here in JS.
 *
 * Two policies for any other global:
 *   - default (state dicts, `pytorch_model.bin`): refuse — the error names the global;
 *   - `placeholders: true` (files whose non-tensor parts are ignored, such as LoCoOp's Dassl
 *     checkpoints, which pickle scheduler and optimizer objects): the global becomes an inert
 *     {@link PythonGlobal}, and REDUCE / NEWOBJ on it an inert {@link PythonObject} recording the
 *     call. A pickled `os.system(...)` is then a PythonObject of type `os.system` and nothing else;
 *     readers refuse such a value wherever they need data (a tensor, a number).
 * Protocol 0/1 text opcodes that instantiate by name (INST, OBJ), the extension registry (EXT1/2/4)
 * and out-of-band buffers are refused under both policies; torch.save writes protocol 2.
 */

/** Element types a torch checkpoint may hold here (names as in safetensors). */
export type TorchDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'U8' | 'BOOL';

/** Any problem with a torch checkpoint; the message names the file and, where there is one, the tensor. */
export class TorchCheckpointError extends Error {
  constructor(message: string, readonly file: string, readonly tensor?: string) {
    super(message);
    this.name = 'TorchCheckpointError';
  }
}

export interface StorageClass {
  readonly dtype: TorchDtype;
  readonly itemSize: number;
}

export const STORAGE_CLASSES: Readonly<Record<string, StorageClass>> = {
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
  'torch._utils._rebuild_parameter_with_state',
  ...Object.keys(STORAGE_CLASSES).map((s) => `torch.${s}`),
];

/** Options of {@link unpickle}. */
export interface UnpickleOptions {
  /**
   * Turn globals outside the allow-list into inert placeholders instead of refusing them (see the
   * module comment). Only for readers that take specific tensors out of a larger object and check
   * each value they use; state-dict readers leave it off.
   */
  readonly placeholders?: boolean;
}

/** An allow-listed global. */
class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}
  get qualified(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A storage loaded by BINPERSID (only its description; bytes are read per tensor). */
export class StorageRef {
  constructor(readonly cls: StorageClass, readonly key: string, readonly location: string, readonly numel: number) {}
}

/** A tensor of the pickle: the arguments of its `_rebuild_tensor_v2` call (its bytes stay in the archive). */
export class TensorRef {
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
  0x42: 'BINBYTES', 0x43: 'SHORT_BINBYTES', 0x8e: 'BINBYTES8', 0x96: 'BYTEARRAY8',
  0x29: 'EMPTY_TUPLE', 0x74: 'TUPLE', 0x85: 'TUPLE1', 0x86: 'TUPLE2', 0x87: 'TUPLE3',
  0x5d: 'EMPTY_LIST', 0x6c: 'LIST', 0x61: 'APPEND', 0x65: 'APPENDS',
  0x7d: 'EMPTY_DICT', 0x64: 'DICT', 0x73: 'SETITEM', 0x75: 'SETITEMS',
  0x8f: 'EMPTY_SET', 0x90: 'ADDITEMS', 0x91: 'FROZENSET',
  0x63: 'GLOBAL', 0x93: 'STACK_GLOBAL', 0x52: 'REDUCE', 0x81: 'NEWOBJ', 0x92: 'NEWOBJ_EX', 0x62: 'BUILD', 0x51: 'BINPERSID',
  0x71: 'BINPUT', 0x72: 'LONG_BINPUT', 0x94: 'MEMOIZE', 0x68: 'BINGET', 0x6a: 'LONG_BINGET',
};

/** Opcodes refused with a specific reason (the rest get the generic one). */
const REFUSED: Readonly<Record<number, string>> = {
  0x69: 'INST (protocol 0 instantiation by name)',
  0x6f: 'OBJ (protocol 1 instantiation)',
  0x82: 'EXT1 (copyreg extension registry)',
  0x83: 'EXT2 (copyreg extension registry)',
  0x84: 'EXT4 (copyreg extension registry)',
  0x97: 'NEXT_BUFFER (out-of-band buffer)',
  0x98: 'READONLY_BUFFER (out-of-band buffer)',
};

const MAX_LONG_BYTES = 64;

/**
 * Parses a torch pickle into plain values: dicts and OrderedDicts as Map, lists as arrays, tuples
 * as frozen arrays, sets as Set, bytes as Uint8Array, ints as number (bigint beyond 2^53),
 * tensors as {@link TensorRef}, and — with `placeholders` — unknown globals and what they build as
 * {@link PythonGlobal} / {@link PythonObject}. Throws TorchCheckpointError naming `file`, the
 * opcode and its byte offset.
 */
export function unpickle(bytes: Uint8Array, file: string, options: UnpickleOptions = {}): unknown {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const placeholders = options.placeholders === true;
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
  const bytesOf = (n: number): Uint8Array => {
    const p = need(n);
    return Uint8Array.prototype.slice.call(buf, p, p + n);
  };
  const len8 = (): number => {
    const v = buf.readBigUInt64LE(need(8));
    if (v > BigInt(buf.length)) fail(`string of ${v} bytes is longer than the pickle`);
    return Number(v);
  };
  const setItems = (dict: unknown, items: unknown[]): void => {
    if (items.length % 2) fail('SETITEMS has an odd number of items');
    const target = dict instanceof Map ? dict : placeholders && dict instanceof PythonObject ? dict.items : null;
    if (!target) fail(`SETITEM(S) target is ${describePickled(dict)}, not a dict`);
    for (let i = 0; i < items.length; i += 2) target!.set(items[i], items[i + 1]);
  };
  const appendItems = (list: unknown, items: unknown[]): void => {
    if (Array.isArray(list) && !Object.isFrozen(list)) list.push(...items);
    else if (placeholders && list instanceof PythonObject) list.elements.push(...items);
    else fail(`APPEND(S) target is ${describePickled(list)}, not a list`);
  };
  const findGlobal = (module: string, name: string): PyGlobal | PythonGlobal => {
    const q = `${module}.${name}`;
    if (ALLOWED_GLOBALS.includes(q)) return new PyGlobal(module, name);
    if (placeholders) return new PythonGlobal(module, name);
    throw new TorchCheckpointError(`'${file}': pickle asks for global '${q}' (data.pkl byte ${at}); setar only loads tensors`, file);
  };
  const instantiate = (cls: unknown, args: unknown, kwargs: Map<unknown, unknown> | null, origin: 'NEWOBJ' | 'NEWOBJ_EX'): PythonObject => {
    if (!Array.isArray(args)) fail(`${origin} arguments are ${describePickled(args)}, not a tuple`);
    if (!(cls instanceof PythonGlobal)) fail(`${origin} of ${describePickled(cls)} is not supported`);
    return new PythonObject(cls as PythonGlobal, args as unknown[], origin, kwargs);
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
      case 0x42: stack.push(bytesOf(buf.readUInt32LE(need(4)))); break; // BINBYTES
      case 0x43: stack.push(bytesOf(buf[need(1)]!)); break; // SHORT_BINBYTES
      case 0x8e: case 0x96: stack.push(bytesOf(len8())); break; // BINBYTES8, BYTEARRAY8
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
      case 0x8f: stack.push(new Set()); break; // EMPTY_SET
      case 0x90: { // ADDITEMS
        const items = popMark();
        const s = top();
        if (!(s instanceof Set)) fail(`ADDITEMS target is ${describePickled(s)}, not a set`);
        for (const x of items) (s as Set<unknown>).add(x);
        break;
      }
      case 0x91: { const items = popMark(); stack.push(new Set(items)); break; } // FROZENSET
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
        if (!Array.isArray(args)) fail(`REDUCE arguments are ${describePickled(args)}, not a tuple`);
        if (placeholders && (fn instanceof PythonGlobal || fn instanceof PythonObject)) {
          // recorded, never called: this is where `os.system(...)` would have run
          stack.push(new PythonObject(fn, args as unknown[], 'REDUCE'));
        } else {
          stack.push(call(fn, args as unknown[], fail));
        }
        break;
      }
      case 0x81: { const args = pop(); const cls = pop(); stack.push(instantiate(cls, args, null, 'NEWOBJ')); break; }
      case 0x92: { // NEWOBJ_EX
        const kwargs = pop();
        const args = pop();
        const cls = pop();
        if (!(kwargs instanceof Map)) fail(`NEWOBJ_EX keyword arguments are ${describePickled(kwargs)}, not a dict`);
        stack.push(instantiate(cls, args, kwargs as Map<unknown, unknown>, 'NEWOBJ_EX'));
        break;
      }
      case 0x62: { // BUILD
        const state = pop();
        const obj = top();
        // OrderedDict state: the instance __dict__, i.e. {'_metadata': OrderedDict(...)} on a state dict. Ignored.
        if (obj instanceof Map && (state === null || state instanceof Map)) break;
        if (placeholders && obj instanceof PythonObject) {
          obj.state = state;
          break;
        }
        fail(`BUILD of ${describePickled(obj)} with ${describePickled(state)} is not supported`);
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
      default: {
        const byte = `0x${op.toString(16).padStart(2, '0')}${op >= 0x20 && op < 0x7f ? ` ('${String.fromCharCode(op)}')` : ''}`;
        const what = REFUSED[op] ? `${byte}, ${REFUSED[op]}` : byte;
        throw new TorchCheckpointError(
          `'${file}': data.pkl byte ${at}: unsupported pickle opcode ${what}; setar's restricted unpickler reads only torch.save pickles (protocol 2–5)`, file);
      }
    }
  }
}

function call(fn: unknown, args: unknown[], fail: (m: string) => never): unknown {
  if (!(fn instanceof PyGlobal)) return fail(`REDUCE on ${describePickled(fn)}, which is not a callable global`);
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
      if (!(storage instanceof StorageRef)) return fail(`_rebuild_tensor_v2 storage is ${describePickled(storage)}`);
      if (!isCount(offset)) return fail(`_rebuild_tensor_v2 storage_offset ${describePickled(offset)} is not a non-negative integer`);
      if (!Array.isArray(size) || !size.every(isCount)) return fail(`_rebuild_tensor_v2 size ${describePickled(size)} is not a tuple of non-negative integers`);
      if (!Array.isArray(stride) || !stride.every((s) => Number.isSafeInteger(s))) return fail(`_rebuild_tensor_v2 stride ${describePickled(stride)} is not a tuple of integers`);
      return new TensorRef(storage, offset as number, size as number[], stride as number[], requiresGrad === true);
    }
    case 'torch._utils._rebuild_parameter': {
      if (args.length !== 3 || !(args[0] instanceof TensorRef)) return fail('_rebuild_parameter takes (tensor, requires_grad, backward_hooks)');
      return args[0];
    }
    case 'torch._utils._rebuild_parameter_with_state': {
      // (tensor, requires_grad, backward_hooks, state): the state holds Python attributes of the Parameter, not data
      if (args.length !== 4 || !(args[0] instanceof TensorRef)) return fail('_rebuild_parameter_with_state takes (tensor, requires_grad, backward_hooks, state)');
      return args[0];
    }
    default:
      return fail(`global '${fn.qualified}' is not callable here`);
  }
}

function persistentLoad(pid: unknown, fail: (m: string) => never): StorageRef {
  if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage') {
    return fail(`persistent id ${describePickled(pid)} is not ('storage', type, key, location, numel)`);
  }
  const [, type, key, location, numel] = pid as unknown[];
  if (!(type instanceof PyGlobal) || type.module !== 'torch' || !(type.name in STORAGE_CLASSES)) {
    return fail(`persistent id names storage type ${describePickled(type)}; supported: ${Object.keys(STORAGE_CLASSES).join(', ')}`);
  }
  if (typeof key !== 'string' || key === '' || key.includes('/') || key.includes('\\') || key.includes('..')) {
    return fail(`storage key ${describePickled(key)} is not a plain record name`);
  }
  if (!isCount(numel)) return fail(`storage '${key}' numel ${describePickled(numel)} is not a non-negative integer`);
  return new StorageRef(STORAGE_CLASSES[type.name]!, key, typeof location === 'string' ? location : String(location), numel as number);
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

/** A short description of an unpickled value, for error messages. */
export function describePickled(v: unknown): string {
  if (v === null) return 'None';
  if (v === undefined) return 'nothing';
  if (v instanceof Map) return `a dict of ${v.size} items`;
  if (Array.isArray(v)) return Object.isFrozen(v) ? `a tuple of ${v.length}` : `a list of ${v.length}`;
  if (v instanceof Set) return `a set of ${v.size}`;
  if (v instanceof Uint8Array) return `bytes of length ${v.length}`;
  if (v instanceof PyGlobal || v instanceof PythonGlobal) return `global '${v.qualified}'`;
  if (v instanceof PythonObject) return v.describe();
  if (v instanceof StorageRef) return `storage '${v.key}'`;
  if (v instanceof TensorRef) return `a tensor [${v.size.join(', ')}]`;
  if (typeof v === 'string') return JSON.stringify(v.length > 40 ? `${v.slice(0, 40)}…` : v);
  return `${typeof v} ${String(v)}`;
}
