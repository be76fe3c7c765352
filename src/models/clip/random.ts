import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSafetensors, type SafetensorsDtype, type TensorToWrite } from '../../io/safetensors.js';
import { parseClipConfig, type ClipConfig } from './config.js';
import { expectedClipTensors } from './weights.js';
import { mulberry32 } from '../../rng.js';

export { mulberry32 };

/** ViT-B/16's architecture (openai/clip-vit-base-patch16), as an HF config object. */
export const VIT_B16_CONFIG = {
  model_type: 'clip',
  projection_dim: 512,
  logit_scale_init_value: 2.6592,
  text_config: { hidden_size: 512, intermediate_size: 2048, num_attention_heads: 8, num_hidden_layers: 12, max_position_embeddings: 77, vocab_size: 49408 },
  vision_config: { hidden_size: 768, intermediate_size: 3072, num_attention_heads: 12, num_hidden_layers: 12, image_size: 224, patch_size: 16 },
} as const;


/**
 * Writes a random-weight CLIP checkpoint in HF layout (config.json + model.safetensors) for
 * tests and benchmarks: the architecture is real, the numbers mean nothing. LayerNorm weights
 * are 1, biases small, matrices uniform with std 1/√fan_in so activations stay at unit scale.
 */
export function writeRandomClip(dir: string, config: object, options: { seed?: number; dtype?: SafetensorsDtype } = {}): ClipConfig {
  const c = parseClipConfig(config);
  const dtype = options.dtype ?? 'F32';
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, t] of randomClipTensors(c, options.seed ?? 0)) tensors[name] = { dtype: name === 'logit_scale' ? 'F32' : dtype, shape: t.shape, data: t.data };
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(config, null, 2));
  writeSafetensors(join(dir, 'model.safetensors'), tensors);
  return c;
}

/**
 * Random CLIP weights by HF name: LayerNorm weights 1, biases ±0.02, every other tensor uniform
 * with std 1/√fan_in (activations stay at unit scale), logit_scale ln(100).
 */
export function randomClipTensors(c: ClipConfig, seed: number): Map<string, { shape: readonly number[]; data: Float32Array }> {
  const rand = mulberry32(seed);
  const out = new Map<string, { shape: readonly number[]; data: Float32Array }>();
  for (const [name, shape] of expectedClipTensors(c)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const data = new Float32Array(n);
    if (name === 'logit_scale') data[0] = Math.log(100);
    else if (/layer_?norm\d?\.weight$|layrnorm\.weight$/.test(name)) data.fill(1);
    else {
      const fanIn = shape.length >= 2 ? shape.slice(1).reduce((a, b) => a * b, 1) : 1;
      const scale = name.endsWith('.bias') ? 0.02 : Math.sqrt(3 / fanIn);
      for (let i = 0; i < n; i++) data[i] = (rand() * 2 - 1) * scale;
    }
    out.set(name, { shape, data });
  }
  return out;
}
