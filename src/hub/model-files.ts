import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { readWeightMap, WEIGHT_FILES } from '../io/tensor-source.js';

/** The weight file (or sharded index) setar would load, by transformers' preference. */
export type WeightFile = (typeof WEIGHT_FILES)[number];

/** Files fetched beside the config and the weights when the repo has them: tokenizer and preprocessing. */
export const SIDE_FILES = ['vocab.json', 'merges.txt', 'tokenizer.json', 'tokenizer_config.json', 'special_tokens_map.json', 'preprocessor_config.json'] as const;

/** The weights to fetch from a repo listing: `model.safetensors`, its index, `pytorch_model.bin`, its index — the first present. */
export function chooseWeights(files: ReadonlySet<string>): WeightFile | null {
  return WEIGHT_FILES.find((f) => files.has(f)) ?? null;
}

/** The shard files a sharded index lists, each once, in order. */
export function shardsOf(indexFile: string): string[] {
  return [...new Set(readWeightMap(indexFile).values())];
}

/**
 * What the model folder `dir` lacks to be loaded: `config.json`, and weights (for a sharded index,
 * every shard it lists). Empty when complete. Dangling links (a blob deleted from a hub cache) count as missing.
 */
export function missingModelFiles(dir: string): string[] {
  const missing: string[] = [];
  if (!existsSync(join(dir, 'config.json'))) missing.push('config.json');
  const weights = WEIGHT_FILES.find((f) => existsSync(join(dir, f)));
  if (!weights) missing.push(`model weights (${WEIGHT_FILES.join(' | ')})`);
  else if (weights.endsWith('.index.json')) {
    try {
      missing.push(...shardsOf(join(dir, weights)).filter((s) => !existsSync(join(dir, s))));
    } catch {
      missing.push(`a readable ${weights}`);
    }
  }
  return missing;
}
