import { IMAGENET_MEAN, IMAGENET_STD, type PreprocessOptions } from '../../image/clip-transform.js';
import type { SwinV2Config } from './config.js';

/** Swin V2 evaluation preprocessing (SPEC §1, timm's): shorter side → floor(size / 0.9) bicubic, centre crop, ImageNet mean/std. */
export function swinPreprocess(config: Pick<SwinV2Config, 'image_size'>): Required<Pick<PreprocessOptions, 'resizeTo' | 'cropSize' | 'mean' | 'std'>> {
  const size = config.image_size[0];
  if (config.image_size[1] !== size) throw new RangeError(`Swin V2 preprocessing needs a square image_size, got [${config.image_size.join(', ')}]`);
  return { resizeTo: Math.floor(size / 0.9), cropSize: size, mean: IMAGENET_MEAN, std: IMAGENET_STD };
}
