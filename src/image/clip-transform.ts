/**
 * CLIP evaluation preprocessing as SeTAR runs it (torchvision 0.14 on Pillow 9.4):
 *
 *   Image.open(f).convert("RGB")                       → decodeImage
 *   Resize(resizeTo, BICUBIC)  (shorter side → resizeTo, longer side int(resizeTo*long/short))
 *   CenterCrop(cropSize)       (offsets int(round((size - crop) / 2)), Python round: half to even)
 *   ToTensor()                 (uint8 / 255 in float32, HWC → CHW)
 *   Normalize(mean, std)       ((x - mean) / std in float32)
 *
 * The resize is an exact port of Pillow's fixed-point bicubic (see pillow-resample.ts), and only
 * the pixels inside the crop are computed. ToTensor/Normalize are evaluated in float32 exactly as
 * torch does (each step rounded to float32), through a 256-entry table per channel.
 *
 * Pure (no sharp, no node:*): this module is also bundled for the browser by esbuild
 * (src/web/client.ts); decoding lives in decode.ts and preprocess.ts re-exports everything here.
 */
import type { DecodedImage } from './decode.js';
import { BICUBIC, cropRaw, pillowResize, type RawImage, type ResampleFilter } from './pillow-resample.js';

export type { DecodedImage } from './decode.js';

/** OpenAI CLIP's normalisation constants. */
export const CLIP_MEAN: readonly [number, number, number] = [0.48145466, 0.4578275, 0.40821073];
export const CLIP_STD: readonly [number, number, number] = [0.26862954, 0.26130258, 0.27577711];
/** ImageNet's normalisation constants (timm, torchvision; Swin V2). */
export const IMAGENET_MEAN: readonly [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: readonly [number, number, number] = [0.229, 0.224, 0.225];

export interface PreprocessOptions {
  /** Default for both resizeTo and cropSize (224). */
  size?: number;
  /** Shorter side after the resize (default `size`). */
  resizeTo?: number;
  /** Side of the square centre crop (default `size`). */
  cropSize?: number;
  mean?: readonly [number, number, number];
  std?: readonly [number, number, number];
  /** Resampling filter (default Pillow bicubic). */
  filter?: ResampleFilter;
}

/** Python's round() for the values used here: nearest integer, halves to even. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * torchvision `_compute_resized_output_size` for an int size: the shorter side becomes `size`,
 * the longer `int(size * long / short)` (truncated). Returns [width, height].
 */
export function resizedSize(width: number, height: number, size: number): [number, number] {
  if (width <= height) return [size, Math.trunc((size * height) / width)];
  return [Math.trunc((size * width) / height), size];
}

/** torchvision center_crop offsets: `int(round((dim - crop) / 2))` with half to even. */
export function centerCropOffsets(
  width: number,
  height: number,
  cropWidth: number,
  cropHeight: number = cropWidth,
): { left: number; top: number } {
  return {
    left: roundHalfEven((width - cropWidth) / 2),
    top: roundHalfEven((height - cropHeight) / 2),
  };
}

function asRaw(image: DecodedImage): RawImage {
  if (image.data.length !== image.width * image.height * 3) {
    throw new RangeError(
      `image data length ${image.data.length} != ${image.width}x${image.height}x3 (RGB expected)`,
    );
  }
  return { data: image.data, width: image.width, height: image.height, channels: 3 };
}

function fromRaw(r: RawImage): DecodedImage {
  return { data: r.data, width: r.width, height: r.height };
}

/** torchvision `Resize(size, BICUBIC)` on a PIL RGB image. */
export function resizeShorterSide(
  image: DecodedImage,
  size: number,
  filter: ResampleFilter = BICUBIC,
): DecodedImage {
  const [w, h] = resizedSize(image.width, image.height, size);
  return fromRaw(pillowResize(asRaw(image), w, h, { filter }));
}

/**
 * Zero padding as torchvision center_crop does when the crop is larger than the image:
 * left/top get floor(d/2), right/bottom the rest.
 */
function padForCrop(src: RawImage, cropW: number, cropH: number): RawImage {
  const padL = cropW > src.width ? Math.floor((cropW - src.width) / 2) : 0;
  const padT = cropH > src.height ? Math.floor((cropH - src.height) / 2) : 0;
  const padR = cropW > src.width ? Math.floor((cropW - src.width + 1) / 2) : 0;
  const padB = cropH > src.height ? Math.floor((cropH - src.height + 1) / 2) : 0;
  const w = src.width + padL + padR;
  const h = src.height + padT + padB;
  const ch = src.channels;
  const out = new Uint8Array(w * h * ch);
  for (let y = 0; y < src.height; y++) {
    const s = y * src.width * ch;
    out.set(src.data.subarray(s, s + src.width * ch), ((y + padT) * w + padL) * ch);
  }
  return { data: out, width: w, height: h, channels: ch };
}

/** torchvision `CenterCrop(cropSize)`: half-to-even offsets, zero padding if the image is smaller. */
export function centerCrop(image: DecodedImage, cropWidth: number, cropHeight: number = cropWidth): DecodedImage {
  let src = asRaw(image);
  if (cropWidth > src.width || cropHeight > src.height) {
    src = padForCrop(src, cropWidth, cropHeight);
    if (src.width === cropWidth && src.height === cropHeight) return fromRaw(src);
  }
  const { left, top } = centerCropOffsets(src.width, src.height, cropWidth, cropHeight);
  return fromRaw(cropRaw(src, left, top, cropWidth, cropHeight));
}

/**
 * Resize (shorter side → resizeTo) then centre crop (cropSize), as uint8 RGB. Only the cropped
 * pixels are resampled; they equal the same pixels of the full Pillow resize.
 */
export function resizeAndCrop(image: DecodedImage, options: PreprocessOptions = {}): DecodedImage {
  const size = options.size ?? 224;
  const resizeTo = options.resizeTo ?? size;
  const crop = options.cropSize ?? size;
  const filter = options.filter ?? BICUBIC;
  const [w, h] = resizedSize(image.width, image.height, resizeTo);
  if (crop > w || crop > h) {
    return centerCrop(resizeShorterSide(image, resizeTo, filter), crop);
  }
  const { left, top } = centerCropOffsets(w, h, crop, crop);
  const out = pillowResize(asRaw(image), w, h, {
    filter,
    region: { x0: left, y0: top, x1: left + crop, y1: top + crop },
  });
  return fromRaw(out);
}

const lutCache = new Map<string, Float32Array>();

/**
 * 3 x 256 table: for channel c and level v, float32(float32(float32(v / 255) - mean[c]) / std[c]),
 * each operation rounded to float32 as torch's ToTensor + Normalize do.
 */
export function normalizationTable(
  mean: readonly [number, number, number],
  std: readonly [number, number, number],
): Float32Array {
  const key = `${mean.join(',')}/${std.join(',')}`;
  let lut = lutCache.get(key);
  if (lut) return lut;
  lut = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    const m = Math.fround(mean[c]!);
    const s = Math.fround(std[c]!);
    for (let v = 0; v < 256; v++) {
      const x = Math.fround(v / 255);
      lut[c * 256 + v] = Math.fround(Math.fround(x - m) / s);
    }
  }
  if (lutCache.size > 16) lutCache.clear();
  lutCache.set(key, lut);
  return lut;
}

/** ToTensor + Normalize: HWC uint8 RGB → CHW float32. */
export function toNormalizedChw(
  image: DecodedImage,
  mean: readonly [number, number, number] = CLIP_MEAN,
  std: readonly [number, number, number] = CLIP_STD,
  out?: Float32Array,
): Float32Array {
  const { data, width, height } = image;
  const plane = width * height;
  if (data.length !== plane * 3) throw new RangeError(`image data length ${data.length} != ${width}x${height}x3`);
  const dst = out ?? new Float32Array(3 * plane);
  if (dst.length < 3 * plane) throw new RangeError(`output buffer too small: ${dst.length} < ${3 * plane}`);
  const lut = normalizationTable(mean, std);
  for (let i = 0, p = 0; i < plane; i++, p += 3) {
    dst[i] = lut[data[p]!]!;
    dst[plane + i] = lut[256 + data[p + 1]!]!;
    dst[2 * plane + i] = lut[512 + data[p + 2]!]!;
  }
  return dst;
}

/**
 * The whole CLIP evaluation transform on a decoded RGB image → CHW float32 [3, crop, crop].
 */
export function preprocessClip(image: DecodedImage, options: PreprocessOptions = {}): Float32Array {
  const cropped = resizeAndCrop(image, options);
  return toNormalizedChw(cropped, options.mean ?? CLIP_MEAN, options.std ?? CLIP_STD);
}
