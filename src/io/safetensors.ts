import { closeSync, openSync, readSync, fstatSync } from 'node:fs';
import { writeFileAtomic } from './atomic.js';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

/** Element types setar reads from safetensors files. Others are listed by name in errors. */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | 'F64' | 'I64' | 'I32' | 'U8' | 'I8' | 'BOOL' | 'I16' | 'U16';

const ITEM_SIZE: Record<SafetensorsDtype, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, U16: 2, U8: 1, I8: 1, BOOL: 1,
};

/** Floating dtypes that load as float32 (F16/BF16 widen exactly, F64 rounds). */
export const FLOAT_DTYPES: readonly SafetensorsDtype[] = ['F32', 'F16', 'BF16', 'F64'];

/** One tensor's header entry, with offsets made absolute in the file. */
export interface TensorEntry {
  readonly name: string;
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  /** Absolute byte offset of the first element in the file. */
  readonly begin: number;
  /** Absolute byte offset one past the last element. */
  readonly end: number;
}

/** Any problem with a safetensors file or a tensor in it; the message names the file and tensor. */
export class SafetensorsError extends Error {
  constructor(message: string, readonly file: string, readonly tensor?: string) {
    super(message);
    this.name = 'SafetensorsError';
  }
}

const MAX_HEADER = 100 * 1024 * 1024;

/**
 * A safetensors file opened for random access. Only the header is read at open; each tensor is
 * read on demand, so a checkpoint never has to sit in memory whole (ViT-L/14 is 1.7 GB in F32).
 *
 * @example
 * const f = SafetensorsFile.open('model.safetensors');
 * const w = f.readFloat32('visual_projection.weight'); // Float32Array, whatever the stored float dtype
 * f.close();
 */
export class SafetensorsFile {
  private fd: number | null;

  private constructor(
    readonly path: string,
    fd: number,
    readonly entries: ReadonlyMap<string, TensorEntry>,
    readonly metadata: Readonly<Record<string, string>>,
  ) {
    this.fd = fd;
  }

  /** Opens `path` and validates every header entry (dtype, integer dims, offsets, span = elements × item size). */
  static open(path: string): SafetensorsFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      throw new SafetensorsError(`cannot open safetensors file '${path}': ${(e as Error).message}`, path);
    }
    try {
      const size = fstatSync(fd).size;
      if (size < 8) throw new SafetensorsError(`'${path}' is ${size} bytes, too short for a safetensors header`, path);
      const lenBuf = Buffer.alloc(8);
      readSync(fd, lenBuf, 0, 8, 0);
      const headerLen = Number(lenBuf.readBigUInt64LE(0));
      if (headerLen > MAX_HEADER || 8 + headerLen > size) {
        throw new SafetensorsError(
          `'${path}': header length ${headerLen} does not fit the file (${size} bytes); the file is truncated or not safetensors`, path);
      }
      const headerBuf = Buffer.alloc(headerLen);
      readSync(fd, headerBuf, 0, headerLen, 8);
      let header: Record<string, unknown>;
      try {
        header = JSON.parse(headerBuf.toString('utf8')) as Record<string, unknown>;
      } catch (e) {
        throw new SafetensorsError(`'${path}': header is not valid JSON (${(e as Error).message})`, path);
      }
      const dataStart = 8 + headerLen;
      const entries = new Map<string, TensorEntry>();
      let metadata: Record<string, string> = {};
      for (const [name, raw] of Object.entries(header)) {
        if (name === '__metadata__') {
          metadata = (raw ?? {}) as Record<string, string>;
          continue;
        }
        entries.set(name, validateEntry(path, name, raw, dataStart, size));
      }
      return new SafetensorsFile(path, fd, entries, metadata);
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  /** The header entry of `name`, or an error listing how many tensors the file has. */
  entry(name: string): TensorEntry {
    const e = this.entries.get(name);
    if (!e) {
      throw new SafetensorsError(`tensor '${name}' not found in '${this.path}' (${this.entries.size} tensors)`, this.path, name);
    }
    return e;
  }

  /** Raw bytes of a tensor, read from disk into a fresh buffer. */
  readBytes(name: string): Buffer {
    const e = this.entry(name);
    const buf = Buffer.allocUnsafe(e.end - e.begin);
    this.readInto(name, buf);
    return buf;
  }

  private readInto(name: string, buf: Uint8Array): void {
    const e = this.entry(name);
    if (this.fd === null) throw new SafetensorsError(`'${this.path}' is closed`, this.path, name);
    let done = 0;
    while (done < buf.length) {
      const n = readSync(this.fd, buf, done, buf.length - done, e.begin + done);
      if (n === 0) {
        throw new SafetensorsError(`'${this.path}': file ended while reading tensor '${name}'`, this.path, name);
      }
      done += n;
    }
  }

  /**
   * A floating tensor as float32. F16 and BF16 widen exactly; F64 rounds to nearest.
   * @param expectedShape when given, a mismatch throws naming the tensor, the expected and the found shape.
   */
  readFloat32(name: string, expectedShape?: readonly number[]): Float32Array {
    const e = this.entry(name);
    if (expectedShape && !sameShape(e.shape, expectedShape)) {
      throw new SafetensorsError(
        `tensor '${name}' in '${this.path}' has shape [${e.shape.join(', ')}], expected [${expectedShape.join(', ')}]`, this.path, name);
    }
    if (!FLOAT_DTYPES.includes(e.dtype)) {
      throw new SafetensorsError(
        `tensor '${name}' in '${this.path}' has dtype ${e.dtype}; expected one of ${FLOAT_DTYPES.join(', ')}`, this.path, name);
    }
    if (e.dtype === 'F32') {
      // Straight into the result's memory: no intermediate buffer for the largest tensors.
      const out = new Float32Array((e.end - e.begin) / 4);
      this.readInto(name, new Uint8Array(out.buffer));
      return out;
    }
    return toFloat32(this.readBytes(name), e.dtype);
  }

  /** A tensor in its stored dtype (F16/BF16 widened to float32), for reading reference files and metadata tensors. */
  read(name: string): StoredTensor {
    const e = this.entry(name);
    const bytes = this.readBytes(name);
    const aligned = new ArrayBuffer(bytes.length);
    new Uint8Array(aligned).set(bytes);
    let data: StoredTensor['data'];
    switch (e.dtype) {
      case 'F64': data = new Float64Array(aligned); break;
      case 'I64': data = new BigInt64Array(aligned); break;
      case 'I32': data = new Int32Array(aligned); break;
      case 'I16': data = new Int16Array(aligned); break;
      case 'U16': data = new Uint16Array(aligned); break;
      case 'I8': data = new Int8Array(aligned); break;
      case 'U8': case 'BOOL': data = new Uint8Array(aligned); break;
      default: data = toFloat32(bytes, e.dtype);
    }
    return { dtype: e.dtype, shape: e.shape, data };
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }
}

/** A tensor as stored: typed array by dtype (F16/BF16 as Float32Array). */
export interface StoredTensor {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  readonly data: Float32Array | Float64Array | BigInt64Array | Int32Array | Int16Array | Uint16Array | Int8Array | Uint8Array;
}

function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function validateEntry(path: string, name: string, raw: unknown, dataStart: number, fileSize: number): TensorEntry {
  const r = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown } | null;
  const where = `tensor '${name}' in '${path}'`;
  if (!r || typeof r !== 'object') throw new SafetensorsError(`${where}: header entry is not an object`, path, name);
  const dtype = r.dtype as SafetensorsDtype;
  if (typeof dtype !== 'string' || !(dtype in ITEM_SIZE)) {
    throw new SafetensorsError(
      `${where}: unsupported dtype ${JSON.stringify(r.dtype)}; supported: ${Object.keys(ITEM_SIZE).join(', ')}`, path, name);
  }
  const shape = r.shape;
  if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new SafetensorsError(`${where}: shape ${JSON.stringify(shape)} is not a list of non-negative integers`, path, name);
  }
  const offs = r.data_offsets;
  if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && d >= 0) || offs[1] < offs[0]) {
    throw new SafetensorsError(`${where}: data_offsets ${JSON.stringify(offs)} must be [begin, end] with 0 <= begin <= end`, path, name);
  }
  const elements = shape.reduce((a: number, b: number) => a * b, 1);
  const span = offs[1] - offs[0];
  if (span !== elements * ITEM_SIZE[dtype]) {
    throw new SafetensorsError(
      `${where}: data_offsets span ${span} bytes, but shape [${shape.join(', ')}] of ${dtype} needs ${elements * ITEM_SIZE[dtype]}`, path, name);
  }
  const begin = dataStart + offs[0];
  const end = dataStart + offs[1];
  if (end > fileSize) {
    throw new SafetensorsError(
      `${where}: data ends at byte ${end} but the file has ${fileSize} bytes (truncated file?)`, path, name);
  }
  return { name, dtype, shape, begin, end };
}

/** Converts raw little-endian bytes of a float dtype to a new Float32Array. */
export function toFloat32(bytes: Buffer, dtype: SafetensorsDtype): Float32Array {
  const n = bytes.length / ITEM_SIZE[dtype];
  switch (dtype) {
    case 'F32': {
      // Copy into an aligned buffer of its own: the Buffer may sit at any offset of a pool.
      const out = new Float32Array(n);
      new Uint8Array(out.buffer).set(bytes);
      return out;
    }
    case 'F64': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = bytes.readDoubleLE(i * 8);
      return out;
    }
    case 'BF16': {
      // bfloat16 is the top half of a float32: shift the bits into place.
      const out = new Float32Array(n);
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = bytes.readUInt16LE(i * 2) << 16;
      return out;
    }
    case 'F16': {
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = halfToFloat(bytes.readUInt16LE(i * 2));
      return out;
    }
    default:
      throw new TypeError(`toFloat32: dtype ${dtype} is not a float type`);
  }
}

const HALF_EXP = 2 ** -24;
/** IEEE binary16 → number, exact (subnormals, infinities and NaN included). */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * HALF_EXP;
  if (exp === 0x1f) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

/** number → IEEE binary16 bits, round to nearest even (as numpy/torch do). */
export function floatToHalf(x: number): number {
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  f32[0] = x;
  const bits = u32[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exp = (bits >>> 23) & 0xff;
  let mant = bits & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && (half & 1))) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && (half & 1))) half++;
  return sign | half;
}

/** float → bfloat16 bits, round to nearest even. */
export function floatToBf16(x: number): number {
  const f32 = new Float32Array([x]);
  const bits = new Uint32Array(f32.buffer)[0]!;
  if ((bits & 0x7f800000) === 0x7f800000 && bits & 0x7fffff) return (bits >>> 16) | 0x40;
  const rounded = bits + 0x7fff + ((bits >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

/** A tensor to write: data as a typed array matching `dtype` (F16/BF16 take float32 data and are converted). */
export interface TensorToWrite {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
  readonly data: Float32Array | Float64Array | Int32Array | BigInt64Array | Uint8Array | Int8Array;
}

function encodeTensor(t: TensorToWrite, name: string): Uint8Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  if (t.data.length !== n) {
    throw new RangeError(`tensor '${name}': data has ${t.data.length} elements, shape [${t.shape.join(', ')}] needs ${n}`);
  }
  if (t.dtype === 'F16' || t.dtype === 'BF16') {
    const out = new Uint16Array(n);
    const conv = t.dtype === 'F16' ? floatToHalf : floatToBf16;
    for (let i = 0; i < n; i++) out[i] = conv(Number(t.data[i]));
    return new Uint8Array(out.buffer);
  }
  return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
}

/**
 * Writes a safetensors file atomically (temp file in the same folder, then rename), laid out as
 * transformers expects: `__metadata__` {"format": "pt"} by default, header padded to 8 bytes,
 * tensors packed largest item size first so typed-array views of every tensor are aligned.
 */
export function writeSafetensors(path: string, tensors: Record<string, TensorToWrite>, metadata: Record<string, string> = { format: 'pt' }): void {
  const names = Object.keys(tensors).sort((a, b) => ITEM_SIZE[tensors[b]!.dtype] - ITEM_SIZE[tensors[a]!.dtype] || (a < b ? -1 : a > b ? 1 : 0));
  const header: Record<string, unknown> = { __metadata__: metadata };
  const blobs: Uint8Array[] = [];
  let offset = 0;
  for (const name of names) {
    const t = tensors[name]!;
    const bytes = encodeTensor(t, name);
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.byteLength] };
    blobs.push(bytes);
    offset += bytes.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (Buffer.byteLength(json) % 8)) % 8);
  const headerBytes = Buffer.from(json, 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(headerBytes.length));
  writeFileAtomic(path, [len, headerBytes, ...blobs]);
}

/**
 * The tensors of a checkpoint that may be split in shards (`model.safetensors.index.json`,
 * HF's `weight_map`), behind one lookup. Files are opened lazily and only once.
 */
export class Checkpoint {
  private readonly files = new Map<string, SafetensorsFile>();

  private constructor(readonly dir: string, private readonly weightMap: ReadonlyMap<string, string>) {}

  /** Opens `dir/model.safetensors`, or the shards listed in `dir/model.safetensors.index.json`. */
  static async open(dir: string): Promise<Checkpoint> {
    const index = join(dir, 'model.safetensors.index.json');
    let indexText: string | null = null;
    try {
      indexText = await readFile(index, 'utf8');
    } catch {
      indexText = null;
    }
    if (indexText !== null) {
      let parsed: { weight_map?: Record<string, string> };
      try {
        parsed = JSON.parse(indexText) as { weight_map?: Record<string, string> };
      } catch (e) {
        throw new SafetensorsError(`'${index}' is not valid JSON (${(e as Error).message})`, index);
      }
      if (!parsed.weight_map || typeof parsed.weight_map !== 'object') {
        throw new SafetensorsError(`'${index}' has no "weight_map" object`, index);
      }
      return new Checkpoint(dir, new Map(Object.entries(parsed.weight_map)));
    }
    return Checkpoint.single(dir, 'model.safetensors');
  }

  /** One safetensors file of any name (a fine-tuned checkpoint); `dir` in errors is the file. */
  static openFile(file: string): Checkpoint {
    return Checkpoint.single(file, '');
  }

  private static single(dir: string, name: string): Checkpoint {
    const f = SafetensorsFile.open(name ? join(dir, name) : dir);
    const cp = new Checkpoint(dir, new Map([...f.entries.keys()].map((k) => [k, name])));
    cp.files.set(name, f);
    return cp;
  }

  /** Every tensor name in the checkpoint. */
  names(): string[] {
    return [...this.weightMap.keys()];
  }

  has(name: string): boolean {
    return this.weightMap.has(name);
  }

  private fileOf(name: string): SafetensorsFile {
    const shard = this.weightMap.get(name);
    if (shard === undefined) {
      throw new SafetensorsError(`tensor '${name}' is missing from the checkpoint in '${this.dir}'`, this.dir, name);
    }
    let f = this.files.get(shard);
    if (!f) {
      f = SafetensorsFile.open(join(this.dir, shard));
      this.files.set(shard, f);
    }
    return f;
  }

  entry(name: string): TensorEntry {
    return this.fileOf(name).entry(name);
  }

  /** A float tensor as float32; `expectedShape` is checked first (error names tensor, expected and found). */
  readFloat32(name: string, expectedShape?: readonly number[]): Float32Array {
    return this.fileOf(name).readFloat32(name, expectedShape);
  }

  /** A tensor in its stored dtype (see {@link SafetensorsFile.read}). */
  read(name: string): StoredTensor {
    return this.fileOf(name).read(name);
  }

  close(): void {
    for (const f of this.files.values()) f.close();
    this.files.clear();
  }
}
