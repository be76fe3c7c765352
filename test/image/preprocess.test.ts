import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { decodeImage, type DecodedImage } from '../../src/image/decode.js';
import { BICUBIC, pillowResize, precomputeCoeffs, PRECISION_BITS } from '../../src/image/pillow-resample.js';
import {
  CLIP_MEAN,
  CLIP_STD,
  centerCrop,
  centerCropOffsets,
  loadAndPreprocess,
  preprocessClip,
  resizeAndCrop,
  resizedSize,
  resizeShorterSide,
  roundHalfEven,
  toNormalizedChw,
} from '../../src/image/preprocess.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { fixture } from '../helpers/fixtures.js';

const DIR = fixture('preprocess');

interface Row {
  index: number;
  file: string;
  source_size_wh: [number, number];
  resized_size_wh: [number, number];
  crop_left: number;
  crop_top: number;
}
interface Meta {
  size: number;
  mean: [number, number, number];
  std: [number, number, number];
  rows: Row[];
}

const meta = JSON.parse(readFileSync(join(DIR, 'preprocess.json'), 'utf8')) as Meta;
const [PV, RGB] = (() => {
  const f = SafetensorsFile.open(join(DIR, 'preprocess.safetensors'));
  try {
    const pv = f.entry('pixel_values');
    assert.equal(pv.dtype, 'F32');
    assert.deepEqual(pv.shape, [5, 3, 224, 224]);
    const rgb = f.read('rgb_uint8');
    assert.equal(rgb.dtype, 'U8');
    assert.deepEqual(rgb.shape, [5, 224, 224, 3]);
    return [f.readFloat32('pixel_values'), rgb.data as Uint8Array] as const; // U8 reads as Uint8Array
  } finally {
    f.close();
  }
})();
const PLANE = 3 * 224 * 224;

function diff(a: ArrayLike<number>, b: ArrayLike<number>): { max: number; mean: number; exact: number; off1: number } {
  assert.equal(a.length, b.length, 'lengths differ');
  let max = 0;
  let sum = 0;
  let exact = 0;
  let off1 = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (d > max) max = d;
    sum += d;
    if (d === 0) exact++;
    else if (d <= 1) off1++;
  }
  return { max, mean: sum / a.length, exact, off1 };
}

/** Deterministic noise image. */
function noiseImage(width: number, height: number, seed = 1): DecodedImage {
  const data = new Uint8Array(width * height * 3);
  let s = seed >>> 0;
  for (let i = 0; i < data.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s >>> 24;
  }
  return { data, width, height };
}

describe('geometry: torchvision Resize / CenterCrop arithmetic', () => {
  it('roundHalfEven is Python round()', () => {
    assert.equal(roundHalfEven(186.5), 186);
    assert.equal(roundHalfEven(36.5), 36);
    assert.equal(roundHalfEven(32.5), 32);
    assert.equal(roundHalfEven(205.5), 206);
    assert.equal(roundHalfEven(37), 37);
    assert.equal(roundHalfEven(0.5), 0);
    assert.equal(roundHalfEven(1.5), 2);
    assert.equal(roundHalfEven(2.4), 2);
    assert.equal(roundHalfEven(2.6), 3);
  });

  it('resized sizes and crop offsets match preprocess.json', () => {
    for (const row of meta.rows) {
      const [w, h] = row.source_size_wh;
      const [rw, rh] = resizedSize(w, h, 224);
      assert.deepEqual([rw, rh], row.resized_size_wh, row.file);
      assert.deepEqual(centerCropOffsets(rw, rh, 224), { left: row.crop_left, top: row.crop_top }, row.file);
    }
    // the README's examples
    assert.deepEqual(resizedSize(640, 480, 224), [298, 224]);
    assert.deepEqual(resizedSize(300, 800, 224), [224, 597]);
    assert.deepEqual(resizedSize(333, 251, 224), [297, 224]);
    assert.deepEqual(resizedSize(257, 199, 224), [289, 224]);
    assert.deepEqual(resizedSize(2162, 762, 224), [635, 224]);
    assert.deepEqual(resizedSize(500, 500, 224), [224, 224]);
  });

  it('fixed-point coefficients: 22 bits, each row sums to about 1 << 22', () => {
    assert.equal(PRECISION_BITS, 22);
    const c = precomputeCoeffs(640, 0, 640, 298, BICUBIC);
    assert.equal(c.ksize, Math.ceil(2 * (640 / 298)) * 2 + 1);
    for (let xx = 0; xx < c.outSize; xx++) {
      let s = 0;
      for (let x = 0; x < c.bounds[xx * 2 + 1]!; x++) s += c.kk[xx * c.ksize + x]!;
      assert.ok(Math.abs(s - (1 << 22)) <= c.ksize, `row ${xx} sums to ${s}`);
    }
  });
});

describe('preprocessClip: parity with Pillow 9.4 + torchvision 0.14 (fixtures/preprocess)', () => {
  for (const row of meta.rows) {
    it(`${row.file}: rgb_uint8 within 1 level, pixel_values mean |diff| <= 0.02`, async () => {
      const img = await decodeImage(join(DIR, row.file));
      assert.deepEqual([img.width, img.height], row.source_size_wh);
      const crop = resizeAndCrop(img, { size: 224 });
      assert.equal(crop.width, 224);
      assert.equal(crop.height, 224);
      const refRgb = RGB.subarray(row.index * PLANE, (row.index + 1) * PLANE);
      const d8 = diff(crop.data, refRgb);
      const x = preprocessClip(img);
      assert.equal(x.length, PLANE);
      const refPv = PV.subarray(row.index * PLANE, (row.index + 1) * PLANE);
      const dn = diff(x, refPv);
      console.log(
        `  ${row.file}: uint8 max ${d8.max} mean ${d8.mean.toFixed(6)} (exact ${d8.exact}, off-by-1 ${d8.off1}, ` +
          `of ${refRgb.length}); normalised max ${dn.max} mean ${dn.mean}`,
      );
      assert.ok(d8.max <= 1, `rgb_uint8 max diff ${d8.max}`);
      assert.ok(dn.mean <= 0.02, `pixel_values mean diff ${dn.mean}`);
    });
  }

  it('ToTensor + Normalize are bit-exact in float32 (from the reference rgb_uint8)', () => {
    assert.deepEqual(meta.mean, [...CLIP_MEAN]);
    assert.deepEqual(meta.std, [...CLIP_STD]);
    for (const row of meta.rows) {
      const img = { data: RGB.subarray(row.index * PLANE, (row.index + 1) * PLANE), width: 224, height: 224 };
      const x = toNormalizedChw(img);
      const ref = PV.subarray(row.index * PLANE, (row.index + 1) * PLANE);
      for (let i = 0; i < PLANE; i++) {
        if (x[i] !== ref[i]) assert.fail(`${row.file}: element ${i}: ${x[i]} != ${ref[i]}`);
      }
    }
  });

  it('loadAndPreprocess = decode + preprocessClip (file and buffer input)', async () => {
    const row = meta.rows[1]!;
    const p = join(DIR, row.file);
    const a = await loadAndPreprocess(p);
    const b = await loadAndPreprocess(readFileSync(p), { name: row.file });
    const c = preprocessClip(await decodeImage(p));
    assert.deepEqual(a, c);
    assert.deepEqual(b, c);
  });
});

describe('resampler behaviour', () => {
  it('computing only the crop region equals crop(full resize)', async () => {
    for (const row of meta.rows) {
      const img = await decodeImage(join(DIR, row.file));
      const full = resizeShorterSide(img, 224);
      assert.deepEqual([full.width, full.height], row.resized_size_wh);
      assert.deepEqual(centerCrop(full, 224).data, resizeAndCrop(img, { size: 224 }).data, row.file);
    }
    // one-pass cases: only the width changes / only the height changes
    for (const [w, h] of [
      [400, 224],
      [224, 301],
      [180, 224],
      [31, 77],
    ] as const) {
      const img = noiseImage(w, h, w * 1000 + h);
      const full = resizeShorterSide(img, 224);
      assert.deepEqual(centerCrop(full, 224).data, resizeAndCrop(img, { size: 224 }).data, `${w}x${h}`);
    }
  });

  it('an image already at the target size passes through unchanged', async () => {
    const raw = await sharp({
      create: { width: 224, height: 224, channels: 3, background: '#406080', noise: { type: 'gaussian', mean: 120, sigma: 50 } },
    })
      .raw()
      .toBuffer();
    const img: DecodedImage = { data: new Uint8Array(raw), width: 224, height: 224 };
    const out = resizeAndCrop(img, { size: 224 });
    assert.deepEqual(out.data, img.data);
    assert.notEqual(out.data, img.data, 'a copy, not the same buffer');
    assert.deepEqual(preprocessClip(img), toNormalizedChw(img));
    // short side already 224 (no vertical pass is needed, width unchanged too): crop only
    const wide = noiseImage(300, 224, 9);
    const crop = resizeAndCrop(wide, { size: 224 });
    const left = roundHalfEven((300 - 224) / 2);
    for (let y = 0; y < 224; y++) {
      const a = crop.data.subarray(y * 224 * 3, (y + 1) * 224 * 3);
      const b = wide.data.subarray((y * 300 + left) * 3, (y * 300 + left + 224) * 3);
      assert.deepEqual(a, b);
    }
  });

  it('constant images stay constant (coefficients sum to one), up- and downscaling', () => {
    for (const [w, h] of [
      [97, 61],
      [640, 480],
      [20, 500],
    ] as const) {
      const img: DecodedImage = { data: new Uint8Array(w * h * 3).fill(173), width: w, height: h };
      const out = resizeAndCrop(img, { size: 224 });
      assert.ok(out.data.every((v) => v === 173), `${w}x${h}`);
    }
  });

  it('generic channel count (1 and 4) filters every channel like the RGB path', () => {
    const img = noiseImage(123, 77, 5);
    const rgb = pillowResize({ ...img, channels: 3 }, 50, 31);
    for (let c = 0; c < 3; c++) {
      const plane = new Uint8Array(123 * 77);
      for (let i = 0; i < plane.length; i++) plane[i] = img.data[i * 3 + c]!;
      const one = pillowResize({ data: plane, width: 123, height: 77, channels: 1 }, 50, 31);
      for (let i = 0; i < 50 * 31; i++) assert.equal(one.data[i], rgb.data[i * 3 + c]);
    }
    const rgba = new Uint8Array(123 * 77 * 4);
    for (let i = 0; i < 123 * 77; i++) rgba.set([...img.data.subarray(i * 3, i * 3 + 3), 255], i * 4);
    const four = pillowResize({ data: rgba, width: 123, height: 77, channels: 4 }, 50, 31);
    for (let i = 0; i < 50 * 31; i++) {
      for (let c = 0; c < 3; c++) assert.equal(four.data[i * 4 + c], rgb.data[i * 3 + c]);
      assert.equal(four.data[i * 4 + 3], 255);
    }
  });
});

describe('options: sizes, mean/std, padding', () => {
  it('size 32 (tiny fixture model) and Swin-style resize 284 + crop 256 with other mean/std', () => {
    const img = noiseImage(333, 251, 3);
    const tiny = preprocessClip(img, { size: 32 });
    assert.equal(tiny.length, 3 * 32 * 32);
    const mean = [0.485, 0.456, 0.406] as const;
    const std = [0.229, 0.224, 0.225] as const;
    const swin = preprocessClip(img, { resizeTo: 284, cropSize: 256, mean, std });
    assert.equal(swin.length, 3 * 256 * 256);
    const crop = centerCrop(resizeShorterSide(img, 284), 256);
    assert.deepEqual(swin, toNormalizedChw(crop, mean, std));
    // spot check one value against the float32 formula
    const v = crop.data[0]!;
    const expect = Math.fround(Math.fround(Math.fround(v / 255) - Math.fround(mean[0])) / Math.fround(std[0]));
    assert.equal(swin[0], expect);
  });

  it('crop larger than the resized image: zero padding as torchvision (left/top floor(d/2))', () => {
    const img = noiseImage(300, 200, 4);
    const out = resizeAndCrop(img, { resizeTo: 200, cropSize: 224 });
    assert.equal(out.width, 224);
    assert.equal(out.height, 224);
    // resized 300x200 (unchanged); width 300 >= 224 → crop, height 200 < 224 → pad 12 top, 12 bottom
    const left = roundHalfEven((300 - 224) / 2);
    for (let x = 0; x < 224; x++) {
      for (let c = 0; c < 3; c++) {
        assert.equal(out.data[(0 * 224 + x) * 3 + c], 0);
        assert.equal(out.data[(11 * 224 + x) * 3 + c], 0);
        assert.equal(out.data[(12 * 224 + x) * 3 + c], img.data[(0 * 300 + left + x) * 3 + c]);
        assert.equal(out.data[(212 * 224 + x) * 3 + c], 0);
      }
    }
  });
});
