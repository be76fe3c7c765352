import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import * as zlib from 'node:zlib';

/**
 * A minimal read-only zip reader for PyTorch checkpoints: central directory (ZIP64 included, since
 * checkpoints over 4 GB use it), STORED entries read in place by byte range, DEFLATED entries
 * inflated whole. No dependency: torch.save writes every record STORED and 64-byte aligned, so a
 * full unzip library would add nothing but surface. Entries are never extracted to disk, so names
 * like `../x` are harmless here.
 */

/** Any problem reading a zip; the message names the file (and the entry when there is one). */
export class ZipReadError extends Error {
  constructor(message: string, readonly file: string, readonly entry?: string) {
    super(message);
    this.name = 'ZipReadError';
  }
}

/** One central-directory entry. */
export interface ZipEntry {
  readonly name: string;
  /** 0 = STORED, 8 = DEFLATED; others are refused when read. */
  readonly method: number;
  readonly compressedSize: number;
  readonly size: number;
  readonly crc32: number;
  readonly localHeaderOffset: number;
}

const EOCD_SIG = 0x06054b50;
const ZIP64_LOCATOR_SIG = 0x07064b50;
const ZIP64_EOCD_SIG = 0x06064b50;
const CENTRAL_SIG = 0x02014b50;
const LOCAL_SIG = 0x04034b50;
const CHUNK = 1 << 30;

export class ZipFile {
  private fd: number | null;
  private readonly dataStarts = new Map<string, number>();

  private constructor(readonly path: string, fd: number, readonly size: number, readonly entries: ReadonlyMap<string, ZipEntry>) {
    this.fd = fd;
  }

  /** Opens `path` and reads its central directory; a truncated file or a non-zip throws naming the file. */
  static open(path: string): ZipFile {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      throw new ZipReadError(`cannot open '${path}': ${(e as Error).message}`, path);
    }
    try {
      const size = fstatSync(fd).size;
      return new ZipFile(path, fd, size, readCentralDirectory(path, fd, size));
    } catch (e) {
      closeSync(fd);
      throw e;
    }
  }

  entry(name: string): ZipEntry | undefined {
    return this.entries.get(name);
  }

  /** Absolute file offset of an entry's data (after its local header). */
  dataStart(name: string): number {
    const known = this.dataStarts.get(name);
    if (known !== undefined) return known;
    const e = this.require(name);
    const h = this.readAt(e.localHeaderOffset, 30, name);
    if (h.readUInt32LE(0) !== LOCAL_SIG) {
      throw new ZipReadError(`'${this.path}': entry '${name}' has no local header at byte ${e.localHeaderOffset}`, this.path, name);
    }
    const start = e.localHeaderOffset + 30 + h.readUInt16LE(26) + h.readUInt16LE(28);
    if (start + e.compressedSize > this.size) {
      throw new ZipReadError(
        `'${this.path}': entry '${name}' ends at byte ${start + e.compressedSize} but the file has ${this.size} bytes (truncated?)`, this.path, name);
    }
    this.dataStarts.set(name, start);
    return start;
  }

  /** The whole entry, uncompressed, its CRC-32 checked (where Node has zlib.crc32, 20.15+). */
  read(name: string): Buffer {
    const e = this.require(name);
    let out: Buffer;
    if (e.method === 0) {
      out = this.readAt(this.dataStart(name), e.size, name);
    } else if (e.method === 8) {
      const raw = this.readAt(this.dataStart(name), e.compressedSize, name);
      try {
        out = zlib.inflateRawSync(raw);
      } catch (err) {
        throw new ZipReadError(`'${this.path}': entry '${name}' does not inflate: ${(err as Error).message}`, this.path, name);
      }
      if (out.length !== e.size) {
        throw new ZipReadError(`'${this.path}': entry '${name}' inflates to ${out.length} bytes, directory says ${e.size}`, this.path, name);
      }
    } else {
      throw new ZipReadError(`'${this.path}': entry '${name}' uses compression method ${e.method}; only STORED (0) and DEFLATED (8) are read`, this.path, name);
    }
    const crc32 = (zlib as { crc32?: (d: Uint8Array) => number }).crc32;
    if (typeof crc32 === 'function' && crc32(out) >>> 0 !== e.crc32 >>> 0) {
      throw new ZipReadError(`'${this.path}': entry '${name}' fails its CRC-32 check (corrupt file?)`, this.path, name);
    }
    return out;
  }

  /**
   * `length` bytes from `offset` within the uncompressed entry, into `into` when given (e.g. the
   * bytes of an aligned typed array). STORED entries are read straight from disk; others are inflated.
   */
  readRange(name: string, offset: number, length: number, into?: Uint8Array): Buffer {
    const e = this.require(name);
    if (offset < 0 || length < 0 || offset + length > e.size) {
      throw new ZipReadError(`'${this.path}': bytes [${offset}, ${offset + length}) lie outside entry '${name}' (${e.size} bytes)`, this.path, name);
    }
    const out = into ? Buffer.from(into.buffer, into.byteOffset, into.byteLength) : Buffer.allocUnsafe(length);
    if (out.length < length) throw new RangeError(`readRange: target holds ${out.length} bytes, ${length} asked`);
    if (e.method === 0) {
      const start = this.dataStart(name) + offset;
      this.readFully(out, length, start, name);
    } else {
      this.read(name).copy(out, 0, offset, offset + length);
    }
    return out.length === length ? out : out.subarray(0, length);
  }

  close(): void {
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private require(name: string): ZipEntry {
    const e = this.entries.get(name);
    if (!e) throw new ZipReadError(`'${this.path}' has no entry '${name}'`, this.path, name);
    return e;
  }

  private readAt(position: number, length: number, name?: string): Buffer {
    const buf = Buffer.allocUnsafe(length);
    this.readFully(buf, length, position, name);
    return buf;
  }

  private readFully(buf: Buffer, length: number, position: number, name?: string): void {
    if (this.fd === null) throw new ZipReadError(`'${this.path}' is closed`, this.path, name);
    let done = 0;
    while (done < length) {
      const n = readSync(this.fd, buf, done, Math.min(CHUNK, length - done), position + done);
      if (n === 0) {
        throw new ZipReadError(`'${this.path}': file ended at byte ${position + done}${name ? ` while reading '${name}'` : ''} (truncated?)`, this.path, name);
      }
      done += n;
    }
  }
}

function readSpan(fd: number, position: number, length: number): Buffer {
  const buf = Buffer.alloc(length);
  let done = 0;
  while (done < length) {
    const n = readSync(fd, buf, done, length - done, position + done);
    if (n === 0) break;
    done += n;
  }
  return buf.subarray(0, done);
}

function readCentralDirectory(path: string, fd: number, size: number): Map<string, ZipEntry> {
  const notZip = `'${path}' is not a zip file, or is truncated: no end-of-central-directory record`;
  if (size < 22) throw new ZipReadError(`${notZip} (${size} bytes)`, path);
  const tailLen = Math.min(size, 22 + 0xffff);
  const tailStart = size - tailLen;
  const tail = readSpan(fd, tailStart, tailLen);
  let eocd = -1;
  for (let i = tail.length - 22; i >= 0; i--) {
    if (tail.readUInt32LE(i) === EOCD_SIG && i + 22 + tail.readUInt16LE(i + 20) <= tail.length) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new ZipReadError(notZip, path);
  let count = tail.readUInt16LE(eocd + 10);
  let cdSize = tail.readUInt32LE(eocd + 12);
  let cdOffset = tail.readUInt32LE(eocd + 16);
  if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    const locAt = tailStart + eocd - 20;
    const loc = locAt >= 0 ? readSpan(fd, locAt, 20) : Buffer.alloc(0);
    if (loc.length < 20 || loc.readUInt32LE(0) !== ZIP64_LOCATOR_SIG) {
      throw new ZipReadError(`'${path}': end record points to ZIP64 but no ZIP64 locator precedes it (truncated?)`, path);
    }
    const z64At = toSafe(loc.readBigUInt64LE(8), path);
    const z64 = readSpan(fd, z64At, 56);
    if (z64.length < 56 || z64.readUInt32LE(0) !== ZIP64_EOCD_SIG) {
      throw new ZipReadError(`'${path}': no ZIP64 end record at byte ${z64At} (truncated?)`, path);
    }
    count = toSafe(z64.readBigUInt64LE(32), path);
    cdSize = toSafe(z64.readBigUInt64LE(40), path);
    cdOffset = toSafe(z64.readBigUInt64LE(48), path);
  }
  if (cdOffset + cdSize > size) {
    throw new ZipReadError(`'${path}': central directory [${cdOffset}, ${cdOffset + cdSize}) runs past the end of the file (${size} bytes; truncated?)`, path);
  }
  const cd = readSpan(fd, cdOffset, cdSize);
  const entries = new Map<string, ZipEntry>();
  let p = 0;
  for (let k = 0; k < count; k++) {
    if (p + 46 > cd.length || cd.readUInt32LE(p) !== CENTRAL_SIG) {
      throw new ZipReadError(`'${path}': central directory entry ${k} of ${count} is malformed at byte ${cdOffset + p}`, path);
    }
    const method = cd.readUInt16LE(p + 10);
    const crc32 = cd.readUInt32LE(p + 16);
    let compressedSize = cd.readUInt32LE(p + 20);
    let uncompressed = cd.readUInt32LE(p + 24);
    const nameLen = cd.readUInt16LE(p + 28);
    const extraLen = cd.readUInt16LE(p + 30);
    const commentLen = cd.readUInt16LE(p + 32);
    let localHeaderOffset = cd.readUInt32LE(p + 42);
    if (p + 46 + nameLen + extraLen + commentLen > cd.length) {
      throw new ZipReadError(`'${path}': central directory entry ${k} runs past the directory`, path);
    }
    const name = cd.toString('utf8', p + 46, p + 46 + nameLen);
    // ZIP64 extended information: the 8-byte values present are exactly those saturated above, in order.
    let x = p + 46 + nameLen;
    const extraEnd = x + extraLen;
    while (x + 4 <= extraEnd) {
      const id = cd.readUInt16LE(x);
      const len = cd.readUInt16LE(x + 2);
      if (id === 0x0001) {
        let q = x + 4;
        const next = (): number => {
          if (q + 8 > x + 4 + len) throw new ZipReadError(`'${path}': entry '${name}' has a short ZIP64 extra field`, path, name);
          const v = toSafe(cd.readBigUInt64LE(q), path);
          q += 8;
          return v;
        };
        if (uncompressed === 0xffffffff) uncompressed = next();
        if (compressedSize === 0xffffffff) compressedSize = next();
        if (localHeaderOffset === 0xffffffff) localHeaderOffset = next();
      }
      x += 4 + len;
    }
    entries.set(name, { name, method, compressedSize, size: uncompressed, crc32, localHeaderOffset });
    p += 46 + nameLen + extraLen + commentLen;
  }
  return entries;
}

function toSafe(v: bigint, path: string): number {
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZipReadError(`'${path}': zip offset ${v} is out of range`, path);
  return Number(v);
}
