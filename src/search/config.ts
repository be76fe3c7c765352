import { benchmarkOf, checkUniqueNames, fail, locoopLoadOptions, parseNamedDir, resolveClipCkpt, resolveIdSource, resolveLocoopCkpt, resolveModel, resolveOut, SettingsReader } from '../config/run-config.js';
import type { IdSource } from '../data/datasets.js';
import { PRUNE_MODES, type PruneMode } from '../lowrank/lowrank.js';
import { WEIGHT_TYPES, type WeightType } from '../lowrank/settings.js';
import { SCORER_NAMES } from '../ood/scores.js';
import { resolveDeviceSetting, type DeviceSetting } from '../config/device.js';
import type { Objective } from './objective.js';
import { SEARCHER_TABLE, searcherApplies } from './searchers.js';

/** Everything `setar search` needs, resolved. */
export interface SearchConfig extends DeviceSetting {
  readonly model: string;
  /** A whole state dict loaded over the model's weights (official `clip_ckpt`); absent when none. */
  readonly clip_ckpt?: string;
  /** A LoCoOp context (official `locoop_ckpt`) and its n_ctx; it stays fixed during the search. */
  readonly locoop_ckpt?: string;
  readonly n_ctx?: number;
  /** The model's family (its registry name), from the model folder's config.json. */
  readonly arch: string;
  readonly id: IdSource;
  readonly labels?: readonly string[];
  readonly split: string;
  readonly searcher: string;
  readonly candi_ratios: readonly number[];
  readonly weight_type: WeightType;
  readonly freeze_proj: boolean;
  readonly lora_svd_init_type: PruneMode;
  readonly seed: number;
  readonly objective: Objective;
  readonly locoop_lambda: number;
  /** K of the OOD-patch rule; null: the family's share of the classes, resolved when the data is listed. */
  readonly locoop_top_k: number | null;
  readonly use_pred_label: boolean;
  readonly temperature: number;
  readonly recall_level: number;
  readonly batch_size: number;
  /** false: every candidate recomputes both towers from the images, as the reference does. */
  readonly cache: boolean;
  readonly template: string;
  readonly out: string;
  /** Test data for the final `setar eval`, if any. */
  readonly test: { readonly id: IdSource; readonly ood: readonly { name: string; root: string }[] } | null;
  /** Scorers of the final evaluation. */
  readonly scorers: readonly string[];
  readonly strict: boolean;
  readonly workers?: number;
  readonly threads?: number;
  /** The official-style config this run corresponds to (written back, with lora_settings, as config_best.json). */
  readonly official: Record<string, unknown>;
}

/** Official keys `setar search` reads; fine-tuning keys are accepted and ignored. */
export const SEARCH_KEYS = [
  'data_root', 'id_dataset', 'split', 'batch_size', 'seed', 'device', 'scorers', 'temperature', 'exp_name', 'log_directory',
  'recall_level', 'model_name', 'model_type', 'lora_svd_init', 'lora_svd_init_type', 'lora_settings', 'searcher', 'candi_ratios',
  'weight_type', 'best_scorer', 'best_metric', 'locoop_lambda', 'locoop_top_k', 'use_pred_label', 'freeze_proj', 'clip_ckpt',
  'locoop_ckpt', 'n_ctx',
] as const;
const IGNORED = ['learning_rate', 'num_train_epochs', 'lr_scheduler_type', 'num_warmup_steps', 'gradient_accumulation_steps', 'momentum', 'weight_decay', 'lora_r', 'lora_alpha', 'target_modules'];

/** Flags of `setar search`, one per official key (dashes for underscores) plus setar's own. */
export interface SearchFlags {
  model?: string;
  clipCkpt?: string;
  locoopCkpt?: string;
  nCtx?: number;
  id?: string;
  benchmark?: string;
  dataRoot?: string;
  labels?: readonly string[];
  split?: string;
  searcher?: string;
  candiRatios?: readonly number[];
  weightType?: string;
  freezeProj?: boolean;
  loraSvdInitType?: string;
  seed?: number;
  bestScorer?: string;
  bestMetric?: string;
  locoopLambda?: number;
  locoopTopK?: number;
  usePredLabel?: boolean;
  temperature?: number;
  recallLevel?: number;
  batchSize?: number;
  cache?: boolean;
  template?: string;
  out?: string;
  testId?: string;
  testOod?: readonly string[];
  scorers?: readonly string[];
  strict?: boolean;
  workers?: number;
  threads?: number;
  /** cpu | webgpu | cuda | auto (the config's `device` key otherwise; default cpu) */
  device?: string;
}

/**
 * Resolves a search from an official config (optional) and flags (which win). Every problem a
 * user can make — ratios outside [0, 1), an unknown searcher, weight type, scorer or metric, a
 * top-K larger than the number of classes (checked once the classes are known) — is reported
 * here, before any work.
 */
export function resolveSearchConfig(json: Record<string, unknown> | null, flags: SearchFlags, configFile = 'config'): SearchConfig {
  const j = json ?? {};
  const unknown = Object.keys(j).filter((k) => !(SEARCH_KEYS as readonly string[]).includes(k) && !IGNORED.includes(k));
  if (unknown.length) fail(`${configFile}: unknown key(s) ${unknown.map((k) => `"${k}"`).join(', ')}; accepted: ${SEARCH_KEYS.join(', ')}`);
  const locoop = resolveLocoopCkpt(j, flags, configFile);
  const { model, family } = resolveModel(j, flags.model, configFile, locoopLoadOptions(locoop));
  const device = resolveDeviceSetting(j, flags.device, configFile);
  const clip_ckpt = resolveClipCkpt(j, flags.clipCkpt);
  const id = resolveIdSource(j, flags);

  const settings = new SettingsReader(j, configFile);
  const { value: searcher, from: searcherFrom } = settings.pick(flags.searcher, 'searcher', family.defaults.searcher);
  const valid = SEARCHER_TABLE.filter((r) => searcherApplies(r, family)).map((r) => r.name);
  if (!valid.includes(searcher)) {
    const known = SEARCHER_TABLE.some((r) => r.name === searcher);
    fail(`${settings.origin('searcher', searcherFrom === 'flag')}: ${known ? `searcher "${searcher}" does not apply to the ${family.displayName} model '${model}'` : `unknown searcher "${searcher}"`}; valid: ${valid.join(', ')}`);
  }
  const { value: ratios, from: ratiosFrom } = settings.pick<unknown>(flags.candiRatios, 'candi_ratios', [0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4]);
  const ratiosAt = settings.origin('candi_ratios', ratiosFrom === 'flag');
  if (!Array.isArray(ratios) || ratios.length === 0) fail(`${ratiosAt} must be a non-empty list of ratios in [0, 1)`);
  const badRatio = ratios.find((r) => typeof r !== 'number' || !(r >= 0 && r < 1));
  if (badRatio !== undefined) fail(`${ratiosAt}: ${JSON.stringify(badRatio)} is outside [0, 1)`);
  if (new Set(ratios).size !== ratios.length) fail(`${ratiosAt} has duplicates: ${JSON.stringify(ratios)}`);
  const { value: weight, from: weightFrom } = settings.pick(flags.weightType as WeightType | undefined, 'weight_type', 'W_up' as WeightType);
  if (!WEIGHT_TYPES.includes(weight) || weight === 'W_p') fail(`${settings.origin('weight_type', weightFrom === 'flag')}: unknown weight_type "${weight}"; valid: ${WEIGHT_TYPES.filter((w) => w !== 'W_p').join(', ')} (projections are searched with --no-freeze-proj)`);
  const freezeProj = settings.bool(flags.freezeProj, 'freeze_proj', true);
  if (!freezeProj && !family.towers.some((t) => t.projection)) fail(`${flags.freezeProj === false ? '--no-freeze-proj' : `${configFile}: freeze_proj false`} (searching W_p) does not apply to the ${family.displayName} model '${model}': it has no projection`);
  const mode = settings.oneOf(flags.loraSvdInitType as PruneMode | undefined, 'lora_svd_init_type', 'small', PRUNE_MODES);

  const { value: bestScorer, from: scorerFrom } = settings.pick(flags.bestScorer, 'best_scorer', 'loss');
  const { value: bestMetric, from: metricFrom } = settings.pick(flags.bestMetric, 'best_metric', bestScorer === 'loss' ? 'locoop_loss' : 'auroc');
  const metricAt = settings.origin('best_metric', metricFrom === 'flag');
  let objective: Objective;
  if (bestScorer === 'loss') {
    if (!['locoop_loss', 'loss_id', 'loss_ood'].includes(bestMetric)) fail(`${metricAt}: best_metric "${bestMetric}" with best_scorer "loss" must be one of locoop_loss, loss_id, loss_ood`);
    objective = { kind: 'loss', metric: bestMetric as 'locoop_loss' };
  } else {
    if (!SCORER_NAMES.includes(bestScorer as never)) fail(`${settings.origin('best_scorer', scorerFrom === 'flag')}: unknown best_scorer "${bestScorer}"; valid: loss, ${SCORER_NAMES.join(', ')}`);
    const m = bestMetric.toLowerCase().replace(/^fpr95$/, 'fpr');
    if (!['auroc', 'fpr', 'aupr'].includes(m)) fail(`${metricAt}: best_metric "${bestMetric}" with best_scorer "${bestScorer}" must be one of auroc, fpr, aupr`);
    objective = { kind: 'scorer', scorer: bestScorer, metric: m as 'auroc' };
  }

  const lambda = settings.num(flags.locoopLambda, 'locoop_lambda', family.defaults.locoopLambda(benchmarkOf(id)), (x) => x >= 0, 'a number >= 0');
  // K: the flag or the config, else the family's share of the classes, known once the data is listed (SearchRun)
  const topK = flags.locoopTopK !== undefined || j.locoop_top_k != null ? settings.num(flags.locoopTopK, 'locoop_top_k', 0, (x) => Number.isInteger(x) && x >= 1, 'a positive integer') : null;
  const temperature = settings.num(flags.temperature, 'temperature', family.defaults.temperature, (x) => x > 0, 'a positive number');
  const recall = settings.num(flags.recallLevel, 'recall_level', 0.95, (x) => x > 0 && x < 1, 'in (0, 1)');
  const batch = settings.num(flags.batchSize, 'batch_size', 32, (x) => Number.isInteger(x) && x > 0, 'a positive integer');
  const seed = settings.num(flags.seed, 'seed', 5, Number.isInteger, 'an integer');
  const { value: split } = settings.pick(flags.split, 'split', 'val');

  // Test data for the final evaluation: explicit folders, or the benchmark's test split if present.
  let test: SearchConfig['test'] = null;
  if (flags.testOod?.length || flags.testId) {
    if (!flags.testId) fail('--test-ood needs --test-id NAME=DIR (the ID test images)');
    if (!flags.testOod?.length) fail('--test-id needs at least one --test-ood NAME=DIR');
    const tid = parseNamedDir(flags.testId, '--test-id');
    test = { id: { kind: 'folder', name: tid.name, root: tid.root }, ood: flags.testOod.map((o) => parseNamedDir(o, '--test-ood')) };
    checkUniqueNames([{ name: tid.name, flag: `--test-id ${flags.testId}` }, ...test.ood.map((o, i) => ({ name: o.name, flag: `--test-ood ${flags.testOod![i]}` }))]);
  } else if (id.kind === 'benchmark') {
    test = { id, ood: [] };
  }

  const scorers = (flags.scorers ?? (j.scorers as string[] | undefined) ?? []).filter((s) => s !== 'loss');
  const badScorer = scorers.find((s) => !SCORER_NAMES.includes(s as never));
  if (badScorer) fail(`${settings.origin('scorers', flags.scorers !== undefined)}: unknown scorer "${badScorer}"; valid: ${SCORER_NAMES.join(', ')}`);

  const out = resolveOut(j, flags.out, id, 'search');

  const official: Record<string, unknown> = {
    ...j,
    ...(id.kind === 'benchmark' ? { data_root: id.dataRoot, id_dataset: id.benchmark } : {}),
    split, batch_size: batch, seed, temperature, recall_level: recall, model_name: model, model_type: family.officialModelTypes[0],
    lora_svd_init: true, lora_svd_init_type: mode, searcher, candi_ratios: [...ratios], weight_type: weight,
    best_scorer: bestScorer, best_metric: bestMetric, locoop_lambda: lambda, locoop_top_k: topK,
    use_pred_label: flags.usePredLabel ?? (j.use_pred_label as boolean | undefined) ?? false, freeze_proj: freezeProj,
    scorers: j.scorers ?? ['loss'],
    ...(clip_ckpt ? { clip_ckpt } : {}),
    ...locoop,
  };
  return {
    model, ...(clip_ckpt ? { clip_ckpt } : {}), ...locoop, arch: family.name, id, labels: flags.labels, split, searcher, candi_ratios: [...ratios], weight_type: weight, freeze_proj: freezeProj,
    lora_svd_init_type: mode, seed, objective, locoop_lambda: lambda, locoop_top_k: topK, use_pred_label: official.use_pred_label as boolean,
    temperature, recall_level: recall, batch_size: batch, cache: flags.cache ?? true, template: flags.template ?? family.defaults.template ?? 'a photo of a {}',
    out, test, scorers: scorers.length ? scorers : [...family.defaults.scorers], strict: flags.strict ?? false,
    workers: flags.workers, threads: flags.threads, official, ...device,
  };
}
