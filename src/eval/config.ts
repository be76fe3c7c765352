import { checkUniqueNames, ConfigError, locoopLoadOptions, parseNamedDir, resolveClipCkpt, resolveIdSource, resolveLocoopCkpt, resolveModel, resolveOut, SettingsReader } from '../config/run-config.js';
import { benchmarkIdName } from '../data/datasets.js';
import type { IdSource } from '../data/datasets.js';
import { PRUNE_MODES, type PruneMode } from '../lowrank/lowrank.js';
import { parseLoraSettings, type LowRankSetting } from '../lowrank/settings.js';
import { SCORER_NAMES } from '../ood/scores.js';
import { resolveDeviceSetting, type DeviceSetting } from '../config/device.js';

/** Everything `setar eval` needs, resolved (paths absolute, defaults filled). */
export interface EvalConfig extends DeviceSetting {
  readonly model: string;
  /** A whole state dict loaded over the model's weights (official `clip_ckpt`), absolute; absent when none. */
  readonly clip_ckpt?: string;
  /** A LoCoOp context (official `locoop_ckpt`), absolute, and its n_ctx; absent for other models. */
  readonly locoop_ckpt?: string;
  readonly n_ctx?: number;
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
  readonly lora_settings: readonly LowRankSetting[] | null;
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
  'log_directory', 'model_name', 'model_type', 'lora_svd_init', 'lora_svd_init_type', 'lora_settings', 'device', 'clip_ckpt',
  'locoop_ckpt', 'n_ctx',
] as const;

/** Official keys that `setar eval` accepts and ignores (search, fine-tuning). */
export const IGNORED_KEYS = [
  'searcher', 'candi_ratios', 'weight_type', 'best_scorer', 'best_metric', 'locoop_lambda', 'locoop_top_k',
  'use_pred_label', 'freeze_proj', 'learning_rate', 'num_train_epochs', 'lr_scheduler_type', 'num_warmup_steps',
  'gradient_accumulation_steps', 'momentum', 'weight_decay', 'lora_r', 'lora_alpha', 'target_modules',
] as const;

/** Command-line overrides; each maps one-to-one to a flag of `setar eval`. */
export interface EvalFlags {
  model?: string;
  clipCkpt?: string;
  locoopCkpt?: string;
  nCtx?: number;
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
  loraSvdInitType?: string;
  batchSize?: number;
  seed?: number;
  template?: string;
  strict?: boolean;
  maxPixels?: number;
  out?: string;
  workers?: number;
  threads?: number;
  /** cpu | webgpu | cuda | auto (the config's `device` key otherwise; default cpu) */
  device?: string;
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
    throw new ConfigError(`${configFile}: unknown key(s) ${unknown.map((k) => `"${k}"`).join(', ')}; accepted: ${[...EVAL_KEYS].join(', ')} (ignored by eval: ${IGNORED_KEYS.join(', ')})`);
  }
  const locoop = resolveLocoopCkpt(j, flags, configFile);
  const { model, family } = resolveModel(j, flags.model, configFile, locoopLoadOptions(locoop));
  const device = resolveDeviceSetting(j, flags.device, configFile);
  const clip_ckpt = resolveClipCkpt(j, flags.clipCkpt);
  const id = resolveIdSource(j, flags);
  const ood = (flags.ood ?? []).map((o) => parseNamedDir(o, '--ood'));
  if (id.kind === 'folder' && ood.length === 0) throw new ConfigError('no OOD data: give --ood NAME=DIR at least once');
  checkUniqueNames([{ name: id.kind === 'folder' ? id.name : benchmarkIdName(id.benchmark), flag: id.kind === 'folder' ? `--id ${flags.id}` : `the benchmark ${id.benchmark}` }, ...ood.map((o, i) => ({ name: o.name, flag: `--ood ${flags.ood![i]}` }))]);

  const settings = new SettingsReader(j, configFile);
  const { value: given, from: scorersFrom } = settings.pick<unknown>(flags.scorers, 'scorers', ['mcm_score']);
  settings.check(Array.isArray(given) && given.length > 0 && given.every((s) => typeof s === 'string'), 'scorers', scorersFrom, 'a non-empty list of scorer names', given);
  // "loss" is the search objective of the official SeTAR configs, not a score: evaluating a
  // search's config_best.json then reports the paper's two scores.
  const withoutLoss = (given as string[]).filter((s) => s !== 'loss');
  const scorers = withoutLoss.length ? withoutLoss : ['mcm_score', 'gl_mcm_score'];
  const bad = scorers.filter((s) => !SCORER_NAMES.includes(s as never));
  if (bad.length) throw new ConfigError(`${settings.origin('scorers', scorersFrom === 'flag')}: unknown scorer(s) ${bad.map((b) => `"${b}"`).join(', ')}; valid scorers: ${SCORER_NAMES.join(', ')}`);

  // SPEC §3: CLIP logits already include exp(logit_scale), T = 100; classifier logits (Swin V2), T = 1.
  const temperature = settings.num(flags.temperature, 'temperature', family.defaults.temperature, (x) => x > 0, 'a positive number');
  const recall_level = settings.num(flags.recallLevel, 'recall_level', 0.95, (x) => x > 0 && x < 1, 'in (0, 1)');
  const batch_size = settings.num(flags.batchSize, 'batch_size', 32, (x) => Number.isInteger(x) && x > 0, 'a positive integer');
  const seed = settings.num(flags.seed, 'seed', 5, Number.isInteger, 'an integer');
  const { value: split, from: splitFrom } = settings.pick<unknown>(flags.split, 'split', 'test');
  settings.check(typeof split === 'string' && /^[\w.-]+$/.test(split), 'split', splitFrom, 'a split name such as "test"', split);
  const mode = settings.oneOf(flags.loraSvdInitType, 'lora_svd_init_type', 'small', PRUNE_MODES);
  let lora_settings: LowRankSetting[] | null = null;
  if (flags.loraSettings !== undefined) lora_settings = parseLoraSettings(flags.loraSettings, '--lora-settings');
  else if (j.lora_settings != null && j.lora_svd_init !== false) lora_settings = parseLoraSettings(j.lora_settings, `${configFile} "lora_settings"`);

  const out = resolveOut(j, flags.out, id, 'eval');
  return {
    model, ...(clip_ckpt ? { clip_ckpt } : {}), ...locoop, id, labels: flags.labels, ood, scorers, temperature, recall_level, split: split as string, batch_size, seed,
    lora_settings, lora_svd_init_type: mode, template: flags.template ?? family.defaults.template ?? 'a photo of a {}', strict: flags.strict ?? false,
    out, workers: flags.workers, threads: flags.threads, ...(flags.maxPixels !== undefined ? { max_pixels: flags.maxPixels } : {}), ...device,
  };
}
