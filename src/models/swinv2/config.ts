import { checkKeyTypos, ConfigError, readConfigJson } from '../common/config.js';
import { HIDDEN_ACTS, type HiddenAct } from '../common/layers.js';

/** HF `Swinv2Config` keys setar uses, verbatim (image and patch sizes normalised to [height, width]). */
export interface SwinV2Config {
  model_type: 'swinv2';
  image_size: [number, number];
  patch_size: [number, number];
  num_channels: number;
  embed_dim: number;
  depths: number[];
  num_heads: number[];
  window_size: number;
  pretrained_window_sizes: number[];
  mlp_ratio: number;
  qkv_bias: boolean;
  hidden_act: HiddenAct;
  layer_norm_eps: number;
  id2label: Record<number, string>;
  label2id: Record<string, number>;
}

// transformers' Swinv2Config defaults (and PretrainedConfig's two labels).
const DEFAULTS = {
  image_size: 224, patch_size: 4, num_channels: 3, embed_dim: 96, depths: [2, 2, 6, 2], num_heads: [3, 6, 12, 24],
  window_size: 7, pretrained_window_sizes: [0, 0, 0, 0], mlp_ratio: 4.0, qkv_bias: true, hidden_act: 'gelu',
  layer_norm_eps: 1e-5,
} as const;

function posInt(v: unknown, file: string, key: string, allowZero = false): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < (allowZero ? 0 : 1)) {
    throw new ConfigError(`${file}: "${key}" must be a ${allowZero ? 'non-negative' : 'positive'} integer, got ${JSON.stringify(v)}`, file, key);
  }
  return v;
}

function pair(v: unknown, file: string, key: string): [number, number] {
  if (Array.isArray(v)) {
    if (v.length !== 2) throw new ConfigError(`${file}: "${key}" must be an integer or a pair of integers, got ${JSON.stringify(v)}`, file, key);
    return [posInt(v[0], file, key), posInt(v[1], file, key)];
  }
  const n = posInt(v, file, key);
  return [n, n];
}

function intList(v: unknown, file: string, key: string, allowZero = false): number[] {
  if (!Array.isArray(v) || v.length === 0) throw new ConfigError(`${file}: "${key}" must be a non-empty list of integers, got ${JSON.stringify(v)}`, file, key);
  return v.map((x) => posInt(x, file, key, allowZero));
}

/** Parses an HF `Swinv2Config` object, filling transformers' defaults for absent keys. */
export function parseSwinV2Config(json: unknown, file = 'config.json'): SwinV2Config {
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new ConfigError(`${file}: expected a JSON object`, file);
  const j = json as Record<string, unknown>;
  if (j.model_type !== undefined && j.model_type !== 'swinv2') {
    throw new ConfigError(`${file}: model_type is "${String(j.model_type)}", expected "swinv2"`, file, 'model_type');
  }
  checkKeyTypos(j, [...Object.keys(DEFAULTS), 'id2label', 'label2id', 'num_labels', 'model_type'], file, '');
  const get = (k: keyof typeof DEFAULTS): unknown => (j[k] === undefined || j[k] === null ? DEFAULTS[k] : j[k]);
  const image_size = pair(get('image_size'), file, 'image_size');
  const patch_size = pair(get('patch_size'), file, 'patch_size');
  const num_channels = posInt(get('num_channels'), file, 'num_channels');
  const embed_dim = posInt(get('embed_dim'), file, 'embed_dim');
  const depths = intList(get('depths'), file, 'depths');
  const num_heads = intList(get('num_heads'), file, 'num_heads');
  if (num_heads.length !== depths.length) {
    throw new ConfigError(`${file}: "num_heads" has ${num_heads.length} entries, "depths" has ${depths.length}`, file, 'num_heads');
  }
  num_heads.forEach((h, s) => {
    if ((embed_dim * 2 ** s) % h !== 0) throw new ConfigError(`${file}: "num_heads"[${s}] = ${h} does not divide the stage width ${embed_dim * 2 ** s}`, file, 'num_heads');
  });
  const window_size = posInt(get('window_size'), file, 'window_size');
  const pretrained_window_sizes = intList(get('pretrained_window_sizes'), file, 'pretrained_window_sizes', true);
  if (pretrained_window_sizes.length < depths.length) {
    throw new ConfigError(`${file}: "pretrained_window_sizes" has ${pretrained_window_sizes.length} entries, "depths" has ${depths.length}`, file, 'pretrained_window_sizes');
  }
  const mlp_ratio = get('mlp_ratio');
  if (typeof mlp_ratio !== 'number' || !(mlp_ratio > 0)) throw new ConfigError(`${file}: "mlp_ratio" must be a positive number, got ${JSON.stringify(mlp_ratio)}`, file, 'mlp_ratio');
  const qkv_bias = get('qkv_bias');
  if (typeof qkv_bias !== 'boolean') throw new ConfigError(`${file}: "qkv_bias" must be a boolean, got ${JSON.stringify(qkv_bias)}`, file, 'qkv_bias');
  const hidden_act = get('hidden_act');
  if (typeof hidden_act !== 'string' || !(HIDDEN_ACTS as readonly string[]).includes(hidden_act)) {
    throw new ConfigError(`${file}: "hidden_act" is ${JSON.stringify(hidden_act)}; supported: ${HIDDEN_ACTS.join(', ')}`, file, 'hidden_act');
  }
  const layer_norm_eps = get('layer_norm_eps');
  if (typeof layer_norm_eps !== 'number' || !(layer_norm_eps > 0)) {
    throw new ConfigError(`${file}: "layer_norm_eps" must be a positive number, got ${JSON.stringify(layer_norm_eps)}`, file, 'layer_norm_eps');
  }
  if (j.use_absolute_embeddings === true) {
    throw new ConfigError(`${file}: "use_absolute_embeddings" true is not supported`, file, 'use_absolute_embeddings');
  }
  let id2label: Record<number, string> = { 0: 'LABEL_0', 1: 'LABEL_1' };
  if (j.id2label !== undefined && j.id2label !== null) {
    if (typeof j.id2label !== 'object' || Array.isArray(j.id2label)) throw new ConfigError(`${file}: "id2label" must be an object`, file, 'id2label');
    id2label = {};
    for (const [k, v] of Object.entries(j.id2label as Record<string, unknown>)) {
      const i = Number(k);
      if (!Number.isInteger(i) || i < 0 || typeof v !== 'string') throw new ConfigError(`${file}: "id2label" entry ${JSON.stringify(k)}: ${JSON.stringify(v)} is not index → name`, file, 'id2label');
      id2label[i] = v;
    }
    const n = Object.keys(id2label).length;
    for (let i = 0; i < n; i++) if (id2label[i] === undefined) throw new ConfigError(`${file}: "id2label" lacks index ${i}`, file, 'id2label');
  } else if (typeof j.num_labels === 'number') {
    id2label = Object.fromEntries(Array.from({ length: posInt(j.num_labels, file, 'num_labels') }, (_, i) => [i, `LABEL_${i}`]));
  }
  let label2id: Record<string, number> = Object.fromEntries(Object.entries(id2label).map(([i, l]) => [l, Number(i)]));
  if (j.label2id !== undefined && j.label2id !== null) {
    if (typeof j.label2id !== 'object' || Array.isArray(j.label2id)) throw new ConfigError(`${file}: "label2id" must be an object`, file, 'label2id');
    label2id = {};
    for (const [k, v] of Object.entries(j.label2id as Record<string, unknown>)) label2id[k] = posInt(v, file, 'label2id', true);
  }
  return {
    model_type: 'swinv2', image_size, patch_size, num_channels, embed_dim, depths, num_heads, window_size,
    pretrained_window_sizes, mlp_ratio, qkv_bias, hidden_act: hidden_act as HiddenAct, layer_norm_eps, id2label, label2id,
  };
}

/** Reads `dir/config.json` as an HF `Swinv2Config`. */
export async function loadSwinV2Config(dir: string): Promise<SwinV2Config> {
  const { file, json } = await readConfigJson(dir);
  return parseSwinV2Config(json, file);
}

export function numLabels(c: SwinV2Config): number {
  return Object.keys(c.id2label).length;
}

/** Channel width of stage s. */
export function stageDim(c: SwinV2Config, s: number): number {
  return c.embed_dim * 2 ** s;
}

/** MLP width of stage s: int(mlp_ratio · dim). */
export function mlpDim(c: SwinV2Config, s: number): number {
  return Math.floor(c.mlp_ratio * stageDim(c, s));
}
