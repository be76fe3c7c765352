import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A configuration problem — a model's config.json or a run's settings. The message names the
 * file (or flag) and key and what was expected; `file` and `key` say it to code.
 */
export class ConfigError extends Error {
  constructor(message: string, readonly file?: string, readonly key?: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

function parse(text: string, file: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`'${file}' is not valid JSON: ${(e as Error).message}`, file);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new ConfigError(`${file}: expected a JSON object`, file);
  return json as Record<string, unknown>;
}

/** `dir/config.json`, parsed; errors name the file. */
export async function readConfigJson(dir: string): Promise<{ file: string; json: Record<string, unknown> }> {
  const file = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read '${file}': ${(e as Error).message}`, file);
  }
  return { file, json: parse(text, file) };
}

/** {@link readConfigJson}, synchronously (the family registry sniffs `model_type` before anything loads). */
export function readConfigJsonSync(dir: string): { file: string; json: Record<string, unknown> } {
  const file = join(dir, 'config.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read '${file}': ${(e as Error).message}`, file);
  }
  return { file, json: parse(text, file) };
}

/** Levenshtein distance, for "did you mean" suggestions. */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0]!;
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = d[j]!;
      d[j] = Math.min(d[j]! + 1, d[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return d[b.length]!;
}

/** The candidate a key is most likely a typo of (at most 2 edits, and fewer than a third of its length), if any. */
export function closestKey(key: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const dist = editDistance(key, c);
    if (dist < bestD && dist <= 2 && dist < key.length / 3) {
      best = c;
      bestD = dist;
    }
  }
  return best;
}

/**
 * Keys of transformers' `PretrainedConfig` (generation, export and bookkeeping settings) that an
 * HF config.json may carry: never read by setar, never a typo.
 */
export const PRETRAINED_CONFIG_KEYS: ReadonlySet<string> = new Set([
  '_name_or_path', 'transformers_version', 'architectures', 'model_type', 'torch_dtype', 'return_dict', 'output_hidden_states',
  'output_attentions', 'torchscript', 'use_bfloat16', 'tf_legacy_loss', 'pruned_heads', 'tie_word_embeddings', 'chunk_size_feed_forward',
  'is_encoder_decoder', 'is_decoder', 'cross_attention_hidden_size', 'add_cross_attention', 'tie_encoder_decoder', 'max_length', 'min_length',
  'do_sample', 'early_stopping', 'num_beams', 'num_beam_groups', 'diversity_penalty', 'temperature', 'top_k', 'top_p', 'typical_p',
  'repetition_penalty', 'length_penalty', 'no_repeat_ngram_size', 'encoder_no_repeat_ngram_size', 'bad_words_ids', 'num_return_sequences',
  'output_scores', 'return_dict_in_generate', 'forced_bos_token_id', 'forced_eos_token_id', 'remove_invalid_values',
  'exponential_decay_length_penalty', 'suppress_tokens', 'begin_suppress_tokens', 'finetuning_task', 'id2label', 'label2id', 'num_labels',
  'tokenizer_class', 'prefix', 'sep_token_id', 'decoder_start_token_id', 'task_specific_params', 'problem_type', 'attention_dropout',
  'dropout', 'initializer_range', 'initializer_factor', 'hidden_dropout_prob', 'attention_probs_dropout_prob', 'drop_path_rate',
  'use_absolute_embeddings', 'encoder_stride', 'out_features', 'out_indices', 'stage_names', 'path_norm', 'hidden_size', 'num_layers',
]);

/**
 * A key of a config section that is not one setar reads but is a near miss of one (`num_hiden_layers`):
 * almost surely a typo that would silently leave the real key at its default, so it is an error
 * naming both. Unknown keys that are not near misses, and transformers' own keys, are allowed.
 */
export function checkKeyTypos(section: Record<string, unknown>, read: readonly string[], file: string, prefix: string): void {
  for (const k of Object.keys(section)) {
    if (read.includes(k) || PRETRAINED_CONFIG_KEYS.has(k)) continue;
    const near = closestKey(k, read);
    if (near !== undefined) {
      const where = prefix ? `${prefix}.` : '';
      throw new ConfigError(`${file}: "${where}${k}" is not a key setar reads; did you mean "${near}"? (without it, ${where}${near} takes transformers' default)`, file, `${where}${k}`);
    }
  }
}
