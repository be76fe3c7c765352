import type { DecodedImage } from '../image/decode.js';
import { pillowResize } from '../image/pillow-resample.js';
import { toNormalizedChw, CLIP_MEAN, CLIP_STD } from '../image/preprocess.js';

/** A seeded uniform [0, 1) generator. */
export type Rng = () => number;

/** The crop box [left, top, width, height] torchvision's `RandomResizedCrop.get_params` draws. */
export function randomResizedCropBox(width: number, height: number, rng: Rng, scale: readonly [number, number] = [0.9, 1], ratio: readonly [number, number] = [3 / 4, 4 / 3]): [number, number, number, number] {
  const area = width * height;
  const logRatio = [Math.log(ratio[0]), Math.log(ratio[1])];
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * (scale[0] + rng() * (scale[1] - scale[0]));
    const aspect = Math.exp(logRatio[0]! + rng() * (logRatio[1]! - logRatio[0]!));
    const w = Math.round(Math.sqrt(target * aspect));
    const h = Math.round(Math.sqrt(target / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = Math.floor(rng() * (height - h + 1));
      const left = Math.floor(rng() * (width - w + 1));
      return [left, top, w, h];
    }
  }
  // fallback: a centre crop at the clamped aspect ratio
  const inRatio = width / height;
  let w = width;
  let h = height;
  if (inRatio < ratio[0]) h = Math.round(w / ratio[0]);
  else if (inRatio > ratio[1]) w = Math.round(h * ratio[1]);
  return [Math.floor((width - w) / 2), Math.floor((height - h) / 2), w, h];
}

/**
 * SeTAR+FT's training transform (SPEC §1): random-resized-crop with scale (0.9, 1) resized to
 * `size` with Pillow's bicubic filter, a horizontal flip with probability 0.5, CLIP
 * normalisation → CHW float32 [3, size, size].
 */
export function trainTransform(image: DecodedImage, size: number, rng: Rng, options: { scale?: readonly [number, number]; mean?: readonly [number, number, number]; std?: readonly [number, number, number]; colorJitter?: number } = {}): Float32Array {
  const [left, top, w, h] = randomResizedCropBox(image.width, image.height, rng, options.scale ?? [0.9, 1]);
  const resized = pillowResize({ data: image.data, width: image.width, height: image.height, channels: 3 }, size, size, { box: [left, top, left + w, top + h] });
  const out: DecodedImage = { data: resized.data, width: size, height: size };
  if (rng() < 0.5) {
    const d = out.data;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size / 2; x++) {
        const a = (y * size + x) * 3;
        const b = (y * size + (size - 1 - x)) * 3;
        for (let c = 0; c < 3; c++) {
          const t = d[a + c]!;
          d[a + c] = d[b + c]!;
          d[b + c] = t;
        }
      }
    }
  }
  if (options.colorJitter) colorJitter(out.data, options.colorJitter, rng);
  return toNormalizedChw(out, options.mean ?? CLIP_MEAN, options.std ?? CLIP_STD);
}

const clip8 = (v: number) => (v < 0 ? 0 : v > 255 ? 255 : Math.round(v));

/**
 * torchvision's ColorJitter(brightness=j, contrast=j, saturation=j) on RGB uint8 in place: each
 * factor uniform in [1 − j, 1 + j], the three applied in a random order, each as PIL's
 * ImageEnhance blend (brightness towards black, contrast towards the mean grey level,
 * saturation towards the grey image; grey = ITU-R 601 luma as PIL's convert('L')).
 */
export function colorJitter(rgb: Uint8Array, j: number, rng: Rng): void {
  const factors = [0, 1, 2].map(() => 1 - j + rng() * 2 * j);
  const order = [0, 1, 2];
  for (let i = 2; i > 0; i--) {
    const k = Math.floor(rng() * (i + 1));
    [order[i], order[k]] = [order[k]!, order[i]!];
  }
  const luma = (i: number) => (rgb[i]! * 299 + rgb[i + 1]! * 587 + rgb[i + 2]! * 114) / 1000;
  for (const op of order) {
    const f = factors[op]!;
    if (op === 0) {
      for (let i = 0; i < rgb.length; i++) rgb[i] = clip8(rgb[i]! * f);
    } else if (op === 1) {
      let mean = 0;
      for (let i = 0; i < rgb.length; i += 3) mean += Math.round(luma(i));
      mean = Math.round(mean / (rgb.length / 3));
      for (let i = 0; i < rgb.length; i++) rgb[i] = clip8(mean + (rgb[i]! - mean) * f);
    } else {
      for (let i = 0; i < rgb.length; i += 3) {
        const g = Math.round(luma(i));
        for (let c = 0; c < 3; c++) rgb[i + c] = clip8(g + (rgb[i + c]! - g) * f);
      }
    }
  }
}
