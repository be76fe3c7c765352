import { benchmarkOf, checkUniqueNames, fail, locoopLoadOptions, parseNamedDir, resolveIdSource, resolveLocoopCkpt, resolveModel, resolveOut, SettingsReader } from '../config/run-config.js';
import type { FamilyLoadOptions } from '../models/family.js';
import type { IdSource } from '../data/datasets.js';
import { PRUNE_MODES, type PruneMode } from '../lowrank/lowrank.js';
import { parseLoraSettings, type LowRankSetting } from '../lowrank/settings.js';
import { SCORER_NAMES } from '../ood/scores.js';
import { LR_SCHEDULES, type LrSchedule } from './schedule.js';
import { resolveDeviceSetting, type DeviceSetting } from '../config/device.js';

/** `setar finetune --method`: SeTAR+FT (the default), plain LoRA, or LoCoOp (train a prompt context, SPEC §9). */
export const FINETUNE_METHODS = ['setar-ft', 'lora', 'locoop'] as const;
export type FinetuneMethod = (typeof FINETUNE_METHODS)[number];

/**
 * What trains: SeTAR+FT adapters from searched settings, plain LoRA on target modules, or a LoCoOp
 * prompt context (`context`: from `ctx_init`'s phrase, random with `n_ctx` vectors, or continued
 * from `locoop_ckpt`), trained on `shots` images per class under Dassl's schedule — `warmup_epochs`
 * at `warmup_lr`, then cosine over all epochs.
 */
export type AdapterPlan =
  | { readonly kind: 'setar'; readonly settings: readonly LowRankSetting[]; readonly mode: PruneMode }
  | { readonly kind: 'lora'; readonly r: number; readonly alpha: number; readonly targetModules: readonly string[] }
  | {
    readonly kind: 'context'; readonly n_ctx: number | null; readonly ctx_init: string | null; readonly shots: number;
    /** How the user gave n_ctx (`--n-ctx`, `config key "n_ctx"`), for messages. */
    readonly n_ctx_name: string | null;
    readonly warmup_epochs: number; readonly warmup_lr: number; readonly crop_scale: readonly [number, number];
    /** K as a share of the classes when `locoop_top_k` is null (SPEC §9: 200 of ImageNet's 1,000). */
    readonly top_k_share: number;
  };

/** Everything `setar finetune` needs, resolved. */
export interface FinetuneConfig extends DeviceSetting {
  readonly model: string;
  /** A LoCoOp context (official `locoop_ckpt`) and its n_ctx: SeTAR+FT and LoRA keep it fixed; `--method locoop` continues training it. */
  readonly locoop_ckpt?: string;
  readonly n_ctx?: number;
  readonly id: IdSource;
  readonly labels?: readonly string[];
  readonly split: string;
  readonly adapters: AdapterPlan;
  readonly num_train_epochs: number;
  /** Optimiser steps; overrides epochs when set (0: no step at all). */
  readonly max_train_steps: number | null;
  readonly learning_rate: number;
  readonly momentum: number;
  readonly weight_decay: number;
  readonly lr_scheduler_type: LrSchedule;
  readonly num_warmup_steps: number;
  readonly gradient_accumulation_steps: number;
  readonly batch_size: number;
  readonly seed: number;
  readonly locoop_lambda: number;
  /** K of the OOD-patch rule; null: the family's share of the classes, resolved when the data is listed. */
  readonly locoop_top_k: number | null;
  readonly use_pred_label: boolean;
  readonly template: string;
  readonly out: string;
  readonly test: { readonly id: IdSource; readonly ood: readonly { name: string; root: string }[] } | null;
  readonly scorers: readonly string[];
  readonly temperature: number;
  readonly recall_level: number;
  readonly threads?: number;
  readonly official: Record<string, unknown>;
}

const KEYS = [
  'data_root', 'id_dataset', 'split', 'batch_size', 'seed', 'device', 'scorers', 'temperature', 'exp_name', 'log_directory', 'recall_level',
  'model_name', 'model_type', 'num_train_epochs', 'max_train_steps', 'gradient_accumulation_steps', 'learning_rate', 'weight_decay', 'momentum',
  'lr_scheduler_type', 'num_warmup_steps', 'locoop_lambda', 'locoop_top_k', 'use_pred_label', 'lora_svd_init', 'lora_svd_init_type',
  'lora_settings', 'lora_r', 'lora_alpha', 'target_modules',
  'locoop_ckpt', 'n_ctx',
  // a search's config_best.json carries the search's keys too
  'searcher', 'candi_ratios', 'weight_type', 'best_scorer', 'best_metric', 'freeze_proj',
];

/** Flags of `setar finetune`, one per official key plus setar's own. */
export interface FinetuneFlags {
  model?: string; id?: string; benchmark?: string; dataRoot?: string; labels?: readonly string[]; split?: string;
  loraSettings?: unknown; loraSvdInitType?: string; loraR?: number; loraAlpha?: number; targetModules?: readonly string[];
  numTrainEpochs?: number; maxTrainSteps?: number; learningRate?: number; momentum?: number; weightDecay?: number;
  lrSchedulerType?: string; numWarmupSteps?: number; gradientAccumulationSteps?: number; batchSize?: number; seed?: number;
  locoopLambda?: number; locoopTopK?: number; usePredLabel?: boolean; template?: string; out?: string;
  testId?: string; testOod?: readonly string[]; scorers?: readonly string[]; threads?: number; device?: string;
  method?: string; locoopCkpt?: string; nCtx?: number; ctxInit?: string; shots?: number;
}

/** Resolves a fine-tuning run from an official config (optional) and flags (which win). */
export function resolveFinetuneConfig(json: Record<string, unknown> | null, flags: FinetuneFlags, configFile = 'config'): FinetuneConfig {
  const j = json ?? {};
  const unknown = Object.keys(j).filter((k) => !KEYS.includes(k));
  if (unknown.length) fail(`${configFile}: unknown key(s) ${unknown.map((k) => `"${k}"`).join(', ')}; accepted: ${KEYS.join(', ')}`);
  if (flags.method !== undefined && !(FINETUNE_METHODS as readonly string[]).includes(flags.method)) fail(`--method must be one of ${FINETUNE_METHODS.join(', ')}, got '${flags.method}'`);
  const settingsGiven = flags.loraSettings !== undefined || (j.lora_svd_init !== false && j.lora_settings != null);
  const method: FinetuneMethod = (flags.method as FinetuneMethod | undefined) ?? (settingsGiven ? 'setar-ft' : (flags.loraR ?? j.lora_r) !== undefined ? 'lora' : 'setar-ft');
  const context = method === 'locoop';
  if (!context) for (const [v, f] of [[flags.ctxInit, '--ctx-init'], [flags.shots, '--shots']] as const) if (v !== undefined) fail(`${f} applies to --method locoop (training a LoCoOp context), not ${method}`);
  const locoop = resolveLocoopCkpt(j, flags, configFile, { nCtxAlone: context });
  let load: FamilyLoadOptions = locoopLoadOptions(locoop);
  if (context) {
    if (locoop && flags.ctxInit !== undefined) fail('--ctx-init starts a new context and --locoop-ckpt continues training one: give one of them');
    const n = flags.nCtx ?? (j.n_ctx as number | undefined);
    if (!locoop) load = { locoopInit: { phrase: flags.ctxInit ?? null, seed: flags.seed ?? (j.seed as number | undefined) ?? 5 }, ...(n !== undefined ? { nCtx: n, nCtxName: flags.nCtx !== undefined ? '--n-ctx' : 'config key "n_ctx"' } : {}) };
    const notHere = ([[flags.loraSettings ?? (settingsGiven ? j.lora_settings : undefined), '--lora-settings / lora_settings'], [flags.loraR ?? j.lora_r, '--lora-r / lora_r'],
      [flags.targetModules ?? j.target_modules, '--target-modules / target_modules'], [flags.lrSchedulerType ?? j.lr_scheduler_type, '--lr-scheduler-type / lr_scheduler_type'],
      [flags.numWarmupSteps ?? j.num_warmup_steps, '--num-warmup-steps / num_warmup_steps'], [flags.gradientAccumulationSteps ?? j.gradient_accumulation_steps, '--gradient-accumulation-steps / gradient_accumulation_steps'],
      [flags.maxTrainSteps ?? j.max_train_steps, '--max-train-steps / max_train_steps']] as const).filter(([v]) => v !== undefined && v !== null).map(([, f]) => f);
    if (notHere.length) fail(`${notHere.join(', ')} ${notHere.length > 1 ? 'do' : 'does'} not apply to --method locoop: only the context trains, ${'with Dassl\'s epoch schedule (a constant warm-up epoch, then cosine)'}`);
  }
  const { model, family } = resolveModel(j, flags.model, configFile, load);
  const device = resolveDeviceSetting(j, flags.device, configFile);
  const id = resolveIdSource(j, flags);
  const recipe = family.defaults.contextTraining;
  if (context && !recipe) fail(`--method locoop trains a prompt context, which the ${family.displayName} model '${model}' cannot carry`);


  const settings = new SettingsReader(j, configFile);
  const int = (x: number) => Number.isInteger(x);

  let adapters: AdapterPlan;
  const settingsSource = flags.loraSettings !== undefined ? flags.loraSettings : j.lora_svd_init !== false ? j.lora_settings : undefined;
  const mode = settings.oneOf(flags.loraSvdInitType as PruneMode | undefined, 'lora_svd_init_type', 'small', PRUNE_MODES);
  if (method === 'lora' && flags.loraSettings !== undefined) fail('--lora-settings belongs to --method setar-ft; --method lora takes --lora-r R --lora-alpha A --target-modules …');
  if (context) {
    adapters = {
      kind: 'context', n_ctx: locoop?.n_ctx ?? (load.nCtx ?? null), n_ctx_name: load.nCtxName ?? null, ctx_init: flags.ctxInit ?? null,
      shots: settings.num(flags.shots, 'shots', recipe!.shots, (x) => int(x) && x > 0, 'a positive integer'),
      warmup_epochs: recipe!.warmupEpochs, warmup_lr: recipe!.warmupLr, crop_scale: recipe!.cropScale, top_k_share: recipe!.topKShare,
    };
  } else if (method === 'setar-ft' && settingsSource !== undefined && settingsSource !== null) {
    adapters = { kind: 'setar', settings: parseLoraSettings(settingsSource, flags.loraSettings !== undefined ? '--lora-settings' : `${configFile} "lora_settings"`), mode };
  } else {
    if (flags.loraR === undefined && j.lora_r == null) fail(method === 'lora' ? '--method lora needs --lora-r R (and --lora-alpha A, --target-modules mlp.fc1)' : 'no adapters: give --lora-settings FILE (SeTAR+FT) or --lora-r R --lora-alpha A --target-modules mlp.fc1 (LoRA)');
    const r = settings.num(flags.loraR, 'lora_r', 0, (x) => int(x) && x > 0, 'a positive integer');
    const { value: targets, from: targetsFrom } = settings.pick<unknown>(flags.targetModules, 'target_modules', ['mlp.fc1']);
    settings.check(Array.isArray(targets) && targets.length > 0 && targets.every((t) => typeof t === 'string'), 'target_modules', targetsFrom, 'a non-empty list of module names', targets);
    adapters = { kind: 'lora', r, alpha: settings.num(flags.loraAlpha, 'lora_alpha', r, (x) => x > 0, 'a positive number'), targetModules: targets as string[] };
  }

  const schedule = settings.oneOf(flags.lrSchedulerType as LrSchedule | undefined, 'lr_scheduler_type', 'cosine', LR_SCHEDULES);
  const maxSteps = flags.maxTrainSteps !== undefined || j.max_train_steps != null ? settings.num(flags.maxTrainSteps, 'max_train_steps', 0, (x) => int(x) && x >= 0, 'an integer >= 0') : null;
  const scorers = (flags.scorers ?? (j.scorers as string[] | undefined) ?? ['mcm_score', 'gl_mcm_score']).filter((s) => s !== 'loss');
  const bad = scorers.find((s) => !SCORER_NAMES.includes(s as never));
  if (bad) fail(`${settings.origin('scorers', flags.scorers !== undefined)}: unknown scorer "${bad}"; valid: ${SCORER_NAMES.join(', ')}`);

  let test: FinetuneConfig['test'] = null;
  if (flags.testId || flags.testOod?.length) {
    if (!flags.testId || !flags.testOod?.length) fail('the final evaluation needs both --test-id NAME=DIR and --test-ood NAME=DIR');
    const tid = parseNamedDir(flags.testId, '--test-id');
    test = { id: { kind: 'folder', name: tid.name, root: tid.root }, ood: flags.testOod.map((o) => parseNamedDir(o, '--test-ood')) };
    checkUniqueNames([{ name: tid.name, flag: `--test-id ${flags.testId}` }, ...test.ood.map((o, i) => ({ name: o.name, flag: `--test-ood ${flags.testOod![i]}` }))]);
  } else if (id.kind === 'benchmark') {
    test = { id, ood: [] };
  }

  const out = resolveOut(j, flags.out, id, 'finetune');

  const config: FinetuneConfig = {
    model, ...locoop, id, labels: flags.labels, split: flags.split ?? (j.split as string | undefined) ?? (context ? 'train' : 'val'), adapters,
    num_train_epochs: settings.num(flags.numTrainEpochs, 'num_train_epochs', context ? recipe!.epochs : 5, (x) => int(x) && x >= 0, 'an integer >= 0'),
    max_train_steps: maxSteps,
    learning_rate: settings.num(flags.learningRate, 'learning_rate', context ? recipe!.learningRate : 0.01, (x) => x >= 0, 'a number >= 0'),
    momentum: settings.num(flags.momentum, 'momentum', context ? recipe!.momentum : 0.9, (x) => x >= 0 && x < 1, 'in [0, 1)'),
    weight_decay: settings.num(flags.weightDecay, 'weight_decay', context ? recipe!.weightDecay : 5e-4, (x) => x >= 0, 'a number >= 0'),
    lr_scheduler_type: schedule,
    num_warmup_steps: settings.num(flags.numWarmupSteps, 'num_warmup_steps', 0, (x) => int(x) && x >= 0, 'an integer >= 0'),
    gradient_accumulation_steps: settings.num(flags.gradientAccumulationSteps, 'gradient_accumulation_steps', 1, (x) => int(x) && x > 0, 'a positive integer'),
    batch_size: settings.num(flags.batchSize, 'batch_size', context ? recipe!.batchSize : 100, (x) => int(x) && x > 0, 'a positive integer'),
    seed: settings.num(flags.seed, 'seed', 5, int, 'an integer'),
    locoop_lambda: settings.num(flags.locoopLambda, 'locoop_lambda', context ? recipe!.lambda : family.defaults.locoopLambda(benchmarkOf(id)), (x) => x >= 0, 'a number >= 0'),
    // null: a share of the classes (the family's; LoCoOp training: SPEC §9's 200 of 1,000), resolved when the data is listed
    locoop_top_k: flags.locoopTopK !== undefined || j.locoop_top_k != null ? settings.num(flags.locoopTopK, 'locoop_top_k', 0, (x) => int(x) && x >= 1, 'a positive integer') : null,
    use_pred_label: flags.usePredLabel ?? (j.use_pred_label as boolean | undefined) ?? false,
    template: flags.template ?? family.defaults.template ?? 'a photo of a {}',
    out, test, scorers: scorers.length ? scorers : ['mcm_score', 'gl_mcm_score'],
    temperature: settings.num(undefined, 'temperature', family.defaults.temperature, (x) => x > 0, 'a positive number'),
    recall_level: settings.num(undefined, 'recall_level', 0.95, (x) => x > 0 && x < 1, 'in (0, 1)'),
    threads: flags.threads, official: j, ...device,
  };
  return config;
}
