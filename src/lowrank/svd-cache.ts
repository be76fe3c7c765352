/**
 * SVD factors cached on disk and in memory. SeTAR's search evaluates every candidate ratio of every
 * weight it visits, and every run visits the same weights: each SVD should be computed once.
 *
 * Key: SHA-256 of the shape and the weight's float32 bytes. Files: `<dir>/<key>.svd`, written to a
 * temporary name in the same directory and renamed, so readers never see a partial file. Layout
 * (little-endian):
 *
 * | offset | size | field |
 * |---|---|---|
 * | 0 | 8 | magic `SETARSVD` |
 * | 8 | 4 | format version (1), u32 |
 * | 12 | 12 | rows, cols, k, u32 each |
 * | 24 | 32 | the key (SHA-256 of shape + weight bytes) |
 * | 56 | 32 | SHA-256 of the payload |
 * | 88 | 8·(rows·k + k + k·cols) | payload: u `[rows, k]`, s `[k]`, vh `[k, cols]`, float64 |
 *
 * A file that fails any check (size, magic, version, shape, key, payload hash) is reported with a
 * warning (`process.emitWarning`, code `SETAR_SVD_CACHE`), recomputed and rewritten.
 *
 * @example
 * const factors = await getSvd(weight, [3072, 768]); // computed once, then read back
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { endianness, homedir } from 'node:os';
import { join } from 'node:path';
import { removeOrphanTempFiles } from '../io/atomic.js';
import { svd, type SvdFactors } from './svd.js';

/** Options of {@link getSvd}. */
export interface SvdCacheOptions {
  /** Cache directory; default {@link defaultSvdCacheDir}. */
  readonly cacheDir?: string;
  /** Skip the disk cache (neither read nor write); the in-memory cache is still used. */
  readonly noCache?: boolean;
  /** The SVD routine, default {@link svd} (tests count its calls). */
  readonly compute?: (a: Float32Array, rows: number, cols: number) => SvdFactors;
}

const MAGIC = 'SETARSVD';
const VERSION = 1;
const HEADER_BYTES = 88;
/** Entries kept in memory (a 3072x768 weight's factors take 24 MB). */
const MEMORY_ENTRIES = 4;

/** `$SETAR_CACHE_DIR/svd`, or `~/.cache/setar/svd`. */
export function defaultSvdCacheDir(): string {
  const root = process.env.SETAR_CACHE_DIR;
  return root ? join(root, 'svd') : join(homedir(), '.cache', 'setar', 'svd');
}

/** Most-recently-used factors by key; a Map iterates in insertion order, oldest first. */
const memory = new Map<string, SvdFactors>();
/** Computations in progress by key, so concurrent requests for one weight share one SVD. */
const pending = new Map<string, Promise<SvdFactors>>();

/** Cache folders this process has cleared of orphan temporary files (once each, before its first write). */
const cleaned = new Set<string>();

/** Empties the in-memory cache (the disk cache is untouched). */
export function clearSvdMemoryCache(): void {
  memory.clear();
}

/** Hex SHA-256 of the shape and the float32 bytes of `weight`: the cache key. */
export function svdCacheKey(weight: Float32Array, shape: readonly [number, number]): string {
  return createHash('sha256')
    .update(`setar-svd:${shape[0]}x${shape[1]}:`)
    .update(new Uint8Array(weight.buffer, weight.byteOffset, weight.byteLength))
    .digest('hex');
}

/**
 * The thin SVD of `weight` (`[rows, cols]` row-major float32), from memory, from the disk cache,
 * or computed (and then stored). The returned arrays are shared with the cache: do not modify them.
 */
export async function getSvd(weight: Float32Array, shape: readonly [number, number], options: SvdCacheOptions = {}): Promise<SvdFactors> {
  const [rows, cols] = shape;
  if (!Number.isInteger(rows) || rows < 1 || !Number.isInteger(cols) || cols < 1) {
    throw new RangeError(`'shape' passed to 'getSvd' must be [rows, cols] with integers >= 1, got [${shape.join(', ')}]`);
  }
  if (weight.length !== rows * cols) {
    throw new RangeError(`'weight' passed to 'getSvd' must have ${rows}*${cols} = ${rows * cols} elements, got ${weight.length}`);
  }
  const key = svdCacheKey(weight, shape);
  const hit = memory.get(key);
  if (hit) {
    memory.delete(key);
    memory.set(key, hit);
    return hit;
  }
  let job = pending.get(key);
  if (!job) {
    job = load(key, weight, rows, cols, options).finally(() => pending.delete(key));
    pending.set(key, job);
  }
  const factors = await job;
  memory.set(key, factors);
  while (memory.size > MEMORY_ENTRIES) memory.delete(memory.keys().next().value as string);
  return factors;
}

async function load(key: string, weight: Float32Array, rows: number, cols: number, options: SvdCacheOptions): Promise<SvdFactors> {
  const compute = options.compute ?? svd;
  // The payload is written in the machine's byte order, which the format fixes as little-endian.
  if (options.noCache || endianness() !== 'LE') return compute(weight, rows, cols);
  const dir = options.cacheDir ?? defaultSvdCacheDir();
  if (!cleaned.has(dir)) {
    // before this process writes there: what a killed run left half-written
    cleaned.add(dir);
    removeOrphanTempFiles(dir);
  }
  const file = join(dir, `${key}.svd`);
  let bytes: Buffer | null = null;
  try {
    bytes = await readFile(file);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== 'ENOENT' && code !== 'ENOTDIR') warn(`cannot read ${file} (${(err as Error).message}); recomputing`);
  }
  if (bytes) {
    const decoded = decode(bytes, key, rows, cols);
    if (typeof decoded !== 'string') return decoded;
    warn(`ignoring corrupt SVD cache file ${file}: ${decoded}; recomputing`);
  }
  const factors = compute(weight, rows, cols);
  try {
    await writeAtomic(dir, file, encode(factors, key));
  } catch (err) {
    warn(`cannot write SVD cache file ${file} (${(err as Error).message}); continuing without it`);
  }
  return factors;
}

function warn(message: string): void {
  process.emitWarning(message, { code: 'SETAR_SVD_CACHE' });
}

async function writeAtomic(dir: string, file: string, bytes: Uint8Array): Promise<void> {
  await mkdir(dir, { recursive: true });
  const tmp = `${file}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, bytes);
    await rename(tmp, file);
  } catch (err) {
    await rm(tmp, { force: true });
    throw err;
  }
}

function encode(f: SvdFactors, key: string): Uint8Array {
  const payloadBytes = 8 * (f.u.length + f.s.length + f.vh.length);
  const out = Buffer.alloc(HEADER_BYTES + payloadBytes);
  out.write(MAGIC, 0, 'latin1');
  out.writeUInt32LE(VERSION, 8);
  out.writeUInt32LE(f.rows, 12);
  out.writeUInt32LE(f.cols, 16);
  out.writeUInt32LE(f.k, 20);
  out.write(key, 24, 'hex');
  let o = HEADER_BYTES;
  for (const part of [f.u, f.s, f.vh]) {
    const b = new Uint8Array(part.buffer, part.byteOffset, part.byteLength);
    out.set(b, o);
    o += b.length;
  }
  createHash('sha256').update(out.subarray(HEADER_BYTES)).digest().copy(out, 56);
  return out;
}

/** The factors in `bytes`, or a string saying what is wrong with them. */
function decode(bytes: Buffer, key: string, rows: number, cols: number): SvdFactors | string {
  const k = Math.min(rows, cols);
  const expected = HEADER_BYTES + 8 * (rows * k + k + k * cols);
  if (bytes.length !== expected) return `size ${bytes.length} bytes, expected ${expected}`;
  if (bytes.toString('latin1', 0, 8) !== MAGIC) return 'bad magic';
  const version = bytes.readUInt32LE(8);
  if (version !== VERSION) return `format version ${version}, expected ${VERSION}`;
  const [r, c, kk] = [bytes.readUInt32LE(12), bytes.readUInt32LE(16), bytes.readUInt32LE(20)];
  if (r !== rows || c !== cols || kk !== k) return `shape [${r}, ${c}] k ${kk}, expected [${rows}, ${cols}] k ${k}`;
  if (bytes.toString('hex', 24, 56) !== key) return 'key mismatch';
  const payload = bytes.subarray(HEADER_BYTES);
  if (!createHash('sha256').update(payload).digest().equals(bytes.subarray(56, HEADER_BYTES))) return 'payload checksum mismatch';
  // Copy into fresh (8-byte aligned) buffers.
  const all = new Float64Array(payload.length / 8);
  new Uint8Array(all.buffer).set(payload);
  const u = all.subarray(0, rows * k);
  const s = all.subarray(rows * k, rows * k + k);
  const vh = all.subarray(rows * k + k);
  return { u, s, vh, rows, cols, k };
}
