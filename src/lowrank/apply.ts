import type { ClipModel } from '../models/clip/model.js';
import { SwinV2Model } from '../models/swinv2/model.js';
import { lowRankApprox, type PruneMode } from './lowrank.js';
import { clipWeightName, swinWeightName, type LoraSetting } from './settings.js';
import { getSvd, type SvdCacheOptions } from './svd-cache.js';

/** Options of {@link applyLoraSettings}. */
export interface ApplyOptions extends Pick<SvdCacheOptions, 'cacheDir' | 'noCache'> {
  /** Which components a setting drops (SPEC §2); default 'small' (SeTAR). */
  readonly mode?: PruneMode;
  /** Seed of the 'random' mode. */
  readonly seed?: number;
}

/**
 * Replaces each weight named by a setting with its low-rank approximation (SPEC §2), always
 * starting from the checkpoint's weight, so applying settings twice does not compound. SVD
 * factors come from the on-disk cache. Ratio-0 settings restore the original weight.
 * Returns the HF names of the weights changed.
 *
 * @example
 * await applyLoraSettings(model, [['visual', 'W_up', 11, 0.15]]);
 */
export async function applyLoraSettings(model: ClipModel | SwinV2Model, settings: readonly LoraSetting[], options: ApplyOptions = {}): Promise<string[]> {
  let names: string[];
  if (model instanceof SwinV2Model) {
    const depths = model.config.depths;
    names = settings.map((s) => swinWeightName(s, depths));
  } else {
    const depth = { visual: model.visionLayerCount, text: model.textLayerCount };
    names = settings.map((s) => clipWeightName(s, depth));
  }
  const seen = new Map<string, number>();
  names.forEach((n, i) => {
    const j = seen.get(n);
    if (j !== undefined) throw new RangeError(`lora settings ${j} and ${i} both modify '${n}'; give each weight once`);
    seen.set(n, i);
  });
  const changed: string[] = [];
  for (let i = 0; i < settings.length; i++) {
    const name = names[i]!;
    const ratio = settings[i]![3];
    if (ratio === 0) {
      model.resetWeight(name);
      continue;
    }
    const weight = model.getOriginalWeight(name);
    const shape = model.weightShape(name) as [number, number];
    const factors = await getSvd(weight, shape, { cacheDir: options.cacheDir, noCache: options.noCache });
    model.setWeight(name, lowRankApprox({ weight, shape, ratio, mode: options.mode, seed: options.seed, factors, name }));
    changed.push(name);
  }
  return changed;
}
