import { benchmarkOf, fail, locoopLoadOptions, parseNamedDir, resolveIdSource, resolveLocoopCkpt, resolveModel, resolveOut } from '../config/run-config.js';
import type { FamilyLoadOptions } from '../models/family.js';
import type { IdSource } from '../data/datasets.js';
import { PRUNE_MODES, type PruneMode } from '../lowrank/lowrank.js';
import { parseLoraSettings, type LowRankSetting } from '../lowrank/settings.js';
import { SCORER_NAMES } from '../ood/scores.js';
import { LR_SCHEDULES, type LrSchedule } from './schedule.js';

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
    /** K was not given: SPEC §9's 200, scaled down for fewer than 1,000 classes (see `locoopTopK`). */
    readonly default_top_k: boolean;
  };

/** Everything `setar finetune` needs, resolved. */
export interface FinetuneConfig {
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
  readonly locoop_top_k: number;
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
  testId?: string; testOod?: readonly string[]; scorers?: readonly string[]; threads?: number;
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
  const id = resolveIdSource(j, flags);
  const recipe = family.defaults.contextTraining;
  if (context && !recipe) fail(`--method locoop trains a prompt context, which the ${family.displayName} model '${model}' cannot carry`);


  const num = (v: unknown, key: string, ok: (x: number) => boolean, expected: string): number => {
    if (typeof v !== 'number' || !ok(v)) fail(`${key} must be ${expected}, got ${JSON.stringify(v)}`);
    return v;
  };
  const int = (x: number) => Number.isInteger(x);

  let adapters: AdapterPlan;
  const settingsSource = flags.loraSettings !== undefined ? flags.loraSettings : j.lora_svd_init !== false ? j.lora_settings : undefined;
  const mode = (flags.loraSvdInitType ?? (j.lora_svd_init_type as string | undefined) ?? 'small') as PruneMode;
  if (!PRUNE_MODES.includes(mode)) fail(`lora_svd_init_type "${mode}" is not one of ${PRUNE_MODES.join(', ')}`);
  if (method === 'lora' && flags.loraSettings !== undefined) fail('--lora-settings belongs to --method setar-ft; --method lora takes --lora-r R --lora-alpha A --target-modules …');
  if (context) {
    adapters = {
      kind: 'context', n_ctx: locoop?.n_ctx ?? (load.nCtx ?? null), n_ctx_name: load.nCtxName ?? null, ctx_init: flags.ctxInit ?? null,
      shots: num(flags.shots ?? recipe!.shots, '--shots', (x) => int(x) && x > 0, 'a positive integer'),
      warmup_epochs: recipe!.warmupEpochs, warmup_lr: recipe!.warmupLr, crop_scale: recipe!.cropScale,
      default_top_k: (flags.locoopTopK ?? j.locoop_top_k) === undefined,
    };
  } else if (method === 'setar-ft' && settingsSource !== undefined && settingsSource !== null) {
    adapters = { kind: 'setar', settings: parseLoraSettings(settingsSource, flags.loraSettings !== undefined ? '--lora-settings' : `${configFile} "lora_settings"`), mode };
  } else {
    const r = flags.loraR ?? (j.lora_r as number | undefined);
    if (r === undefined) fail(method === 'lora' ? '--method lora needs --lora-r R (and --lora-alpha A, --target-modules mlp.fc1)' : 'no adapters: give --lora-settings FILE (SeTAR+FT) or --lora-r R --lora-alpha A --target-modules mlp.fc1 (LoRA)');
    const targets = flags.targetModules ?? (j.target_modules as string[] | undefined) ?? ['mlp.fc1'];
    if (!Array.isArray(targets) || targets.length === 0 || targets.some((t) => typeof t !== 'string')) fail(`target_modules must be a non-empty list of module names, got ${JSON.stringify(targets)}`);
    adapters = { kind: 'lora', r: num(r, 'lora_r', (x) => int(x) && x > 0, 'a positive integer'), alpha: num(flags.loraAlpha ?? j.lora_alpha ?? r, 'lora_alpha', (x) => x > 0, 'a positive number'), targetModules: targets };
  }

  const schedule = (flags.lrSchedulerType ?? (j.lr_scheduler_type as string | undefined) ?? 'cosine') as LrSchedule;
  if (!LR_SCHEDULES.includes(schedule)) fail(`lr_scheduler_type "${schedule}" is not one of ${LR_SCHEDULES.join(', ')}`);
  const maxSteps = flags.maxTrainSteps ?? (j.max_train_steps as number | undefined) ?? null;
  if (maxSteps !== null) num(maxSteps, 'max_train_steps', (x) => int(x) && x >= 0, 'an integer >= 0');
  const defaults = context ? { lambda: recipe!.lambda, topK: recipe!.topK } : family.defaults.locoop(benchmarkOf(id));
  const scorers = (flags.scorers ?? (j.scorers as string[] | undefined) ?? ['mcm_score', 'gl_mcm_score']).filter((s) => s !== 'loss');
  const bad = scorers.find((s) => !SCORER_NAMES.includes(s as never));
  if (bad) fail(`unknown scorer "${bad}"; valid: ${SCORER_NAMES.join(', ')}`);

  let test: FinetuneConfig['test'] = null;
  if (flags.testId || flags.testOod?.length) {
    if (!flags.testId || !flags.testOod?.length) fail('the final evaluation needs both --test-id NAME=DIR and --test-ood NAME=DIR');
    const tid = parseNamedDir(flags.testId, '--test-id');
    test = { id: { kind: 'folder', name: tid.name, root: tid.root }, ood: flags.testOod.map((o) => parseNamedDir(o, '--test-ood')) };
  } else if (id.kind === 'benchmark') {
    test = { id, ood: [] };
  }

  const out = resolveOut(j, flags.out, id, 'finetune');

  const config: FinetuneConfig = {
    model, ...locoop, id, labels: flags.labels, split: flags.split ?? (j.split as string | undefined) ?? (context ? 'train' : 'val'), adapters,
    num_train_epochs: num(flags.numTrainEpochs ?? j.num_train_epochs ?? (context ? recipe!.epochs : 5), 'num_train_epochs', (x) => int(x) && x >= 0, 'an integer >= 0'),
    max_train_steps: maxSteps,
    learning_rate: num(flags.learningRate ?? j.learning_rate ?? (context ? recipe!.learningRate : 0.01), 'learning_rate', (x) => x >= 0, 'a number >= 0'),
    momentum: num(flags.momentum ?? j.momentum ?? (context ? recipe!.momentum : 0.9), 'momentum', (x) => x >= 0 && x < 1, 'in [0, 1)'),
    weight_decay: num(flags.weightDecay ?? j.weight_decay ?? (context ? recipe!.weightDecay : 5e-4), 'weight_decay', (x) => x >= 0, 'a number >= 0'),
    lr_scheduler_type: schedule,
    num_warmup_steps: num(flags.numWarmupSteps ?? j.num_warmup_steps ?? 0, 'num_warmup_steps', (x) => int(x) && x >= 0, 'an integer >= 0'),
    gradient_accumulation_steps: num(flags.gradientAccumulationSteps ?? j.gradient_accumulation_steps ?? 1, 'gradient_accumulation_steps', (x) => int(x) && x > 0, 'a positive integer'),
    batch_size: num(flags.batchSize ?? j.batch_size ?? (context ? recipe!.batchSize : 100), 'batch_size', (x) => int(x) && x > 0, 'a positive integer'),
    seed: num(flags.seed ?? j.seed ?? 5, 'seed', int, 'an integer'),
    locoop_lambda: num(flags.locoopLambda ?? j.locoop_lambda ?? defaults.lambda, 'locoop_lambda', (x) => x >= 0, 'a number >= 0'),
    locoop_top_k: num(flags.locoopTopK ?? j.locoop_top_k ?? defaults.topK, 'locoop_top_k', (x) => int(x) && x >= 1, 'a positive integer'),
    use_pred_label: flags.usePredLabel ?? (j.use_pred_label as boolean | undefined) ?? false,
    template: flags.template ?? family.defaults.template ?? 'a photo of a {}',
    out, test, scorers: scorers.length ? scorers : ['mcm_score', 'gl_mcm_score'],
    temperature: num(j.temperature ?? family.defaults.temperature, 'temperature', (x) => x > 0, 'a positive number'),
    recall_level: num(j.recall_level ?? 0.95, 'recall_level', (x) => x > 0 && x < 1, 'in (0, 1)'),
    threads: flags.threads, official: j,
  };
  return config;
}
