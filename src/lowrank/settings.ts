/**
 * SeTAR settings (SPEC §2): `[tower, weight, layer, ratio]`, as the reference writes them in
 * `lora_settings` of its configs (e.g. `["visual", "W_up", 11, 0.15]`; Swin: layer `[stage, block]`).
 *
 * @example
 * const settings = parseLoraSettings(JSON.parse(text), 'config_best.json');
 * model.weightName(settings[0]); // CLIP: 'vision_model.encoder.layers.11.mlp.fc1.weight'
 */

/** The tower a setting applies to. */
export type Tower = 'visual' | 'text';
/** Attention q/k/v/out projections, MLP fc1 (up) / fc2 (down), the tower's projection. */
export type WeightType = 'W_q' | 'W_k' | 'W_v' | 'W_o' | 'W_up' | 'W_down' | 'W_p';

export const TOWERS: readonly Tower[] = ['visual', 'text'];
export const WEIGHT_TYPES: readonly WeightType[] = ['W_q', 'W_k', 'W_v', 'W_o', 'W_up', 'W_down', 'W_p'];

/**
 * One setting. `layer` is the encoder layer (CLIP), `[stage, block]` (Swin), or — for `W_p` only,
 * which has no layer — `null` or whatever number the reference wrote there. `ratio` is the
 * fraction of the full rank to drop (or an integer rank >= 1), see `dropRank`.
 */
export type LowRankSetting = readonly [tower: Tower, weight: WeightType, layer: LayerId | null, ratio: number];

/** A layer as a setting names it: an encoder layer (CLIP) or `[stage, block]` (Swin V2). */
export type LayerId = number | readonly [stage: number, block: number];

/** One place a setting applies to: a setting without its ratio (`layer` null for W_p). */
export interface WeightSlot {
  readonly tower: Tower;
  readonly weight: WeightType;
  readonly layer: LayerId | null;
}

/**
 * What low-rank settings need of a model (every family's model provides it): the tensor a
 * setting names, and reading, replacing and restoring weights.
 */
export interface LowRankTarget {
  /** The HF tensor a setting modifies; throws naming the setting when it is not one of this model's. */
  weightName(setting: LowRankSetting): string;
  getOriginalWeight(name: string): Float32Array;
  weightShape(name: string): readonly number[];
  setWeight(name: string, value: Float32Array): void;
  resetWeight(name?: string): void;
}

/** Every problem found in a settings list, one line each. */
export class LoraSettingsError extends Error {
  constructor(
    readonly source: string,
    readonly problems: readonly string[],
  ) {
    super(problems.length === 1 ? `${source}: ${problems[0]}` : `${source}: ${problems.length} invalid lora settings:\n  ${problems.join('\n  ')}`);
    this.name = 'LoraSettingsError';
  }
}

export const show = (v: unknown): string => (v === undefined ? 'undefined' : JSON.stringify(v));
const isIndex = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/**
 * Reads settings from parsed JSON: an array of settings, or an object with a `lora_settings` key
 * (the reference's config files; `"lora_settings": null`, meaning "search instead", gives `[]`).
 * Every bad entry is reported with the source, its index, the bad value and the allowed values,
 * all in one {@link LoraSettingsError}.
 *
 * @param source names the input in messages, e.g. the file path.
 */
export function parseLoraSettings(json: unknown, source = 'lora settings'): LowRankSetting[] {
  let list: unknown = json;
  let where = '';
  if (json !== null && typeof json === 'object' && !Array.isArray(json)) {
    if (!('lora_settings' in json)) {
      throw new LoraSettingsError(source, [
        `expected an array of [tower, weight, layer, ratio] settings or an object with a 'lora_settings' key; ` +
          `got an object with keys ${show(Object.keys(json))}`,
      ]);
    }
    list = (json as { lora_settings: unknown }).lora_settings;
    where = 'lora_settings';
    if (list === null) return [];
  }
  if (!Array.isArray(list)) {
    throw new LoraSettingsError(source, [
      `expected ${where ? `'lora_settings' to be ` : ''}an array of [tower, weight, layer, ratio] settings, got ${show(list)}`,
    ]);
  }
  const problems: string[] = [];
  const settings: LowRankSetting[] = [];
  list.forEach((entry: unknown, i: number) => {
    const at = `${where}[${i}]`;
    if (!Array.isArray(entry) || entry.length !== 4) {
      problems.push(`${at}: expected [tower, weight, layer, ratio], got ${show(entry)}`);
      return;
    }
    const [tower, weight, layer, ratio] = entry as unknown[];
    const before = problems.length;
    if (!TOWERS.includes(tower as Tower)) {
      problems.push(`${at}: tower ${show(tower)} is not one of ${TOWERS.map(show).join(', ')}`);
    }
    if (!WEIGHT_TYPES.includes(weight as WeightType)) {
      problems.push(`${at}: weight ${show(weight)} is not one of ${WEIGHT_TYPES.map(show).join(', ')}`);
    }
    let parsedLayer: LowRankSetting[2] = null;
    if (weight === 'W_p') {
      if (layer !== null && !isIndex(layer)) {
        problems.push(`${at}: layer ${show(layer)} of W_p must be null (W_p has no layer) or an integer >= 0`);
      } else parsedLayer = layer;
    } else if (isIndex(layer)) {
      parsedLayer = layer;
    } else if (Array.isArray(layer) && layer.length === 2 && layer.every(isIndex)) {
      if (tower === 'text') problems.push(`${at}: layer ${show(layer)} is a Swin [stage, block] index, but the tower is "text"`);
      parsedLayer = [layer[0], layer[1]] as const;
    } else {
      problems.push(`${at}: layer ${show(layer)} must be an integer >= 0 (CLIP) or [stage, block] of integers >= 0 (Swin)`);
    }
    if (typeof ratio !== 'number' || !Number.isFinite(ratio) || ratio < 0 || (ratio >= 1 && !Number.isInteger(ratio))) {
      problems.push(`${at}: ratio ${show(ratio)} must be a number in [0, 1) or an integer rank >= 1`);
    }
    if (problems.length === before) settings.push([tower as Tower, weight as WeightType, parsedLayer, ratio as number]);
  });
  if (problems.length > 0) throw new LoraSettingsError(source, problems);
  return settings;
}

