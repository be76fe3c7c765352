import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { PRUNE_MODES, type PruneMode } from '../lowrank/lowrank.js';
import { parseLoraSettings, type LoraSetting } from '../lowrank/settings.js';
import { SCORER_NAMES } from '../ood/scores.js';
import type { IdSource } from '../data/datasets.js';
import { modelFamily } from '../models/registry.js';

/** A configuration problem; the message names the key (or flag) and what was expected. */
export class EvalConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'EvalConfigError';
  }
}

export type { IdSource };

/** Everything `setar eval` needs, resolved (paths absolute, defaults filled). */
export interface EvalConfig {
  readonly model: string;
  readonly id: IdSource;
  /** Class names from a file (folder datasets); presets carry their own. */
  readonly labels?: readonly string[];
  /** OOD sets in output order; empty for a preset means the preset's list. */
  readonly ood: readonly { readonly name: string; readonly root: string }[];
  readonly scorers: readonly string[];
  readonly temperature: number;
  readonly recall_level: number;
  readonly split: string;
  readonly batch_size: number;
  readonly seed: number;
  readonly lora_settings: readonly LoraSetting[] | null;
  readonly lora_svd_init_type: PruneMode;
  readonly template: string;
  readonly strict: boolean;
  /** Largest image in pixels, checked from the header; larger ones are skipped (default 40 MP). */
  readonly max_pixels?: number;
  readonly out: string;
  readonly workers?: number;
  readonly threads?: number;
}

/**
 * Keys of the official configs that evaluation reads. The rest of the official keys belong to
 * the search or to fine-tuning and are accepted and ignored here (IGNORED_KEYS); anything else is
 * an error, so a typo never silently falls back to a default.
 */
export const EVAL_KEYS = [
  'data_root', 'id_dataset', 'split', 'batch_size', 'seed', 'scorers', 'temperature', 'recall_level', 'exp_name',
  'log_directory', 'model_name', 'model_type', 'lora_svd_init', 'lora_svd_init_type', 'lora_settings', 'device',
] as const;

/** Official keys that `setar eval` accepts and ignores (search, fine-tuning, the device). */
export const IGNORED_KEYS = [
  'device', 'searcher', 'candi_ratios', 'weight_type', 'best_scorer', 'best_metric', 'locoop_lambda', 'locoop_top_k',
  'use_pred_label', 'freeze_proj', 'learning_rate', 'num_train_epochs', 'lr_scheduler_type', 'num_warmup_steps',
  'gradient_accumulation_steps', 'momentum', 'weight_decay', 'lora_r', 'lora_alpha', 'target_modules',
] as const;

/** Command-line overrides; each maps one-to-one to a flag of `setar eval`. */
export interface EvalFlags {
  model?: string;
  id?: string;
  benchmark?: string;
  dataRoot?: string;
  labels?: readonly string[];
  ood?: readonly string[];
  scorers?: readonly string[];
  temperature?: number;
  recallLevel?: number;
  split?: string;
  loraSettings?: unknown;
  pruneMode?: string;
  batchSize?: number;
  seed?: number;
  template?: string;
  strict?: boolean;
  maxPixels?: number;
  out?: string;
  workers?: number;
  threads?: number;
}

/** Parses `NAME=DIR`. */
export function parseNamedDir(value: string, flag: string): { name: string; root: string } {
  const i = value.indexOf('=');
  if (i <= 0 || i === value.length - 1) throw new EvalConfigError(`${flag} expects NAME=DIR, got '${value}'`);
  return { name: value.slice(0, i), root: resolve(value.slice(i + 1)) };
}

function check<T>(cond: boolean, key: string, expected: string, got: unknown): asserts cond {
  if (!cond) throw new EvalConfigError(`config key "${key}" must be ${expected}, got ${JSON.stringify(got)}`);
}

/**
 * Resolves an evaluation from an official-style config (optional) and flags (which win).
 * `log_directory` may use the reference's `{args.id_dataset}` / `{args.exp_name}` placeholders.
 */
export function resolveEvalConfig(json: Record<string, unknown> | null, flags: EvalFlags, configFile = 'config'): EvalConfig {
  const j = json ?? {};
  const known = new Set<string>([...EVAL_KEYS, ...IGNORED_KEYS]);
  const unknown = Object.keys(j).filter((k) => !known.has(k));
  if (unknown.length) {
    throw new EvalConfigError(`${configFile}: unknown key(s) ${unknown.map((k) => `"${k}"`).join(', ')}; accepted: ${[...EVAL_KEYS].join(', ')} (ignored by eval: ${IGNORED_KEYS.join(', ')})`);
  }
  const model = resolveModel(j, flags.model, configFile);
  const id = resolveIdSource(j, flags);
  const ood = (flags.ood ?? []).map((o) => parseNamedDir(o, '--ood'));
  if (id.kind === 'folder' && ood.length === 0) throw new EvalConfigError('no OOD data: give --ood NAME=DIR at least once');

  const given = flags.scorers ?? (j.scorers as string[] | undefined) ?? ['mcm_score'];
  check(Array.isArray(given) && given.length > 0, 'scorers', 'a non-empty list of scorer names', given);
  // "loss" is the search objective of the official SeTAR configs, not a score: evaluating a
  // search's config_best.json then reports the paper's two scores.
  const withoutLoss = given.filter((s) => s !== 'loss');
  const scorers = withoutLoss.length ? withoutLoss : ['mcm_score', 'gl_mcm_score'];
  const bad = scorers.filter((s) => !SCORER_NAMES.includes(s as never));
  if (bad.length) throw new EvalConfigError(`unknown scorer(s) ${bad.map((b) => `"${b}"`).join(', ')}; valid scorers: ${SCORER_NAMES.join(', ')}`);

  const num = (flag: number | undefined, key: string, dflt: number, ok: (x: number) => boolean, expected: string) => {
    const v = flag ?? (j[key] as number | undefined) ?? dflt;
    check(typeof v === 'number' && ok(v), key, expected, v);
    return v;
  };
  // CLIP logits already include exp(logit_scale): T = 100; Swin V2 classifier logits: T = 1 (SPEC §3).
  const temperature = num(flags.temperature, 'temperature', defaultTemperature(model), (x) => x > 0, 'a positive number');
  const recall_level = num(flags.recallLevel, 'recall_level', 0.95, (x) => x > 0 && x < 1, 'in (0, 1)');
  const batch_size = num(flags.batchSize, 'batch_size', 32, (x) => Number.isInteger(x) && x > 0, 'a positive integer');
  const seed = num(flags.seed, 'seed', 5, Number.isInteger, 'an integer');
  const split = flags.split ?? (j.split as string | undefined) ?? 'test';
  check(typeof split === 'string' && /^[\w.-]+$/.test(split), 'split', 'a split name such as "test"', split);

  const mode = flags.pruneMode ?? (j.lora_svd_init_type as string | undefined) ?? 'small';
  check(PRUNE_MODES.includes(mode as PruneMode), 'lora_svd_init_type', `one of ${PRUNE_MODES.join(', ')}`, mode);
  let lora_settings: LoraSetting[] | null = null;
  if (flags.loraSettings !== undefined) lora_settings = parseLoraSettings(flags.loraSettings, '--lora-settings');
  else if (j.lora_settings != null && j.lora_svd_init !== false) lora_settings = parseLoraSettings(j.lora_settings, `${configFile} "lora_settings"`);

  const out = resolveOut(j, flags.out, id, 'eval');
  return {
    model, id, labels: flags.labels, ood, scorers, temperature, recall_level, split, batch_size, seed,
    lora_settings, lora_svd_init_type: mode as PruneMode, template: flags.template ?? 'a photo of a {}', strict: flags.strict ?? false,
    out, workers: flags.workers, threads: flags.threads, ...(flags.maxPixels !== undefined ? { max_pixels: flags.maxPixels } : {}),
  };
}

/**
 * The model folder: the flag, else the config's `model_name`, which must be a local folder —
 * setar never downloads weights, so a hub id gets an error saying to pass --model DIR.
 */
export function resolveModel(j: Record<string, unknown>, flag: string | undefined, configFile = 'config'): string {
  if (j.model_type !== undefined && j.model_type !== 'CLIP' && j.model_type !== 'SwinTransformerV2') {
    throw new EvalConfigError(`${configFile}: model_type "${String(j.model_type)}" is not supported yet; supported: "CLIP", "SwinTransformerV2"`);
  }
  const model = flag ?? (typeof j.model_name === 'string' ? j.model_name : undefined);
  if (!model) throw new EvalConfigError('no model: give --model DIR (or "model_name" in the config)');
  if (!existsSync(resolve(model))) {
    throw new EvalConfigError(`model "${model}" is not a local directory; download the checkpoint and pass --model DIR (setar never fetches weights)`);
  }
  return resolve(model);
}

/** The ID data: `--id NAME=DIR`, else a benchmark (`--benchmark`/`id_dataset`) under `--data-root`/`data_root`. */
export function resolveIdSource(j: Record<string, unknown>, flags: { id?: string; benchmark?: string; dataRoot?: string }): IdSource {
  if (flags.id) {
    const { name, root } = parseNamedDir(flags.id, '--id');
    return { kind: 'folder', name, root };
  }
  const benchmark = flags.benchmark ?? (j.id_dataset as string | undefined);
  const dataRoot = flags.dataRoot ?? (j.data_root as string | undefined);
  if (!benchmark) throw new EvalConfigError('no ID data: give --id NAME=DIR, or --benchmark NAME with --data-root DIR (or "id_dataset" and "data_root" in the config)');
  if (!dataRoot) throw new EvalConfigError(`benchmark ${benchmark} needs a data root: --data-root DIR (or "data_root" in the config)`);
  return { kind: 'benchmark', benchmark, dataRoot: resolve(dataRoot) };
}

/** The output folder: the flag, else `log_directory` with the reference's `{args.id_dataset}` / `{args.exp_name}` placeholders. */
export function resolveOut(j: Record<string, unknown>, flag: string | undefined, id: IdSource, defaultExp: string): string {
  let out = flag;
  if (!out && typeof j.log_directory === 'string') {
    const idName = id.kind === 'folder' ? id.name : id.benchmark;
    out = j.log_directory.replaceAll('{args.id_dataset}', String(j.id_dataset ?? idName)).replaceAll('{args.exp_name}', String(j.exp_name ?? defaultExp));
  }
  if (!out) throw new EvalConfigError('no output folder: give --out DIR (or "log_directory" in the config)');
  return resolve(out);
}

/** The default score temperature for the model in `dir`: 1 for Swin V2, 100 for CLIP (or an unreadable config). */
export function defaultTemperature(dir: string): number {
  try {
    return modelFamily(dir) === 'swinv2' ? 1 : 100;
  } catch {
    return 100;
  }
}
