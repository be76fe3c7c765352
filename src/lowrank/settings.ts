/**
 * SeTAR settings (SPEC §2): `[tower, weight, layer, ratio]`, as the reference writes them in
 * `lora_settings` of its configs (e.g. `["visual", "W_up", 11, 0.15]`; Swin: layer `[stage, block]`).
 *
 * @example
 * const settings = parseLoraSettings(JSON.parse(text), 'config_best.json');
 * clipWeightName(settings[0], { visual: 12, text: 12 }); // 'vision_model.encoder.layers.11.mlp.fc1.weight'
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
export type LoraSetting = readonly [
  tower: Tower,
  weight: WeightType,
  layer: number | readonly [stage: number, block: number] | null,
  ratio: number,
];

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

const show = (v: unknown): string => (v === undefined ? 'undefined' : JSON.stringify(v));
const isIndex = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 0;

/**
 * Reads settings from parsed JSON: an array of settings, or an object with a `lora_settings` key
 * (the reference's config files; `"lora_settings": null`, meaning "search instead", gives `[]`).
 * Every bad entry is reported with the source, its index, the bad value and the allowed values,
 * all in one {@link LoraSettingsError}.
 *
 * @param source names the input in messages, e.g. the file path.
 */
export function parseLoraSettings(json: unknown, source = 'lora settings'): LoraSetting[] {
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
  const settings: LoraSetting[] = [];
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
    let parsedLayer: LoraSetting[2] = null;
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

/** Hugging Face tensor prefix of each tower. */
const TOWER_MODEL: Record<Tower, string> = { visual: 'vision_model', text: 'text_model' };
/** Hugging Face module of each weight type inside an encoder layer. */
const LAYER_MODULE: Record<Exclude<WeightType, 'W_p'>, string> = {
  W_q: 'self_attn.q_proj',
  W_k: 'self_attn.k_proj',
  W_v: 'self_attn.v_proj',
  W_o: 'self_attn.out_proj',
  W_up: 'mlp.fc1',
  W_down: 'mlp.fc2',
};

/**
 * The CLIP (Hugging Face layout) tensor a setting modifies, e.g.
 * `['text', 'W_o', 3, 0.1]` → `text_model.encoder.layers.3.self_attn.out_proj.weight`,
 * `['visual', 'W_p', null, 0.1]` → `visual_projection.weight`.
 *
 * @param numLayers encoder depth, one number for both towers or per tower (ViT-L/14 has 24
 *   vision and 12 text layers).
 * @throws RangeError when the layer is outside [0, depth − 1]; TypeError for a Swin-style layer.
 */
export function clipWeightName(setting: LoraSetting, numLayers: number | { readonly visual: number; readonly text: number }): string {
  const [tower, weight, layer] = setting;
  if (!TOWERS.includes(tower)) throw new TypeError(`tower ${show(tower)} is not one of ${TOWERS.map(show).join(', ')}`);
  if (weight === 'W_p') return tower === 'visual' ? 'visual_projection.weight' : 'text_projection.weight';
  const module = LAYER_MODULE[weight];
  if (module === undefined) throw new TypeError(`weight ${show(weight)} is not one of ${WEIGHT_TYPES.map(show).join(', ')}`);
  const depth = typeof numLayers === 'number' ? numLayers : numLayers[tower];
  if (typeof layer !== 'number') {
    throw new TypeError(`layer ${show(layer)} of ${show(setting)} is not a CLIP layer index (an integer in [0, ${depth - 1}])`);
  }
  if (!Number.isInteger(layer) || layer < 0 || layer >= depth) {
    throw new RangeError(`layer ${layer} of ${show(setting)} is out of range: the ${tower} tower has ${depth} layers, allowed [0, ${depth - 1}]`);
  }
  return `${TOWER_MODEL[tower]}.encoder.layers.${layer}.${module}.weight`;
}

/** Hugging Face module of each weight type inside a Swin V2 block. */
const SWIN_MODULE: Record<Exclude<WeightType, 'W_p'>, string> = {
  W_q: 'attention.self.query',
  W_k: 'attention.self.key',
  W_v: 'attention.self.value',
  W_o: 'attention.output.dense',
  W_up: 'intermediate.dense',
  W_down: 'output.dense',
};

/**
 * The Swin V2 (Hugging Face layout) tensor a setting modifies, e.g.
 * `['visual', 'W_up', [3, 1], 0.1]` → `swinv2.encoder.layers.3.blocks.1.intermediate.dense.weight`.
 *
 * @param depths blocks per stage (config `depths`).
 * @throws TypeError for a text-tower, `W_p` or non-[stage, block] setting; RangeError when the stage or block is out of range.
 */
export function swinWeightName(setting: LoraSetting, depths: readonly number[]): string {
  const [tower, weight, layer] = setting;
  if (tower !== 'visual') throw new TypeError(`${show(setting)}: Swin V2 has only the "visual" tower, got ${show(tower)}`);
  if (weight === 'W_p') throw new TypeError(`${show(setting)}: Swin V2 has no projection (W_p); weights: ${WEIGHT_TYPES.filter((w) => w !== 'W_p').map(show).join(', ')}`);
  const module = SWIN_MODULE[weight];
  if (module === undefined) throw new TypeError(`weight ${show(weight)} is not one of ${WEIGHT_TYPES.map(show).join(', ')}`);
  if (!Array.isArray(layer) || layer.length !== 2) {
    throw new TypeError(`layer ${show(layer)} of ${show(setting)} is not a Swin [stage, block] index`);
  }
  const [stage, block] = layer as readonly [number, number];
  if (!Number.isInteger(stage) || stage < 0 || stage >= depths.length) {
    throw new RangeError(`stage ${stage} of ${show(setting)} is out of range: the model has ${depths.length} stages, allowed [0, ${depths.length - 1}]`);
  }
  const nb = depths[stage]!;
  if (!Number.isInteger(block) || block < 0 || block >= nb) {
    throw new RangeError(`block ${block} of ${show(setting)} is out of range: stage ${stage} has ${nb} blocks, allowed [0, ${nb - 1}]`);
  }
  return `swinv2.encoder.layers.${stage}.blocks.${block}.${module}.weight`;
}
