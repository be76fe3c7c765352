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
 */
import { decodeImage, type DecodeOptions } from './decode.js';
import { preprocessClip, type PreprocessOptions } from './clip-transform.js';

// The pure transform lives in clip-transform.ts (sharp-free, so the browser client can bundle it).
export * from './clip-transform.js';

/** Decode a file (or buffer) as Pillow's open + convert("RGB"), then preprocessClip. */
export async function loadAndPreprocess(
  file: string | Uint8Array,
  options: PreprocessOptions & DecodeOptions = {},
): Promise<Float32Array> {
  const image = await decodeImage(file, { name: options.name, maxPixels: options.maxPixels });
  return preprocessClip(image, options);
}
