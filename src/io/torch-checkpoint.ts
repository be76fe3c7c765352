import { closeSync, openSync, readSync } from 'node:fs';
import { toFloat32 } from './safetensors.js';
import {
  describePickled, TensorRef, TorchCheckpointError, unpickle, type TorchDtype, type UnpickleOptions,
} from './torch-unpickler.js';
import { ZipFile, ZipReadError } from './zip-reader.js';

export { ALLOWED_GLOBALS, SUPPORTED_OPCODES, TensorRef, TorchCheckpointError, unpickle, type TorchDtype, type UnpickleOptions } from './torch-unpickler.js';

/**
 * Reads PyTorch zip checkpoints (`torch.save` since 1.6, e.g. `pytorch_model.bin`) without Python
 * and without ever running code from the file.
 *
 * Layout: a zip whose records all sit under one folder `<archive>/`:
 *   - `<archive>/data.pkl`   pickle (protocol 2) of the saved object (a state dict is an
 *     `collections.OrderedDict`);
 *   - `<archive>/data/<key>` raw little-endian bytes of each storage (STORED, 64-byte aligned);
 *   - `<archive>/version`, optionally `<archive>/byteorder` ("little" | "big").
 * Each tensor in the pickle is `torch._utils._rebuild_tensor_v2(storage, storage_offset, size,
 * stride, requires_grad, backward_hooks[, metadata])`, its storage a persistent id
 * `('storage', torch.FloatStorage, key, location, numel)` loaded by BINPERSID.
 *
 * The pickle goes through the restricted unpickler of `torch-unpickler.ts`: plain JS values, an
 * allow-list of globals, nothing ever imported or called. {@link readTorchCheckpoint} (state dicts)
 * refuses any other global by name; {@link readTorchPickle} can turn them into inert placeholders
 * for files that hold more than tensors.
 */

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

/** Reads the bytes of one tensor of an open checkpoint; `name` is how errors refer to it. */
export type TorchTensorReader = (ref: TensorRef, name: string, options?: ReadTorchOptions) => TorchTensor;

/**
 * Opens a torch zip checkpoint, unpickles its data.pkl and hands the root object to `use` with a
 * reader for the tensors in it (each read on demand from the archive); the file is closed when
 * `use` returns. Tensors in the root are {@link TensorRef}s; with `placeholders: true`, globals
 * outside the allow-list come back as inert `PythonGlobal` / `PythonObject` values.
 *
 * @example
 * const ctx = readTorchPickle('model.pth.tar-50', (root, read) => {
 *   const ref = ((root as Map<string, unknown>).get('state_dict') as Map<string, unknown>).get('ctx');
 *   return read(ref as TensorRef, 'state_dict.ctx');
 * }, { placeholders: true });
 */
export function readTorchPickle<T>(path: string, use: (root: unknown, read: TorchTensorReader) => T, options: UnpickleOptions = {}): T {
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
    const root = unpickle(pkl, path, options);
    return use(root, (ref, name, readOptions = {}) => materialize(zip, prefix, path, name, ref, bigEndian, readOptions));
  } finally {
    zip.close();
  }
}

/** Reads every tensor of a torch zip checkpoint, in state-dict order. Any global outside the allow-list is refused by name. */
export function readTorchCheckpoint(path: string, options: ReadTorchOptions = {}): Map<string, TorchTensor> {
  return readTorchPickle(path, (root, read) => {
    if (!(root instanceof Map)) {
      throw new TorchCheckpointError(`'${path}': data.pkl holds ${describePickled(root)}, not a state dict (OrderedDict of tensors)`, path);
    }
    const out = new Map<string, TorchTensor>();
    for (const [key, value] of root) {
      if (typeof key !== 'string') {
        throw new TorchCheckpointError(`'${path}': state dict key ${describePickled(key)} is not a string`, path);
      }
      if (!(value instanceof TensorRef)) {
        throw new TorchCheckpointError(`'${path}': entry '${key}' is ${describePickled(value)}, not a tensor`, path, key);
      }
      out.set(key, read(value, key, options));
    }
    return out;
  });
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
