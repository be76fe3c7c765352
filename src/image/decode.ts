/**
 * Decode an image file to 8-bit RGB the way Pillow's `Image.open(f).convert("RGB")` does, using
 * sharp (libvips) as the codec library.
 *
 * What "the way Pillow does" means here, and how it is obtained from sharp:
 * - No EXIF orientation: Pillow's open + convert keep the stored pixel order. sharp does not
 *   auto-orient unless asked, and we never ask.
 * - No colour management: Pillow ignores embedded ICC profiles. sharp would convert from the
 *   embedded profile to sRGB; `ignoreIcc: true` turns that off.
 * - Alpha is dropped, not composited: RGBA/LA/PA → RGB keeps the stored colour under transparent
 *   pixels. sharp's raw output keeps it too; we take the first three channels.
 * - Greyscale (L, LA) is copied into R, G and B.
 * - Palette images: each index becomes its palette colour (libpng/libspng expand the palette,
 *   exactly Pillow's P → RGB lookup; a tRNS chunk only adds an alpha channel, which is dropped).
 * - GIF: the first frame only. libvips renders transparent pixels as (0,0,0,0), whereas Pillow's
 *   first frame is a palette image whose transparent pixels keep the palette colour of the
 *   transparency index (and pixels outside the first frame's rectangle get that index too, or
 *   index 0 when there is no transparency). We parse the GIF header for that colour and put it
 *   back under every alpha-0 pixel, which reproduces Pillow for ordinary GIFs.
 * - CMYK JPEG: Pillow reads it with rawmode "CMYK;I" (it always assumes Adobe's inverted
 *   convention) and converts with `cmyk2rgb`: `nk = 255 - k; out = clip8(nk - MULDIV255(c, nk))`.
 *   libvips also inverts every CMYK JPEG (checked with and without the Adobe APP14 marker), so the
 *   raw CMYK from sharp — taken without any ICC transform (`pipelineColourspace('cmyk')`) — is
 *   Pillow's CMYK, and we apply `cmyk2rgb` to it. CMYK TIFFs are handled the same way.
 * - 16-bit images: the high byte of each sample (`v >> 8`). That is exactly what Pillow does for
 *   16-bit RGB/RGBA/LA PNGs ("RGB;16B" unpacking). For a 16-bit greyscale PNG Pillow makes an "I"
 *   image and `convert("RGB")` CLIPS it to 0..255 (so almost every pixel becomes 255); we take the
 *   high byte instead, which is the sensible reading of the image. Documented deviation.
 * - Truncated or corrupt data is an error (Pillow raises "image file is truncated" unless
 *   LOAD_TRUNCATED_IMAGES is set). libjpeg *warnings* (e.g. extraneous bytes before a marker),
 *   which Pillow ignores, are tolerated (`failOn: 'error'`).
 *
 * JPEG: Pillow 9.4 and libvips both drive libjpeg(-turbo) with its defaults (ISLOW IDCT, fancy
 * upsampling, library YCbCr → RGB); the fixture photo and grey JPEGs decode bit-identically.
 */
import { readFile } from 'node:fs/promises';
import sharp, { type Metadata, type SharpOptions } from 'sharp';

/** An 8-bit RGB image, interleaved (HWC), row-major: `data[(y * width + x) * 3 + c]`. */
export interface DecodedImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** Decoding failed; `file` names the input (a path, or the name given for a buffer). */
export class ImageDecodeError extends Error {
  readonly file: string;
  constructor(file: string, reason: string, options?: { cause?: unknown }) {
    super(`cannot decode image ${file}: ${reason}`, options);
    this.name = 'ImageDecodeError';
    this.file = file;
  }
}

/**
 * An image whose header declares more pixels than allowed: refused before any pixel is decoded (a
 * 31 KB PNG may declare 16000 x 16000 pixels, 768 MB of RGB). An ImageDecodeError, so evaluation
 * skips and lists it as it does a corrupt file.
 */
export class ImageTooLargeError extends ImageDecodeError {
  constructor(file: string, readonly width: number, readonly height: number, readonly limit: number) {
    super(file, `${width} x ${height} = ${width * height} pixels exceeds the limit of ${limit} pixels (--max-pixels)`);
    this.name = 'ImageTooLargeError';
  }
}

/** Default largest image, in pixels (width × height): 40 MP, above any camera photo, 1/6 of a 16000² bomb. */
export const DEFAULT_MAX_PIXELS = 40_000_000;

export interface DecodeOptions {
  /** Name used in error messages when the input is a buffer (default "<buffer>"). */
  name?: string;
  /**
   * Largest width × height accepted, read from the header before decoding (default
   * {@link DEFAULT_MAX_PIXELS}; Infinity: no limit). A larger image throws ImageTooLargeError.
   */
  maxPixels?: number;
}

/** An image header: its size, read without decoding the pixels. */
export interface ImageHeader {
  readonly width: number;
  readonly height: number;
  /** sharp's format name: jpeg, png, webp, gif, tiff, … */
  readonly format: string;
}

function checkMaxPixels(maxPixels: number): number {
  if (!(maxPixels > 0)) throw new RangeError(`maxPixels must be a positive number of pixels (or Infinity), got ${maxPixels}`);
  return maxPixels;
}

/**
 * The header of encoded image bytes (sharp's metadata: no pixel is decoded), checked against
 * `maxPixels` (default {@link DEFAULT_MAX_PIXELS}). Throws ImageDecodeError naming the input when
 * the bytes are not an image, ImageTooLargeError when it declares too many pixels.
 */
export async function readImageHeader(bytes: Uint8Array, options: DecodeOptions = {}): Promise<ImageHeader> {
  const file = options.name ?? '<buffer>';
  const maxPixels = checkMaxPixels(options.maxPixels ?? DEFAULT_MAX_PIXELS);
  if (bytes.length === 0) throw new ImageDecodeError(file, 'file is empty');
  let meta: Metadata;
  try {
    meta = await sharp(bytes, HEADER_INPUT).metadata();
  } catch (err) {
    throw new ImageDecodeError(file, describe(err), { cause: err });
  }
  if (!meta.width || !meta.height || !meta.format) throw new ImageDecodeError(file, 'no image size in the header');
  if (meta.width * meta.height > maxPixels) throw new ImageTooLargeError(file, meta.width, meta.height, maxPixels);
  return { width: meta.width, height: meta.height, format: meta.format };
}

/** (a * b + 128 + ((a * b + 128) >> 8)) >> 8, Pillow's MULDIV255. */
function mulDiv255(a: number, b: number): number {
  const t = a * b + 128;
  return ((t >> 8) + t) >> 8;
}

/**
 * Pillow's `cmyk2rgb` on interleaved CMYK (4 bytes a pixel) → interleaved RGB.
 * `nk = 255 - k; r = clip8(nk - MULDIV255(c, nk))` and likewise for g (m) and b (y).
 */
export function cmykToRgbPillow(cmyk: Uint8Array, out?: Uint8Array): Uint8Array {
  const n = Math.floor(cmyk.length / 4);
  const dst = out ?? new Uint8Array(n * 3);
  for (let i = 0, o = 0, p = 0; i < n; i++, o += 3, p += 4) {
    const nk = 255 - cmyk[p + 3]!;
    // nk - MULDIV255(c, nk) is always within 0..255 for 0 <= c, nk <= 255; clip8 kept for fidelity.
    const r = nk - mulDiv255(cmyk[p]!, nk);
    const g = nk - mulDiv255(cmyk[p + 1]!, nk);
    const b = nk - mulDiv255(cmyk[p + 2]!, nk);
    dst[o] = r < 0 ? 0 : r > 255 ? 255 : r;
    dst[o + 1] = g < 0 ? 0 : g > 255 ? 255 : g;
    dst[o + 2] = b < 0 ? 0 : b > 255 ? 255 : b;
  }
  return dst;
}

/**
 * For a GIF: the RGB colour Pillow gives pixels that libvips leaves transparent in the first frame
 * (the palette colour of the first frame's transparency index, else of index 0). Returns null when
 * the header cannot be walked (then the libvips pixels are kept).
 */
export function gifFirstFrameFillColour(buf: Uint8Array): [number, number, number] | null {
  const n = buf.length;
  if (n < 13 || buf[0] !== 0x47 || buf[1] !== 0x49 || buf[2] !== 0x46) return null; // "GIF"
  const flags = buf[10]!;
  let p = 13;
  let globalTable: [number, number] | null = null; // [offset, entries]
  if (flags & 0x80) {
    const entries = 1 << ((flags & 7) + 1);
    globalTable = [p, entries];
    p += entries * 3;
  }
  let transIndex = -1;
  while (p < n) {
    const block = buf[p]!;
    if (block === 0x21) {
      // extension: label, then sub-blocks
      const label = buf[p + 1];
      p += 2;
      if (label === 0xf9 && p + 5 <= n && buf[p] === 4) {
        const packed = buf[p + 1]!;
        transIndex = packed & 1 ? buf[p + 4]! : -1;
      }
      while (p < n) {
        const len = buf[p]!;
        p += 1 + len;
        if (len === 0) break;
      }
    } else if (block === 0x2c) {
      // image descriptor: the first frame
      if (p + 10 > n) return null;
      const iflags = buf[p + 9]!;
      let table = globalTable;
      if (iflags & 0x80) table = [p + 10, 1 << ((iflags & 7) + 1)];
      const index = transIndex >= 0 ? transIndex : 0;
      if (!table) return [index, index, index]; // no palette: Pillow opens it as "L"
      if (index >= table[1]) return [0, 0, 0];
      const o = table[0] + index * 3;
      if (o + 3 > n) return null;
      return [buf[o]!, buf[o + 1]!, buf[o + 2]!];
    } else {
      return null;
    }
  }
  return null;
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'file not found';
    if (code === 'EISDIR') return 'is a directory';
    if (code === 'EACCES') return 'permission denied';
    return err.message.replace(/\s+$/, '');
  }
  return String(err);
}

/**
 * Decode `input` (a path, or the encoded bytes) to 8-bit RGB as Pillow's
 * `Image.open(f).convert("RGB")`. Throws ImageDecodeError naming the file on any failure.
 */
export async function decodeImage(
  input: string | Uint8Array,
  options: DecodeOptions = {},
): Promise<DecodedImage> {
  const file = typeof input === 'string' ? input : (options.name ?? '<buffer>');
  const maxPixels = checkMaxPixels(options.maxPixels ?? DEFAULT_MAX_PIXELS);
  let bytes: Buffer;
  if (typeof input === 'string') {
    try {
      bytes = await readFile(input);
    } catch (err) {
      throw new ImageDecodeError(file, describe(err), { cause: err });
    }
  } else {
    bytes = Buffer.isBuffer(input) ? input : Buffer.from(input.buffer, input.byteOffset, input.byteLength);
  }
  if (bytes.length === 0) throw new ImageDecodeError(file, 'file is empty');
  for (let attempt = 0; ; attempt++) {
    try {
      return await decodeBytes(bytes, file, maxPixels);
    } catch (err) {
      if (err instanceof ImageDecodeError) throw err;
      // libvips keeps its error text in one buffer for all threads: when another thread clears it
      // first, sharp reports "Unknown error". Decoding once more recovers the reason.
      if (attempt === 0 && err instanceof Error && err.message === 'Unknown error') continue;
      throw new ImageDecodeError(file, describe(err), { cause: err });
    }
  }
}

const SHARP_INPUT: SharpOptions = {
  ignoreIcc: true,
  autoOrient: false,
  failOn: 'error',
  pages: 1,
  page: 0,
};

/** For reading the header: libvips' own limit off there, so our check names the size and the limit. */
const HEADER_INPUT: SharpOptions = { ...SHARP_INPUT, limitInputPixels: false };

/** sharp's input options with libvips' own pixel limit set too, a second guard behind our header check. */
function sharpInput(maxPixels: number): SharpOptions {
  return { ...SHARP_INPUT, limitInputPixels: Number.isFinite(maxPixels) ? Math.max(1, Math.floor(maxPixels)) : false };
}

async function decodeBytes(bytes: Buffer, file: string, maxPixels: number): Promise<DecodedImage> {
  const input = sharpInput(maxPixels);
  const meta = await sharp(bytes, HEADER_INPUT).metadata();
  if (meta.width && meta.height && meta.width * meta.height > maxPixels) throw new ImageTooLargeError(file, meta.width, meta.height, maxPixels);
  if (meta.space === 'cmyk') {
    const { data, info } = await sharp(bytes, input)
      .pipelineColourspace('cmyk')
      .toColourspace('cmyk')
      .raw()
      .toBuffer({ resolveWithObject: true });
    if (info.channels < 4) throw new Error(`CMYK image decoded with ${info.channels} channels`);
    let cmyk: Uint8Array = data;
    if (info.channels > 4) {
      // CMYK + alpha: drop the extra channels
      const n = info.width * info.height;
      cmyk = new Uint8Array(n * 4);
      for (let i = 0; i < n; i++) for (let c = 0; c < 4; c++) cmyk[i * 4 + c] = data[i * info.channels + c]!;
    }
    return { data: cmykToRgbPillow(cmyk), width: info.width, height: info.height };
  }
  const { data, info } = await sharp(bytes, input).raw().toBuffer({ resolveWithObject: true });
  const { width, height, channels } = info;
  const n = width * height;
  if (data.length !== n * channels) {
    throw new Error(`decoder returned ${data.length} bytes for ${width}x${height}x${channels}`);
  }
  let rgb: Uint8Array;
  if (channels === 3) {
    rgb = new Uint8Array(data.buffer, data.byteOffset, data.length);
  } else if (channels === 1 || channels === 2) {
    rgb = new Uint8Array(n * 3);
    for (let i = 0, p = 0, o = 0; i < n; i++, p += channels, o += 3) {
      const v = data[p]!;
      rgb[o] = v;
      rgb[o + 1] = v;
      rgb[o + 2] = v;
    }
  } else if (channels >= 4) {
    rgb = new Uint8Array(n * 3);
    for (let i = 0, p = 0, o = 0; i < n; i++, p += channels, o += 3) {
      rgb[o] = data[p]!;
      rgb[o + 1] = data[p + 1]!;
      rgb[o + 2] = data[p + 2]!;
    }
    if (meta.format === 'gif' && channels === 4) {
      const fill = gifFirstFrameFillColour(bytes);
      if (fill) {
        for (let i = 0; i < n; i++) {
          if (data[i * 4 + 3] === 0) {
            rgb[i * 3] = fill[0];
            rgb[i * 3 + 1] = fill[1];
            rgb[i * 3 + 2] = fill[2];
          }
        }
      }
    }
  } else {
    throw new Error(`unsupported channel count ${channels}`);
  }
  return { data: rgb, width, height };
}
