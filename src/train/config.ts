import { benchmarkOf, checkUniqueNames, fail, parseNamedDir, resolveIdSource, resolveModel, resolveOut, SettingsReader } from '../config/run-config.js';
import type { IdSource } from '../data/datasets.js';
import { PRUNE_MODES, type PruneMode } from '../lowrank/lowrank.js';
import { parseLoraSettings, type LowRankSetting } from '../lowrank/settings.js';
import { SCORER_NAMES } from '../ood/scores.js';
import { LR_SCHEDULES, type LrSchedule } from './schedule.js';
import { resolveDeviceSetting, type DeviceSetting } from '../config/device.js';

/** The adapters to train: SeTAR+FT from searched settings, or plain LoRA on target modules. */
export type AdapterPlan =
  | { readonly kind: 'setar'; readonly settings: readonly LowRankSetting[]; readonly mode: PruneMode }
  | { readonly kind: 'lora'; readonly r: number; readonly alpha: number; readonly targetModules: readonly string[] };

/** Everything `setar finetune` needs, resolved. */
export interface FinetuneConfig extends DeviceSetting {
  readonly model: string;
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
}

/** Resolves a fine-tuning run from an official config (optional) and flags (which win). */
export function resolveFinetuneConfig(json: Record<string, unknown> | null, flags: FinetuneFlags, configFile = 'config'): FinetuneConfig {
  const j = json ?? {};
  const unknown = Object.keys(j).filter((k) => !KEYS.includes(k));
  if (unknown.length) fail(`${configFile}: unknown key(s) ${unknown.map((k) => `"${k}"`).join(', ')}; accepted: ${KEYS.join(', ')}`);
  const { model, family } = resolveModel(j, flags.model, configFile);
  const device = resolveDeviceSetting(j, flags.device, configFile);
  const id = resolveIdSource(j, flags);


  const settings = new SettingsReader(j, configFile);
  const int = (x: number) => Number.isInteger(x);

  let adapters: AdapterPlan;
  const settingsSource = flags.loraSettings !== undefined ? flags.loraSettings : j.lora_svd_init !== false ? j.lora_settings : undefined;
  const mode = settings.oneOf(flags.loraSvdInitType as PruneMode | undefined, 'lora_svd_init_type', 'small', PRUNE_MODES);
  if (settingsSource !== undefined && settingsSource !== null) {
    adapters = { kind: 'setar', settings: parseLoraSettings(settingsSource, flags.loraSettings !== undefined ? '--lora-settings' : `${configFile} "lora_settings"`), mode };
  } else {
    if (flags.loraR === undefined && j.lora_r == null) fail('no adapters: give --lora-settings FILE (SeTAR+FT) or --lora-r R --lora-alpha A --target-modules mlp.fc1 (LoRA)');
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
    model, id, labels: flags.labels, split: flags.split ?? (j.split as string | undefined) ?? 'val', adapters,
    num_train_epochs: settings.num(flags.numTrainEpochs, 'num_train_epochs', 5, (x) => int(x) && x >= 0, 'an integer >= 0'),
    max_train_steps: maxSteps,
    learning_rate: settings.num(flags.learningRate, 'learning_rate', 0.01, (x) => x >= 0, 'a number >= 0'),
    momentum: settings.num(flags.momentum, 'momentum', 0.9, (x) => x >= 0 && x < 1, 'in [0, 1)'),
    weight_decay: settings.num(flags.weightDecay, 'weight_decay', 5e-4, (x) => x >= 0, 'a number >= 0'),
    lr_scheduler_type: schedule,
    num_warmup_steps: settings.num(flags.numWarmupSteps, 'num_warmup_steps', 0, (x) => int(x) && x >= 0, 'an integer >= 0'),
    gradient_accumulation_steps: settings.num(flags.gradientAccumulationSteps, 'gradient_accumulation_steps', 1, (x) => int(x) && x > 0, 'a positive integer'),
    batch_size: settings.num(flags.batchSize, 'batch_size', 100, (x) => int(x) && x > 0, 'a positive integer'),
    seed: settings.num(flags.seed, 'seed', 5, int, 'an integer'),
    locoop_lambda: settings.num(flags.locoopLambda, 'locoop_lambda', family.defaults.locoopLambda(benchmarkOf(id)), (x) => x >= 0, 'a number >= 0'),
    // null: the family's share of the classes, resolved when the data is listed (runFinetune)
    locoop_top_k: flags.locoopTopK !== undefined || j.locoop_top_k != null ? settings.num(flags.locoopTopK, 'locoop_top_k', 0, (x) => int(x) && x >= 1, 'a positive integer') : null,
    use_pred_label: flags.usePredLabel ?? (j.use_pred_label as boolean | undefined) ?? false,
    template: flags.template ?? 'a photo of a {}',
    out, test, scorers: scorers.length ? scorers : ['mcm_score', 'gl_mcm_score'],
    temperature: settings.num(undefined, 'temperature', family.defaults.temperature, (x) => x > 0, 'a positive number'),
    recall_level: settings.num(undefined, 'recall_level', 0.95, (x) => x > 0 && x < 1, 'in (0, 1)'),
    threads: flags.threads, official: j, ...device,
  };
  return config;
}
