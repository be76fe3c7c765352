import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError } from './clip/config.js';
import type { PreprocessOptions } from '../image/clip-transform.js';
import type { SwinV2Config } from './swinv2/config.js';

/** The model families setar runs, by `config.json`'s `model_type`. */
export type ModelFamily = 'clip' | 'swinv2';
export const MODEL_TYPES: readonly ModelFamily[] = ['clip', 'swinv2'];

/**
 * The family of the checkpoint in `dir`, from `config.json`'s `model_type` (absent: CLIP, as
 * older setar checkpoints). Throws a ConfigError listing the known types for any other value.
 */
export function modelFamily(dir: string): ModelFamily {
  const file = join(dir, 'config.json');
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new ConfigError(`cannot read '${file}': ${(e as Error).message}`, file);
  }
  const t = json && typeof json === 'object' ? (json as Record<string, unknown>).model_type : undefined;
  if (t === undefined) return 'clip';
  if (typeof t === 'string' && (MODEL_TYPES as readonly string[]).includes(t)) return t as ModelFamily;
  throw new ConfigError(`${file}: model_type ${JSON.stringify(t)} is not supported; known model types: ${MODEL_TYPES.map((m) => `"${m}"`).join(', ')}`, file, 'model_type');
}

export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/** Swin V2 evaluation preprocessing (SPEC §1, timm's): shorter side → floor(size / 0.9) bicubic, centre crop, ImageNet mean/std. */
export function swinPreprocess(config: Pick<SwinV2Config, 'image_size'>): Required<Pick<PreprocessOptions, 'resizeTo' | 'cropSize' | 'mean' | 'std'>> {
  const size = config.image_size[0];
  if (config.image_size[1] !== size) throw new RangeError(`Swin V2 preprocessing needs a square image_size, got [${config.image_size.join(', ')}]`);
  return { resizeTo: Math.floor(size / 0.9), cropSize: size, mean: IMAGENET_MEAN, std: IMAGENET_STD };
}
