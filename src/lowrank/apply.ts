import { lowRankApprox, type PruneMode } from './lowrank.js';
import type { LowRankSetting, LowRankTarget } from './settings.js';
import { getSvd, type SvdCacheOptions } from './svd-cache.js';

/** Options of {@link applyLoraSettings}. */
export interface ApplyOptions extends Pick<SvdCacheOptions, 'cacheDir' | 'noCache'> {
  /** Which components a setting drops (SPEC §2); default 'small' (SeTAR). */
  readonly mode?: PruneMode;
  /** Seed of the 'random' mode. */
  readonly seed?: number;
}

/**
 * Replaces each weight named by a setting (a `lora_settings` entry) with its low-rank
 * approximation (SPEC §2), always starting from the checkpoint's weight, so applying settings
 * twice does not compound. SVD factors come from the on-disk cache. Ratio-0 settings restore the
 * original weight. Works on any family's model: the model names the weight a setting means.
 * Returns the HF names of the weights changed.
 *
 * @example
 * await applyLoraSettings(model, [['visual', 'W_up', 11, 0.15]]);
 */
export async function applyLoraSettings(model: LowRankTarget, settings: readonly LowRankSetting[], options: ApplyOptions = {}): Promise<string[]> {
  const names = settings.map((s) => model.weightName(s));
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
