import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import {
  cmykToRgbPillow,
  decodeImage,
  gifFirstFrameFillColour,
  ImageDecodeError,
  ImageTooLargeError,
  readImageHeader,
} from '../../src/image/decode.js';
import { bombPng } from '../helpers/bombs.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { fixture } from '../helpers/fixtures.js';

const DIR = fixture('preprocess');

/** The named U8 tensors of a safetensors file (opened once, closed before returning). */
function readU8Tensors(path: string, names: readonly string[]): Map<string, { shape: readonly number[]; data: Uint8Array }> {
  const f = SafetensorsFile.open(path);
  try {
    const out = new Map<string, { shape: readonly number[]; data: Uint8Array }>();
    for (const name of names) {
      const { dtype, shape, data } = f.read(name);
      if (dtype !== 'U8' || !(data instanceof Uint8Array)) throw new Error(`${path}: tensor '${name}' is ${dtype}, expected U8`);
      out.set(name, { shape, data });
    }
    return out;
  } finally {
    f.close();
  }
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): { max: number; mean: number } {
  assert.equal(a.length, b.length, 'lengths differ');
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (d > max) max = d;
    sum += d;
  }
  return { max, mean: sum / a.length };
}

// ---------------------------------------------------------------- hand-made files

/**
 * A PNG written by hand (filter 0 on every row), so the stored samples are known exactly.
 * colorType: 0 grey, 2 RGB, 3 palette, 4 grey+alpha, 6 RGBA. `samples` are per-channel values
 * (0..255 or 0..65535 for depth 16).
 */
function makePng(opts: {
  width: number;
  height: number;
  colorType: 0 | 2 | 3 | 4 | 6;
  depth?: 8 | 16;
  samples: ArrayLike<number>;
  palette?: number[][];
  trns?: number[];
}): Buffer {
  const { width, height, colorType } = opts;
  const depth = opts.depth ?? 8;
  const ch = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 }[colorType];
  const bps = depth / 8;
  const rowBytes = width * ch * bps;
  const raw = Buffer.alloc((rowBytes + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (rowBytes + 1)] = 0;
    for (let i = 0; i < width * ch; i++) {
      const v = opts.samples[y * width * ch + i]!;
      const o = y * (rowBytes + 1) + 1 + i * bps;
      if (depth === 16) raw.writeUInt16BE(v, o);
      else raw[o] = v;
    }
  }
  const chunk = (type: string, data: Uint8Array): Buffer => {
    const len = Buffer.alloc(4);
    len.writeUInt32BE(data.length);
    const td = Buffer.concat([Buffer.from(type, 'latin1'), data]);
    const crc = Buffer.alloc(4);
    crc.writeUInt32BE(crc32(td));
    return Buffer.concat([len, td, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = depth;
  ihdr[9] = colorType;
  const parts = [Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr)];
  if (opts.palette) parts.push(chunk('PLTE', Buffer.from(opts.palette.flat())));
  if (opts.trns) parts.push(chunk('tRNS', Buffer.from(opts.trns)));
  parts.push(chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0)));
  return Buffer.concat(parts);
}

/**
 * A baseline JPEG written by hand: 8x8 pixels, one flat 8x8 block per component with quantiser 1,
 * so every component decodes to exactly the stored value. 4 components = CMYK (or YCCK).
 */
function makeFlatJpeg(values: number[], adobeTransform: number | null): Buffer {
  const parts: Buffer[] = [Buffer.from([0xff, 0xd8])];
  const seg = (marker: number, body: number[]): void => {
    const h = Buffer.alloc(4);
    h[0] = 0xff;
    h[1] = marker;
    h.writeUInt16BE(body.length + 2, 2);
    parts.push(h, Buffer.from(body));
  };
  if (adobeTransform !== null) seg(0xee, [...Buffer.from('Adobe'), 0, 100, 0, 0, 0, 0, adobeTransform]);
  seg(0xdb, [0x00, ...new Array<number>(64).fill(1)]);
  const n = values.length;
  seg(0xc0, [8, 0, 8, 0, 8, n, ...values.flatMap((_, i) => [i + 1, 0x11, 0])]);
  const dcBits = new Array<number>(16).fill(0);
  dcBits[3] = 12; // 12 DC categories, all 4-bit codes
  seg(0xc4, [0x00, ...dcBits, ...Array.from({ length: 12 }, (_, i) => i)]);
  const acBits = new Array<number>(16).fill(0);
  acBits[0] = 1; // EOB only, code "0"
  seg(0xc4, [0x10, ...acBits, 0x00]);
  seg(0xda, [n, ...values.flatMap((_, i) => [i + 1, 0x00]), 0, 63, 0]);
  let bits = '';
  for (const v of values) {
    const dc = 8 * (v - 128);
    const a = Math.abs(dc);
    const cat = a === 0 ? 0 : Math.floor(Math.log2(a)) + 1;
    bits += cat.toString(2).padStart(4, '0');
    if (cat) bits += (dc > 0 ? dc : dc + (1 << cat) - 1).toString(2).padStart(cat, '0');
    bits += '0';
  }
  while (bits.length % 8) bits += '1';
  const bytes: number[] = [];
  for (let i = 0; i < bits.length; i += 8) {
    const b = parseInt(bits.slice(i, i + 8), 2);
    bytes.push(b);
    if (b === 0xff) bytes.push(0);
  }
  parts.push(Buffer.from(bytes), Buffer.from([0xff, 0xd9]));
  return Buffer.concat(parts);
}

/**
 * A GIF written by hand: global palette, optional transparency index (GCE), 3-bit LZW codes with
 * a clear code before every pair of pixels (so the code width never grows).
 */
function makeGif(width: number, height: number, palette: number[][], indices: number[], transIndex: number | null): Buffer {
  const out: number[] = [...Buffer.from('GIF89a')];
  out.push(width & 255, width >> 8, height & 255, height >> 8, 0x80 | 0x01, 0, 0); // 4-entry GCT
  const pal = [...palette];
  while (pal.length < 4) pal.push([0, 0, 0]);
  for (const c of pal.slice(0, 4)) out.push(...c);
  if (transIndex !== null) out.push(0x21, 0xf9, 4, 0x01, 0, 0, transIndex, 0);
  out.push(0x2c, 0, 0, 0, 0, width & 255, width >> 8, height & 255, height >> 8, 0);
  out.push(2); // LZW minimum code size: clear = 4, end = 5, 3-bit codes
  const codes: number[] = [];
  for (let i = 0; i < indices.length; i += 2) {
    codes.push(4, indices[i]!);
    if (i + 1 < indices.length) codes.push(indices[i + 1]!);
  }
  codes.push(5);
  const data: number[] = [];
  let acc = 0;
  let nbits = 0;
  for (const c of codes) {
    acc |= c << nbits;
    nbits += 3;
    while (nbits >= 8) {
      data.push(acc & 255);
      acc >>= 8;
      nbits -= 8;
    }
  }
  if (nbits > 0) data.push(acc & 255);
  for (let i = 0; i < data.length; i += 255) {
    const chunk = data.slice(i, i + 255);
    out.push(chunk.length, ...chunk);
  }
  out.push(0, 0x3b);
  return Buffer.from(out);
}

/** Drop the JPEG APPn segments with the given marker byte (e.g. 0xe2 = ICC). */
function stripJpegSegments(b: Buffer, marker: number): Buffer {
  const out: Buffer[] = [b.subarray(0, 2)];
  let i = 2;
  while (i + 4 <= b.length && b[i] === 0xff) {
    const m = b[i + 1]!;
    if (m === 0xda) break;
    const len = b.readUInt16BE(i + 2);
    if (m !== marker) out.push(b.subarray(i, i + 2 + len));
    i += 2 + len;
  }
  out.push(b.subarray(i));
  return Buffer.concat(out);
}

/** Deterministic pseudo-random bytes. */
function noise(n: number, seed = 1): Uint8Array {
  const a = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    a[i] = s >>> 24;
  }
  return a;
}

/** A smooth colour test pattern (HWC RGB). */
function pattern(width: number, height: number): Uint8Array {
  const a = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 3;
      a[o] = Math.round((255 * x) / (width - 1));
      a[o + 1] = Math.round((255 * y) / (height - 1));
      a[o + 2] = (x * 7 + y * 13) & 255;
    }
  }
  return a;
}

// ---------------------------------------------------------------- tests

describe('decodeImage: parity with Pillow on the fixture JPEGs', () => {
  const ref = readU8Tensors(join(DIR, 'preprocess.safetensors'), ['decoded_photo_640x480_rgb', 'decoded_gray_333x251']);

  it('photo-640x480.jpg (RGB, 4:4:4) decodes exactly as Pillow', async () => {
    const img = await decodeImage(join(DIR, 'photo-640x480.jpg'));
    const r = ref.get('decoded_photo_640x480_rgb')!;
    assert.deepEqual(r.shape, [480, 640, 3]);
    assert.equal(img.width, 640);
    assert.equal(img.height, 480);
    const d = maxAbsDiff(img.data, r.data);
    console.log(`  photo-640x480.jpg decode vs Pillow: max ${d.max}, mean ${d.mean}`);
    assert.equal(d.max, 0);
  });

  it('gray-333x251.jpg (L) decodes exactly as Pillow and is replicated into R, G, B', async () => {
    const img = await decodeImage(join(DIR, 'gray-333x251.jpg'));
    const r = ref.get('decoded_gray_333x251')!;
    assert.deepEqual(r.shape, [251, 333]);
    assert.equal(img.width, 333);
    assert.equal(img.height, 251);
    let max = 0;
    for (let i = 0; i < r.data.length; i++) {
      for (let c = 0; c < 3; c++) max = Math.max(max, Math.abs(img.data[i * 3 + c]! - r.data[i]!));
    }
    console.log(`  gray-333x251.jpg decode vs Pillow: max ${max}`);
    assert.equal(max, 0);
  });

  it('RGBA fixtures: alpha dropped, not composited (clip.png transparent pixels are black)', async () => {
    const img = await decodeImage(join(DIR, 'clip.png'));
    assert.equal(img.width, 2162);
    assert.equal(img.height, 762);
    assert.equal(img.data.length, 2162 * 762 * 3);
    const { data } = await sharp(join(DIR, 'clip.png')).raw().toBuffer({ resolveWithObject: true });
    let transparent = 0;
    for (let i = 0; i < 2162 * 762; i++) {
      if (data[i * 4 + 3] === 0) {
        transparent++;
        assert.equal(img.data[i * 3]! + img.data[i * 3 + 1]! + img.data[i * 3 + 2]!, 0);
      }
    }
    assert.ok(transparent > 0);
  });
});

describe('decodeImage: formats and modes', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'setar-decode-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('PNG RGB and greyscale (L → R = G = B)', async () => {
    const w = 13;
    const h = 7;
    const rgb = noise(w * h * 3, 2);
    const p1 = join(tmp, 'rgb.png');
    await writeFile(p1, makePng({ width: w, height: h, colorType: 2, samples: rgb }));
    assert.deepEqual((await decodeImage(p1)).data, rgb);

    const grey = noise(w * h, 3);
    const p2 = join(tmp, 'grey.png');
    await writeFile(p2, makePng({ width: w, height: h, colorType: 0, samples: grey }));
    assert.equal((await sharp(p2).metadata()).channels, 1);
    const g = await decodeImage(p2);
    assert.equal(g.width, w);
    assert.equal(g.height, h);
    for (let i = 0; i < w * h; i++) {
      assert.equal(g.data[i * 3], grey[i]);
      assert.equal(g.data[i * 3 + 1], grey[i]);
      assert.equal(g.data[i * 3 + 2], grey[i]);
    }
  });

  it('PNG RGBA: alpha dropped, the RGB under alpha 0 is kept (no compositing)', async () => {
    const w = 8;
    const h = 5;
    const samples = noise(w * h * 4, 4);
    for (let i = 0; i < w * h; i++) {
      if (i % 3 === 0) {
        samples[i * 4] = 255; // magenta under fully transparent pixels
        samples[i * 4 + 1] = 0;
        samples[i * 4 + 2] = 255;
        samples[i * 4 + 3] = 0;
      }
    }
    const img = await decodeImage(makePng({ width: w, height: h, colorType: 6, samples }), { name: 'rgba.png' });
    for (let i = 0; i < w * h; i++) {
      for (let c = 0; c < 3; c++) assert.equal(img.data[i * 3 + c], samples[i * 4 + c], `pixel ${i} channel ${c}`);
    }
  });

  it('PNG grey + alpha (LA): grey replicated, alpha dropped', async () => {
    const w = 6;
    const h = 4;
    const samples = noise(w * h * 2, 5);
    const img = await decodeImage(makePng({ width: w, height: h, colorType: 4, samples }));
    for (let i = 0; i < w * h; i++) {
      for (let c = 0; c < 3; c++) assert.equal(img.data[i * 3 + c], samples[i * 2]);
    }
  });

  it('palette PNG (hand-made, with tRNS): every index becomes its palette colour', async () => {
    const palette = [
      [10, 20, 30],
      [200, 100, 50],
      [255, 0, 255],
      [0, 255, 0],
    ];
    const w = 7;
    const h = 3;
    const idx = Array.from({ length: w * h }, (_, i) => (i * 5) % 4);
    const buf = makePng({ width: w, height: h, colorType: 3, samples: idx, palette, trns: [255, 128, 0] });
    const img = await decodeImage(buf);
    for (let i = 0; i < w * h; i++) {
      assert.deepEqual(Array.from(img.data.subarray(i * 3, i * 3 + 3)), palette[idx[i]!]);
    }
  });

  it('palette PNG written by sharp (png({ palette: true }))', async () => {
    const w = 16;
    const h = 16;
    const colours = [
      [255, 0, 0],
      [0, 128, 255],
      [40, 40, 40],
      [250, 250, 10],
    ];
    const rgb = new Uint8Array(w * h * 3);
    for (let i = 0; i < w * h; i++) rgb.set(colours[(i >> 3) % 4]!, i * 3);
    const p = join(tmp, 'palette.png');
    await sharp(rgb, { raw: { width: w, height: h, channels: 3 } }).png({ palette: true, dither: 0 }).toFile(p);
    const meta = await sharp(p).metadata();
    assert.equal(meta.isPalette, true);
    const img = await decodeImage(p);
    const d = maxAbsDiff(img.data, rgb);
    assert.ok(d.max <= 2, `palette round trip max diff ${d.max}`);
  });

  it('16-bit PNG: the high byte of each sample (Pillow "RGB;16B"); 16-bit grey likewise', async () => {
    const w = 16;
    const h = 16;
    const s16 = Array.from({ length: w * h * 3 }, (_, i) => (i * 2731 + 129) & 0xffff);
    const img = await decodeImage(makePng({ width: w, height: h, colorType: 2, depth: 16, samples: s16 }));
    for (let i = 0; i < s16.length; i++) assert.equal(img.data[i], s16[i]! >> 8, `sample ${i}`);

    const g16 = Array.from({ length: w * h }, (_, i) => (i * 257 + 255) & 0xffff);
    const g = await decodeImage(makePng({ width: w, height: h, colorType: 0, depth: 16, samples: g16 }));
    for (let i = 0; i < g16.length; i++) {
      for (let c = 0; c < 3; c++) assert.equal(g.data[i * 3 + c], g16[i]! >> 8);
    }
  });

  it('WebP lossless round trip', async () => {
    const w = 21;
    const h = 11;
    const rgb = noise(w * h * 3, 6);
    const p = join(tmp, 'img.webp');
    await sharp(rgb, { raw: { width: w, height: h, channels: 3 } }).webp({ lossless: true }).toFile(p);
    const img = await decodeImage(p);
    assert.equal(img.width, w);
    assert.equal(img.height, h);
    assert.deepEqual(img.data, rgb);
  });

  it('animated GIF (2 frames): the first frame only', async () => {
    const w = 12;
    const h = 10;
    const frames = new Uint8Array(w * h * 2 * 3);
    for (let i = 0; i < w * h; i++) {
      frames.set(i % 2 ? [255, 0, 0] : [0, 0, 255], i * 3); // frame 0: red/blue
      frames.set([0, 255, 0], (w * h + i) * 3); // frame 1: green
    }
    const p = join(tmp, 'anim.gif');
    await sharp(frames, { raw: { width: w, height: h * 2, channels: 3, pageHeight: h } })
      .gif({ dither: 0 })
      .toFile(p);
    const meta = await sharp(p).metadata();
    assert.equal(meta.pages, 2);
    const img = await decodeImage(p);
    assert.equal(img.width, w);
    assert.equal(img.height, h);
    const d = maxAbsDiff(img.data, frames.subarray(0, w * h * 3));
    assert.ok(d.max <= 2, `first frame max diff ${d.max}`);
  });

  it('GIF with a transparency index: transparent pixels keep their palette colour (as Pillow)', async () => {
    const palette = [
      [10, 20, 30],
      [250, 0, 250],
      [0, 200, 100],
      [90, 90, 90],
    ];
    const w = 5;
    const h = 3;
    const idx = Array.from({ length: w * h }, (_, i) => (i * 3) % 4);
    const buf = makeGif(w, h, palette, idx, 1);
    assert.deepEqual(gifFirstFrameFillColour(buf), palette[1]);
    const img = await decodeImage(buf, { name: 'hand.gif' });
    assert.equal(img.width, w);
    assert.equal(img.height, h);
    for (let i = 0; i < w * h; i++) {
      assert.deepEqual(Array.from(img.data.subarray(i * 3, i * 3 + 3)), palette[idx[i]!], `pixel ${i}`);
    }
    // without transparency the same indices decode to the same colours
    const img2 = await decodeImage(makeGif(w, h, palette, idx, null));
    assert.deepEqual(img2.data, img.data);
  });

  it('CMYK JPEG (hand-made, known samples): Pillow CMYK;I + cmyk2rgb, with or without Adobe marker', async () => {
    const stored = [10, 100, 200, 250];
    // Pillow: CMYK;I → c = 255 - stored; then nk = 255 - k; out = nk - MULDIV255(c, nk)
    const cmyk = stored.map((v) => 255 - v);
    const nk = 255 - cmyk[3]!;
    const md = (a: number, b: number): number => {
      const t = a * b + 128;
      return ((t >> 8) + t) >> 8;
    };
    const expected = [0, 1, 2].map((c) => nk - md(cmyk[c]!, nk));
    assert.deepEqual(Array.from(cmykToRgbPillow(Uint8Array.from(cmyk))), expected);
    for (const adobe of [null, 0]) {
      const img = await decodeImage(makeFlatJpeg(stored, adobe), { name: `cmyk-adobe-${adobe}.jpg` });
      assert.equal(img.width, 8);
      assert.equal(img.height, 8);
      for (let i = 0; i < 64; i++) {
        assert.deepEqual(Array.from(img.data.subarray(i * 3, i * 3 + 3)), expected, `adobe=${adobe} pixel ${i}`);
      }
    }
  });

  it('CMYK JPEG written by sharp: cmyk2rgb of the raw CMYK, close to the source colours', async () => {
    const w = 48;
    const h = 32;
    const rgb = pattern(w, h);
    const p = join(tmp, 'cmyk.jpg');
    await sharp(rgb, { raw: { width: w, height: h, channels: 3 } })
      .toColourspace('cmyk')
      .jpeg({ quality: 95 })
      .toFile(p);
    assert.equal((await sharp(p).metadata()).space, 'cmyk');
    const img = await decodeImage(p);
    const raw = await sharp(p, { ignoreIcc: true }).pipelineColourspace('cmyk').toColourspace('cmyk').raw().toBuffer();
    assert.deepEqual(img.data, cmykToRgbPillow(raw));
    const d = maxAbsDiff(img.data, rgb);
    console.log(`  CMYK JPEG naive cmyk2rgb vs source RGB: max ${d.max}, mean ${d.mean.toFixed(2)} levels`);
    assert.ok(d.mean < 40, `mean diff ${d.mean}`); // naive conversion of ICC-separated CMYK: rough only
  });

  it('EXIF orientation is not applied', async () => {
    const w = 40;
    const h = 20;
    const rgb = pattern(w, h);
    const plain = await sharp(rgb, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
    const rotated = await sharp(rgb, { raw: { width: w, height: h, channels: 3 } })
      .jpeg({ quality: 90 })
      .withMetadata({ orientation: 6 })
      .toBuffer();
    assert.equal((await sharp(rotated).metadata()).orientation, 6);
    const a = await decodeImage(plain);
    const b = await decodeImage(rotated);
    assert.equal(b.width, w);
    assert.equal(b.height, h);
    assert.deepEqual(b.data, a.data);
  });

  it('embedded ICC profile is not applied', async () => {
    const w = 32;
    const h = 24;
    const rgb = pattern(w, h);
    const withP3 = await sharp(rgb, { raw: { width: w, height: h, channels: 3 } })
      .withIccProfile('p3')
      .jpeg({ quality: 95 })
      .toBuffer();
    assert.equal((await sharp(withP3).metadata()).hasProfile, true);
    const stripped = stripJpegSegments(withP3, 0xe2);
    assert.equal((await sharp(stripped).metadata()).hasProfile, false);
    const a = await decodeImage(withP3);
    const b = await decodeImage(stripped);
    assert.deepEqual(a.data, b.data);
    // and sharp's colour-managed default would have differed
    const managed = await sharp(withP3).raw().toBuffer();
    assert.ok(maxAbsDiff(managed, b.data).max > 0);
  });
});

describe('decodeImage: errors name the file', () => {
  let tmp: string;
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'setar-decode-err-'));
  });
  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

  it('missing file', async () => {
    const p = join(tmp, 'no-such-image.jpg');
    await assert.rejects(decodeImage(p), (err: unknown) => {
      assert.ok(err instanceof ImageDecodeError);
      assert.equal(err.file, p);
      assert.match(err.message, new RegExp(`${escape(p)}.*file not found`));
      return true;
    });
  });

  it('random bytes', async () => {
    const p = join(tmp, 'garbage.jpg');
    await writeFile(p, noise(1000, 7));
    await assert.rejects(decodeImage(p), (err: unknown) => {
      assert.ok(err instanceof ImageDecodeError);
      assert.equal(err.file, p);
      assert.match(err.message, new RegExp(`${escape(p)}.*unsupported image format`));
      return true;
    });
  });

  it('truncated JPEG', async () => {
    const full = await sharp(noise(64 * 64 * 3, 8), { raw: { width: 64, height: 64, channels: 3 } })
      .jpeg({ quality: 90 })
      .toBuffer();
    const p = join(tmp, 'truncated.jpg');
    await writeFile(p, full.subarray(0, full.length >> 1));
    await assert.rejects(decodeImage(p), (err: unknown) => {
      assert.ok(err instanceof ImageDecodeError);
      assert.match(err.message, new RegExp(`${escape(p)}.*(premature end|truncated)`, 'i'));
      return true;
    });
  });

  it('empty file and buffer input with a name', async () => {
    const p = join(tmp, 'empty.png');
    await writeFile(p, Buffer.alloc(0));
    await assert.rejects(decodeImage(p), new RegExp(`${escape(p)}.*empty`));
    await assert.rejects(decodeImage(Buffer.from('not an image'), { name: 'upload-42.png' }), (err: unknown) => {
      assert.ok(err instanceof ImageDecodeError);
      assert.equal(err.file, 'upload-42.png');
      assert.match(err.message, /upload-42\.png.*unsupported image format/);
      return true;
    });
  });
});

describe('the pixel limit: checked from the header, before decoding', () => {
  const bomb = bombPng(16000, 16000); // 256 MP in 31 KB

  it('readImageHeader gives the size without decoding and refuses more than maxPixels (default 40 MP)', async () => {
    assert.deepEqual(await readImageHeader(bombPng(300, 200)), { width: 300, height: 200, format: 'png' });
    await assert.rejects(readImageHeader(bomb, { name: 'bomb.png' }), (err: unknown) => {
      assert.ok(err instanceof ImageTooLargeError && err instanceof ImageDecodeError);
      assert.deepEqual([err.width, err.height, err.limit, err.file], [16000, 16000, 40_000_000, 'bomb.png']);
      assert.equal(err.message, 'cannot decode image bomb.png: 16000 x 16000 = 256000000 pixels exceeds the limit of 40000000 pixels (--max-pixels)');
      return true;
    });
    await assert.rejects(readImageHeader(Buffer.from('not an image'), { name: 'x' }), /cannot decode image x: .*unsupported image format/);
    await assert.rejects(readImageHeader(bomb, { maxPixels: 0 }), /maxPixels must be a positive number of pixels \(or Infinity\), got 0/);
  });

  it('decodeImage applies it too (files and buffers); exactly the limit passes, one pixel more does not', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'setar-bomb-'));
    try {
      await writeFile(join(dir, 'bomb.png'), bomb);
      await assert.rejects(decodeImage(join(dir, 'bomb.png')), (err: unknown) => err instanceof ImageTooLargeError && err.file === join(dir, 'bomb.png'));
      const img = bombPng(100, 30);
      assert.equal((await decodeImage(img, { maxPixels: 3000 })).data.length, 3000 * 3);
      await assert.rejects(decodeImage(img, { maxPixels: 2999, name: 'u' }), /cannot decode image u: 100 x 30 = 3000 pixels exceeds the limit of 2999 pixels/);
      assert.equal((await decodeImage(img, { maxPixels: Infinity })).width, 100);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
