import { checkKeyTypos, ConfigError, readConfigJson } from '../common/config.js';
import { HIDDEN_ACTS, type HiddenAct } from '../common/layers.js';

/** HF `CLIPTextConfig` keys setar uses, verbatim. */
export interface ClipTextConfig {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  max_position_embeddings: number;
  hidden_act: HiddenAct;
  layer_norm_eps: number;
  bos_token_id: number;
  eos_token_id: number;
  pad_token_id: number;
}

/** HF `CLIPVisionConfig` keys setar uses, verbatim. */
export interface ClipVisionConfig {
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_channels: number;
  image_size: number;
  patch_size: number;
  hidden_act: HiddenAct;
  layer_norm_eps: number;
}

/** HF `CLIPConfig`: the two towers plus the shared projection width. */
export interface ClipConfig {
  model_type: 'clip';
  projection_dim: number;
  logit_scale_init_value: number;
  text_config: ClipTextConfig;
  vision_config: ClipVisionConfig;
}

// transformers' defaults for keys a config.json may omit (CLIPTextConfig / CLIPVisionConfig / CLIPConfig).
const TEXT_DEFAULTS: ClipTextConfig = {
  vocab_size: 49408, hidden_size: 512, intermediate_size: 2048, num_hidden_layers: 12, num_attention_heads: 8,
  max_position_embeddings: 77, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5,
  bos_token_id: 49406, eos_token_id: 49407, pad_token_id: 1,
};
const VISION_DEFAULTS: ClipVisionConfig = {
  hidden_size: 768, intermediate_size: 3072, num_hidden_layers: 12, num_attention_heads: 12, num_channels: 3,
  image_size: 224, patch_size: 32, hidden_act: 'quick_gelu', layer_norm_eps: 1e-5,
};

function merge<T extends object>(defaults: T, given: unknown, file: string, prefix: string): T {
  const out = { ...defaults } as Record<string, unknown>;
  if (given === undefined || given === null) return out as T;
  if (typeof given !== 'object') throw new ConfigError(`${file}: "${prefix}" must be an object`, file, prefix);
  checkKeyTypos(given as Record<string, unknown>, Object.keys(defaults), file, prefix);
  for (const [k, v] of Object.entries(given as Record<string, unknown>)) {
    if (!(k in defaults)) continue; // HF configs carry many keys (dropout, initializer ranges…) that inference ignores
    const want = typeof (defaults as Record<string, unknown>)[k];
    if (typeof v !== want) {
      throw new ConfigError(`${file}: "${prefix}.${k}" must be a ${want}, got ${JSON.stringify(v)}`, file, `${prefix}.${k}`);
    }
    out[k] = v;
  }
  return out as T;
}

function checkTower(c: ClipTextConfig | ClipVisionConfig, file: string, prefix: string): void {
  for (const k of ['hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads'] as const) {
    const v = c[k];
    if (!Number.isInteger(v) || v <= 0) throw new ConfigError(`${file}: "${prefix}.${k}" must be a positive integer, got ${v}`, file, `${prefix}.${k}`);
  }
  if (c.hidden_size % c.num_attention_heads !== 0) {
    throw new ConfigError(
      `${file}: "${prefix}.hidden_size" (${c.hidden_size}) must be divisible by num_attention_heads (${c.num_attention_heads})`, file, `${prefix}.hidden_size`);
  }
  if (!HIDDEN_ACTS.includes(c.hidden_act)) {
    throw new ConfigError(`${file}: "${prefix}.hidden_act" is "${c.hidden_act}"; supported: ${HIDDEN_ACTS.join(', ')}`, file, `${prefix}.hidden_act`);
  }
}

/** Options of {@link parseClipConfig}. */
export interface ParseClipConfigOptions {
  /** Receives the messages transformers logs (at info level) while resolving the config. */
  readonly log?: (message: string) => void;
}

/**
 * One tower's config as transformers' `CLIPConfig.__init__` resolves it. The legacy
 * `text_config_dict` / `vision_config_dict` of the original OpenAI hub configs win: the tower is
 * built from the dict alone (`CLIPTextConfig(**text_config_dict).to_dict()`, defaults filled),
 * and that complete result updates `text_config`, so a key the dict omits takes the default even
 * where `text_config` says otherwise. Each differing key is logged as transformers does.
 */
function resolveTower<T extends object>(
  j: Record<string, unknown>, tower: 'text' | 'vision', defaults: T, file: string, log: ((m: string) => void) | undefined,
): T {
  const key = `${tower}_config`;
  const dictKey = `${tower}_config_dict`;
  const cls = tower === 'text' ? 'CLIPTextConfig' : 'CLIPVisionConfig';
  const given = j[key];
  const dict = j[dictKey];
  if (dict === undefined || dict === null) {
    if (given === undefined || given === null) log?.(`\`${key}\` is \`None\`. Initializing the \`${cls}\` with default values.`);
    return merge(defaults, given, file, key);
  }
  const full = merge(defaults, dict, file, dictKey);
  if (given !== undefined && given !== null && typeof given !== 'object') throw new ConfigError(`${file}: "${key}" must be an object`, file, key);
  const old = (given ?? {}) as Record<string, unknown>;
  const fromDict = dict as Record<string, unknown>;
  for (const [k, v] of Object.entries(full)) {
    if (!(k in old) || old[k] === v) continue;
    log?.(k in fromDict
      ? `\`${k}\` is found in both \`${dictKey}\` and \`${key}\` but with different values. The value \`${dictKey}["${k}"]\` will be used instead.`
      : `\`${dictKey}\` is provided which will be used to initialize \`${cls}\`. The value \`${key}["${k}"]\` will be overridden.`);
  }
  return full;
}

/**
 * Parses an HF `CLIPConfig` object, filling transformers' defaults for absent keys and applying
 * the legacy `text_config_dict` / `vision_config_dict` with transformers' semantics.
 */
export function parseClipConfig(json: unknown, file = 'config.json', options: ParseClipConfigOptions = {}): ClipConfig {
  if (!json || typeof json !== 'object') throw new ConfigError(`${file}: expected a JSON object`, file);
  const j = json as Record<string, unknown>;
  if (j.model_type !== undefined && j.model_type !== 'clip') {
    throw new ConfigError(`${file}: model_type is "${String(j.model_type)}", expected "clip"`, file, 'model_type');
  }
  checkKeyTypos(j, ['text_config', 'vision_config', 'text_config_dict', 'vision_config_dict', 'projection_dim', 'logit_scale_init_value'], file, '');
  const text = resolveTower(j, 'text', TEXT_DEFAULTS, file, options.log);
  const vision = resolveTower(j, 'vision', VISION_DEFAULTS, file, options.log);
  checkTower(text, file, 'text_config');
  checkTower(vision, file, 'vision_config');
  if (vision.image_size % vision.patch_size !== 0) {
    throw new ConfigError(`${file}: vision_config.image_size ${vision.image_size} is not a multiple of patch_size ${vision.patch_size}`, file, 'vision_config.image_size');
  }
  const projection_dim = j.projection_dim === undefined ? 512 : j.projection_dim;
  if (!Number.isInteger(projection_dim) || (projection_dim as number) <= 0) {
    throw new ConfigError(`${file}: "projection_dim" must be a positive integer, got ${JSON.stringify(projection_dim)}`, file, 'projection_dim');
  }
  const lsi = typeof j.logit_scale_init_value === 'number' ? j.logit_scale_init_value : 2.6592;
  return { model_type: 'clip', projection_dim: projection_dim as number, logit_scale_init_value: lsi, text_config: text, vision_config: vision };
}

/** Reads `dir/config.json` as an HF `CLIPConfig`. */
export async function loadClipConfig(dir: string, options: ParseClipConfigOptions = {}): Promise<ClipConfig> {
  const { file, json } = await readConfigJson(dir);
  return parseClipConfig(json, file, options);
}

/** Patches per side of the vision grid (224 / 16 = 14 for ViT-B/16). */
export function gridSize(v: ClipVisionConfig): number {
  return v.image_size / v.patch_size;
}
