import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsError, FLOAT_DTYPES } from '../../io/safetensors.js';
import type { TensorSource as CheckpointSource } from '../../io/tensor-source.js';
import { shapeString } from '../../tensor.js';
import { show, TOWERS, WEIGHT_TYPES, type LowRankSetting, type WeightType } from '../../lowrank/settings.js';
import type { ClipConfig } from './config.js';
import type { LayerNormWeights, LinearShape } from '../common/layers.js';
import type { EncoderLayerWeights, LayerRun, TextEmbeddingsWeights, TextHeadWeights, VisionEmbeddingsWeights, VisionHeadWeights } from './graph.js';

/** The two towers, by the prefix of their HF tensor names. */
export type Tower = 'vision' | 'text';
export const TOWER_PREFIX: Record<Tower, string> = { vision: 'vision_model', text: 'text_model' };

/** HF name of a tensor of encoder layer `layer`, e.g. `vision_model.encoder.layers.11.mlp.fc1.weight`. */
export function layerTensorName(tower: Tower, layer: number, rest: string): string {
  return `${TOWER_PREFIX[tower]}.encoder.layers.${layer}.${rest}`;
}

/**
 * Buffers older transformers saved with the weights (`text_model.embeddings.position_ids`,
 * `vision_model.embeddings.position_ids`, int64): recomputed, never read.
 */
export function isIgnoredBuffer(name: string): boolean {
  return /^(text|vision)_model\.embeddings\.position_ids$/.test(name);
}

/** Every tensor a CLIPModel checkpoint must hold, with its expected shape (HF names and layouts). */
export function expectedClipTensors(c: ClipConfig): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const v = c.vision_config;
  const t = c.text_config;
  const grid = v.image_size / v.patch_size;
  const p = c.projection_dim;
  m.set('vision_model.embeddings.class_embedding', [v.hidden_size]);
  m.set('vision_model.embeddings.patch_embedding.weight', [v.hidden_size, v.num_channels, v.patch_size, v.patch_size]);
  m.set('vision_model.embeddings.position_embedding.weight', [grid * grid + 1, v.hidden_size]);
  for (const ln of ['vision_model.pre_layrnorm', 'vision_model.post_layernorm']) {
    m.set(`${ln}.weight`, [v.hidden_size]);
    m.set(`${ln}.bias`, [v.hidden_size]);
  }
  m.set('visual_projection.weight', [p, v.hidden_size]);
  m.set('text_model.embeddings.token_embedding.weight', [t.vocab_size, t.hidden_size]);
  m.set('text_model.embeddings.position_embedding.weight', [t.max_position_embeddings, t.hidden_size]);
  m.set('text_model.final_layer_norm.weight', [t.hidden_size]);
  m.set('text_model.final_layer_norm.bias', [t.hidden_size]);
  m.set('text_projection.weight', [p, t.hidden_size]);
  m.set('logit_scale', []);
  for (const [tower, tc] of [['vision', v], ['text', t]] as const) {
    const d = tc.hidden_size;
    const f = tc.intermediate_size;
    for (let i = 0; i < tc.num_hidden_layers; i++) {
      const n = (rest: string, shape: number[]) => m.set(layerTensorName(tower, i, rest), shape);
      for (const x of ['q_proj', 'k_proj', 'v_proj', 'out_proj']) {
        n(`self_attn.${x}.weight`, [d, d]);
        n(`self_attn.${x}.bias`, [d]);
      }
      for (const ln of ['layer_norm1', 'layer_norm2']) {
        n(`${ln}.weight`, [d]);
        n(`${ln}.bias`, [d]);
      }
      n('mlp.fc1.weight', [f, d]);
      n('mlp.fc1.bias', [f]);
      n('mlp.fc2.weight', [d, f]);
      n('mlp.fc2.bias', [d]);
    }
  }
  return m;
}

/**
 * Checks, from the safetensors headers alone, that every expected tensor is present with the
 * right shape and a float dtype; every problem is listed in one error.
 */
export function validateClipCheckpoint(cp: CheckpointSource, c: ClipConfig): void {
  const problems: string[] = [];
  for (const [name, shape] of expectedClipTensors(c)) {
    if (!cp.has(name)) {
      problems.push(`missing tensor '${name}' (expected shape ${shapeString(shape)})`);
      continue;
    }
    const e = cp.entry(name);
    // A 0-d logit_scale is also stored as [1] by some exporters.
    const ok = e.shape.length === shape.length && e.shape.every((d, i) => d === shape[i]);
    if (!ok && !(name === 'logit_scale' && e.shape.length === 1 && e.shape[0] === 1)) {
      problems.push(`tensor '${name}' has shape ${shapeString(e.shape)}, expected ${shapeString(shape)}`);
    }
    if (!FLOAT_DTYPES.includes(e.dtype)) {
      problems.push(`tensor '${name}' has dtype ${e.dtype}, expected one of ${FLOAT_DTYPES.join(', ')}`);
    }
  }
  if (problems.length) {
    const why = explainShapes(cp, c);
    throw new SafetensorsError(`checkpoint '${cp.dir}' does not match its config.json${why}:\n  ${problems.join('\n  ')}`, cp.dir);
  }
}

/**
 * Which config values the expected tensors came from, where the checkpoint disagrees: a tower's
 * layer count, said with whether config.json sets it or transformers' default filled it in
 * (a missing or misspelt key is the usual reason for a wall of missing tensors).
 */
function explainShapes(cp: CheckpointSource, c: ClipConfig): string {
  let json: Record<string, unknown> = {};
  try {
    json = JSON.parse(readFileSync(join(cp.dir, 'config.json'), 'utf8')) as Record<string, unknown>;
  } catch {
    // the config was read before; without it the explanation only lacks "default" notes
  }
  const lines: string[] = [];
  for (const [tower, section] of [['vision', 'vision_config'], ['text', 'text_config']] as const) {
    const given = { ...(json[section] as object | undefined), ...(json[`${section}_dict`] as object | undefined) } as Record<string, unknown>;
    const source = (k: string) => (k in given ? 'set in config.json' : "transformers' default: config.json does not set it");
    const prefix = `${TOWER_PREFIX[tower]}.encoder.layers.`;
    const indices = cp.names().filter((n) => n.startsWith(prefix)).map((n) => Number(n.slice(prefix.length).split('.')[0]));
    const present = indices.length ? Math.max(...indices) + 1 : 0;
    const tc = tower === 'vision' ? c.vision_config : c.text_config;
    if (present !== tc.num_hidden_layers) {
      lines.push(`  ${section}.num_hidden_layers is ${tc.num_hidden_layers} (${source('num_hidden_layers')}), but the checkpoint has ${present} ${tower} layers`);
    }
    const w = cp.has(`${prefix}0.mlp.fc1.weight`) ? cp.entry(`${prefix}0.mlp.fc1.weight`).shape : null;
    if (w && (w[0] !== tc.intermediate_size || w[1] !== tc.hidden_size)) {
      lines.push(`  ${section}.hidden_size ${tc.hidden_size} (${source('hidden_size')}) and intermediate_size ${tc.intermediate_size} (${source('intermediate_size')}) expect fc1 [${tc.intermediate_size}, ${tc.hidden_size}], the checkpoint's is [${w.join(', ')}]`);
    }
  }
  return lines.length ? `. The expected tensors follow these config values:\n${lines.join('\n')}\nProblems` : '';
}

/** Reads float32 tensors by HF name (checkpoint values, or overrides set by the caller). */
export type TensorSource = (name: string) => Float32Array;

function linearW(src: TensorSource, prefix: string, out: number, inn: number, bias = true): LinearShape {
  return { bias: bias ? src(`${prefix}.bias`) : undefined, out, in: inn };
}
function lnW(src: TensorSource, prefix: string): LayerNormWeights {
  return { weight: src(`${prefix}.weight`), bias: src(`${prefix}.bias`) };
}

/** One encoder layer's weights. */
export function encoderLayerWeights(src: TensorSource, c: ClipConfig, tower: Tower, layer: number): EncoderLayerWeights {
  const tc = tower === 'vision' ? c.vision_config : c.text_config;
  const d = tc.hidden_size;
  const f = tc.intermediate_size;
  const p = (rest: string) => layerTensorName(tower, layer, rest);
  return {
    layer_norm1: lnW(src, p('layer_norm1')),
    q_proj: linearW(src, p('self_attn.q_proj'), d, d),
    k_proj: linearW(src, p('self_attn.k_proj'), d, d),
    v_proj: linearW(src, p('self_attn.v_proj'), d, d),
    out_proj: linearW(src, p('self_attn.out_proj'), d, d),
    layer_norm2: lnW(src, p('layer_norm2')),
    fc1: linearW(src, p('mlp.fc1'), f, d),
    fc2: linearW(src, p('mlp.fc2'), d, f),
  };
}

/** The weights and HF name prefixes of a tower's encoder layers [from, to), as the graph builders take them. */
export function layerRun(src: TensorSource, c: ClipConfig, tower: Tower, from: number, to: number): LayerRun {
  const layers = [];
  const prefixes = [];
  for (let i = from; i < to; i++) {
    layers.push(encoderLayerWeights(src, c, tower, i));
    prefixes.push(layerTensorName(tower, i, '').slice(0, -1));
  }
  return { layers, prefixes };
}

export function visionEmbeddingsWeights(src: TensorSource): VisionEmbeddingsWeights {
  return {
    class_embedding: src('vision_model.embeddings.class_embedding'),
    patch_embedding: src('vision_model.embeddings.patch_embedding.weight'),
    position_embedding: src('vision_model.embeddings.position_embedding.weight'),
    pre_layrnorm: lnW(src, 'vision_model.pre_layrnorm'),
  };
}

export function visionHeadWeights(src: TensorSource, c: ClipConfig): VisionHeadWeights {
  return {
    post_layernorm: lnW(src, 'vision_model.post_layernorm'),
    visual_projection: linearW(src, 'visual_projection', c.projection_dim, c.vision_config.hidden_size, false),
  };
}

export function textEmbeddingsWeights(src: TensorSource): TextEmbeddingsWeights {
  return {
    token_embedding: src('text_model.embeddings.token_embedding.weight'),
    position_embedding: src('text_model.embeddings.position_embedding.weight'),
  };
}

export function textHeadWeights(src: TensorSource, c: ClipConfig): TextHeadWeights {
  return {
    final_layer_norm: lnW(src, 'text_model.final_layer_norm'),
    text_projection: linearW(src, 'text_projection', c.projection_dim, c.text_config.hidden_size, false),
  };
}

/**
 * Which session a tensor belongs to: the tower's embeddings, one of its layers (the head lives in
 * the last layer's session), or none (`logit_scale`).
 */
export function sessionKeyOf(name: string, c: ClipConfig): string | null {
  const m = /^(vision|text)_model\.encoder\.layers\.(\d+)\./.exec(name);
  if (m) return `${m[1]}:${m[2]}`;
  if (name.startsWith('vision_model.embeddings.') || name.startsWith('vision_model.pre_layrnorm.')) return 'vision:embeddings';
  if (name.startsWith('text_model.embeddings.')) return 'text:embeddings';
  if (name.startsWith('vision_model.post_layernorm.') || name === 'visual_projection.weight') return `vision:${c.vision_config.num_hidden_layers - 1}`;
  if (name.startsWith('text_model.final_layer_norm.') || name === 'text_projection.weight') return `text:${c.text_config.num_hidden_layers - 1}`;
  return null;
}

/**
 * Weight matrices the graphs take as overridable inputs: the ones SeTAR and LoRA change
 * (SPEC §2: W_q, W_k, W_v, W_o, W_up, W_down, W_p). Replacing them needs no recompilation.
 */
export function isSwappable(name: string): boolean {
  return /\.(self_attn\.(q_proj|k_proj|v_proj|out_proj)|mlp\.(fc1|fc2))\.weight$/.test(name) || name === 'visual_projection.weight' || name === 'text_projection.weight';
}

/** Hugging Face tensor prefix of each tower. */
const TOWER_MODEL: Record<LowRankSetting[0], string> = { visual: 'vision_model', text: 'text_model' };
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
export function clipWeightName(setting: LowRankSetting, numLayers: number | { readonly visual: number; readonly text: number }): string {
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

/** HF prefixes of every Linear layer LoRA can adapt: each layer's attention projections and MLP, then the two projections. */
function clipLinearLayers(c: ClipConfig): string[] {
  const prefixes: string[] = [];
  for (const [tower, n] of [['vision', c.vision_config.num_hidden_layers], ['text', c.text_config.num_hidden_layers]] as const) {
    for (let i = 0; i < n; i++) {
      for (const m of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.out_proj', 'mlp.fc1', 'mlp.fc2']) prefixes.push(layerTensorName(tower, i, m));
    }
  }
  prefixes.push('visual_projection', 'text_projection');
  return prefixes;
}

/**
 * The Linear layers (HF prefixes) that PEFT's `target_modules` select: a prefix equal to a target
 * or ending with `.<target>`. Throws naming the targets that match nothing.
 */
export function matchClipTargetModules(c: ClipConfig, targets: readonly string[]): string[] {
  const prefixes = clipLinearLayers(c);
  const chosen = prefixes.filter((p) => targets.some((t) => p === t || p.endsWith(`.${t}`)));
  const unmatched = targets.filter((t) => !prefixes.some((p) => p === t || p.endsWith(`.${t}`)));
  if (unmatched.length) throw new RangeError(`target_modules ${unmatched.map((t) => `"${t}"`).join(', ')} match no layer of this CLIP model (e.g. "mlp.fc1", "self_attn.q_proj", "visual_projection")`);
  return chosen;
}
