import { writeFileAtomic } from './atomic.js';
import { zipStored } from './zip-writer.js';

/**
 * Writes `torch.save` zip files (torch >= 1.6 format) from JS values, for consumers that load them
 * with `torch.load`. Only what PyTorch's `weights_only` unpickler accepts is written — dicts,
 * lists, tuples, str, int, float, bool, None, `collections.OrderedDict` and tensors
 * (`torch._utils._rebuild_tensor_v2` over `torch.<X>Storage` persistent ids) — in pickle protocol 2
 * with only the opcodes that unpickler implements, so the file loads with `weights_only=True`
 * (the default since torch 2.6) as well as `False`. There is deliberately no way to pickle an
 * arbitrary Python object.
 */

/** A Python float; use it where the value may be integral but must stay a float (`T_max` 50.0). */
export class PyFloat {
  constructor(readonly value: number) {}
}

/** A Python tuple. */
export class PyTuple {
  constructor(readonly items: readonly SaveValue[]) {}
}

/** A `collections.OrderedDict` (what `module.state_dict()` returns). */
export class PyOrderedDict {
  constructor(readonly entries: ReadonlyMap<string | number, SaveValue>) {}
}

/** Tensor element types this writer stores (F16 data: float values, rounded, or raw binary16 bits as Uint16Array). */
export type SaveDtype = 'F32' | 'F16' | 'F64' | 'I64';

/** A contiguous tensor to save. The same object saved twice shares one storage, as in torch. */
export class SaveTensor {
  readonly bytes: Uint8Array;
  constructor(readonly dtype: SaveDtype, readonly shape: readonly number[], data: Float32Array | Float64Array | BigInt64Array | Uint16Array) {
    const numel = shape.reduce((a, b) => a * b, 1);
    if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new RangeError(`tensor shape [${shape.join(', ')}] must hold non-negative integers`);
    if (data.length !== numel) throw new RangeError(`tensor of shape [${shape.join(', ')}] needs ${numel} values, got ${data.length}`);
    this.bytes = encode(dtype, data);
  }
}

/**
 * A value {@link writeTorchSave} can pickle: None, bool, number (a safe integer is a Python int,
 * anything else a float), bigint (int), string, {@link PyFloat}, {@link PyTuple}, array (list),
 * Map (dict; string or int keys), {@link PyOrderedDict}, {@link SaveTensor}.
 */
export type SaveValue =
  | null | boolean | number | bigint | string | PyFloat | PyTuple | readonly SaveValue[]
  | ReadonlyMap<string | number, SaveValue> | PyOrderedDict | SaveTensor;

const STORAGE: Record<SaveDtype, string> = { F32: 'FloatStorage', F16: 'HalfStorage', F64: 'DoubleStorage', I64: 'LongStorage' };

function encode(dtype: SaveDtype, data: Float32Array | Float64Array | BigInt64Array | Uint16Array): Uint8Array {
  let typed: Float32Array | Float64Array | BigInt64Array | Uint16Array;
  switch (dtype) {
    case 'F32': typed = data instanceof Float32Array ? data : Float32Array.from(data as ArrayLike<number>); break;
    case 'F64': typed = data instanceof Float64Array ? data : Float64Array.from(data as ArrayLike<number>); break;
    case 'I64':
      if (!(data instanceof BigInt64Array)) throw new TypeError(`an I64 tensor takes a BigInt64Array, got ${data.constructor.name}`);
      typed = data;
      break;
    case 'F16':
      if (!(data instanceof Uint16Array)) throw new TypeError(`an F16 tensor takes its binary16 bits as a Uint16Array, got ${data.constructor.name}`);
      typed = data;
      break;
  }
  // own, little-endian copy (every platform Node runs on is little-endian)
  return new Uint8Array(typed.buffer.slice(typed.byteOffset, typed.byteOffset + typed.byteLength));
}

const op = (...xs: number[]) => Buffer.from(xs);
const MARK = op(0x28);

function int(v: number | bigint): Buffer {
  if (typeof v === 'number') {
    if (v >= 0 && v <= 0xff) return op(0x4b, v);
    if (v >= 0 && v <= 0xffff) { const x = Buffer.alloc(3); x[0] = 0x4d; x.writeUInt16LE(v, 1); return x; }
    if (v >= -(2 ** 31) && v < 2 ** 31) { const x = Buffer.alloc(5); x[0] = 0x4a; x.writeInt32LE(v, 1); return x; }
  }
  // LONG1: little-endian two's complement, shortest form (CPython's encode_long)
  let n = BigInt(v);
  const bytes: number[] = [];
  for (;;) {
    bytes.push(Number(n & 0xffn));
    const top = n >> 7n;
    if (top === 0n || top === -1n) break;
    n >>= 8n;
  }
  if (bytes.length > 255) throw new RangeError(`integer ${v} is too large to pickle`);
  return Buffer.concat([op(0x8a, bytes.length), Buffer.from(bytes)]);
}

function float(v: number): Buffer {
  const x = Buffer.alloc(9);
  x[0] = 0x47;
  x.writeDoubleBE(v, 1);
  return x;
}

function unicode(s: string): Buffer {
  const u = Buffer.from(s, 'utf8');
  const x = Buffer.alloc(5);
  x[0] = 0x58;
  x.writeUInt32LE(u.length, 1);
  return Buffer.concat([x, u]);
}

/** The data.pkl of `value` and the storages its tensors need, in key order '0', '1', …. */
export function torchSavePickle(value: SaveValue): { pkl: Buffer; storages: Uint8Array[] } {
  const out: Buffer[] = [op(0x80, 2)];
  const memo = new Map<unknown, number>();
  const storages: Uint8Array[] = [];
  const put = (key: unknown) => {
    const i = memo.size;
    memo.set(key, i);
    out.push(i < 256 ? op(0x71, i) : Buffer.concat([op(0x72), u32(i)]));
  };
  const get = (key: unknown): boolean => {
    const i = memo.get(key);
    if (i === undefined) return false;
    out.push(i < 256 ? op(0x68, i) : Buffer.concat([op(0x6a), u32(i)]));
    return true;
  };
  const global = (module: string, name: string) => {
    if (get(`global:${module}.${name}`)) return;
    out.push(op(0x63), Buffer.from(`${module}\n${name}\n`, 'latin1'));
    put(`global:${module}.${name}`);
  };
  const tuple = (items: readonly SaveValue[]) => {
    if (items.length === 0) { out.push(op(0x29)); return; }
    if (items.length > 3) out.push(MARK);
    items.forEach((x) => emit(x, 'tuple item'));
    out.push(items.length > 3 ? op(0x74) : op(0x84 + items.length));
  };
  const items = (entries: Iterable<[string | number, SaveValue]>, where: string) => {
    let open = false;
    for (const [k, v] of entries) {
      if (typeof k !== 'string' && !(typeof k === 'number' && Number.isSafeInteger(k))) throw new TypeError(`${where}: dict key ${String(k)} must be a string or an integer`);
      if (!open) { out.push(MARK); open = true; }
      emit(k, where);
      emit(v, `${where}['${k}']`);
    }
    if (open) out.push(op(0x75));
  };
  const emit = (v: SaveValue, where: string): void => {
    if (v === null) out.push(op(0x4e));
    else if (v === true) out.push(op(0x88));
    else if (v === false) out.push(op(0x89));
    else if (typeof v === 'number') out.push(Number.isSafeInteger(v) ? int(v) : float(v));
    else if (typeof v === 'bigint') out.push(int(v));
    else if (typeof v === 'string') out.push(unicode(v));
    else if (v instanceof PyFloat) out.push(float(v.value));
    else if (v instanceof PyTuple) tuple(v.items);
    else if (v instanceof PyOrderedDict) {
      global('collections', 'OrderedDict');
      out.push(op(0x29, 0x52));
      items(v.entries, where);
    } else if (v instanceof SaveTensor) {
      if (get(v)) return;
      const key = String(storages.length);
      storages.push(v.bytes);
      const numel = v.shape.reduce((a, b) => a * b, 1);
      const stride = v.shape.map((_, d) => v.shape.slice(d + 1).reduce((a, b) => a * b, 1));
      global('torch._utils', '_rebuild_tensor_v2');
      out.push(MARK, MARK, unicode('storage'));
      global('torch', STORAGE[v.dtype]);
      out.push(unicode(key), unicode('cpu'), int(numel), op(0x74), op(0x51), int(0));
      tuple(v.shape);
      tuple(stride);
      out.push(op(0x89));
      global('collections', 'OrderedDict');
      out.push(op(0x29, 0x52), op(0x74), op(0x52));
      put(v);
    } else if (Array.isArray(v)) {
      out.push(op(0x5d));
      if (v.length) {
        out.push(MARK);
        (v as readonly SaveValue[]).forEach((x, i) => emit(x, `${where}[${i}]`));
        out.push(op(0x65));
      }
    } else if (v instanceof Map) {
      out.push(op(0x7d));
      items(v, where);
    } else {
      throw new TypeError(`${where}: cannot pickle ${typeof v === 'object' ? (v as object).constructor?.name ?? 'object' : typeof v}; torch.save files written here hold only dicts, lists, tuples, numbers, strings, None and tensors`);
    }
  };
  emit(value, 'value');
  out.push(op(0x2e));
  return { pkl: Buffer.concat(out), storages };
}

function u32(i: number): Buffer {
  const x = Buffer.alloc(4);
  x.writeUInt32LE(i);
  return x;
}

/**
 * Writes `value` to `path` as `torch.save(value, path)` would (zip format; the archive folder is
 * named after the file without its last extension, as torch names it), atomically.
 *
 * @example
 * writeTorchSave('model.pth.tar-50', new Map([['state_dict', new PyOrderedDict(new Map([['ctx', new SaveTensor('F32', [16, 512], ctx)]]))], ['epoch', 50]]));
 */
export function writeTorchSave(path: string, value: SaveValue): void {
  const archive = path.replace(/^.*[\\/]/, '').replace(/\.[^.]*$/, '') || 'archive';
  const { pkl, storages } = torchSavePickle(value);
  const records: [string, Uint8Array][] = [[`${archive}/data.pkl`, pkl], [`${archive}/byteorder`, Buffer.from('little')]];
  storages.forEach((bytes, i) => records.push([`${archive}/data/${i}`, bytes]));
  records.push([`${archive}/version`, Buffer.from('3\n')]);
  writeFileAtomic(path, zipStored(records));
}
