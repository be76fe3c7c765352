import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { loadIdDataset } from '../data/datasets.js';
import { loadImageBatches } from '../data/loader.js';
import { resolveEvalConfig } from '../eval/config.js';
import { runEval, type EvalResult } from '../eval/run-eval.js';
import { openOutputFolder, writeFileAtomic } from '../io/atomic.js';
import { lowRankApprox } from '../lowrank/lowrank.js';
import type { LowRankSetting, LowRankTarget, WeightSlot } from '../lowrank/settings.js';
import { getSvd } from '../lowrank/svd-cache.js';
import { resolveFamily } from '../models/registry.js';
import { locoopLoadOptions } from '../config/run-config.js';
import { defaultTopK } from '../ood/locoop.js';
import type { SearchConfig } from './config.js';
import type { SearchStats } from './evaluator.js';
import { objectiveColumn, objectiveValue, type CandidateFigures } from './objective.js';
import { prepareOutDir } from '../io/out-dir.js';

/** One evaluated candidate: a row of search_results.json (its figures follow the five keys). */
export type CandidateRecord = {
  step: number;
  tower_type: string;
  weight_type: string;
  /** CLIP: the layer (null for W_p); Swin: [stage, block] */
  layer_num: WeightSlot['layer'];
  ratio: number;
} & Record<string, number | string | null | WeightSlot['layer']>;

/** One decided step: a row of search_best_results.csv (figures are the best so far). */
export interface StepRecord {
  readonly step: number;
  readonly tower_type: string;
  readonly weight_type: string;
  readonly layer_num: WeightSlot['layer'];
  readonly best_ratio: number;
  readonly figures: CandidateFigures;
}

/** Progress hooks of {@link runSearch}. */
export interface SearchHooks {
  readonly onStepStart?: (step: number, total: number, label: string) => void;
  readonly onCandidate?: (done: number, total: number) => void;
  readonly onStepEnd?: (step: number) => void;
  readonly onPhase?: (phase: 'load' | 'search' | 'final-eval') => void;
  readonly log?: (line: string) => void;
  /** A line the user should see however the progress is shown (e.g. a default chosen from the data). */
  readonly notice?: (line: string) => void;
  /** Replaces the image loader (tests record which files a run reads). */
  readonly loader?: typeof loadImageBatches;
}

/** What {@link runSearch} found. */
export interface SearchResult {
  readonly lora_settings: LowRankSetting[];
  readonly steps: readonly StepRecord[];
  readonly candidates: readonly CandidateRecord[];
  readonly stats: SearchStats;
  readonly resumedFromStep: number;
  readonly evaluation: EvalResult | null;
}

/** Saved after every step; a re-run with the same settings continues after its last step. */
export interface SearchState {
  readonly fingerprint: string;
  readonly steps: StepRecord[];
  readonly candidates: CandidateRecord[];
  /** layer_exhaustive: the slots still undecided */
  pending?: number[];
}

export const STATE_FILE = 'search_state.json';

/** A search configuration whose K is known. */
export type ResolvedSearchConfig = SearchConfig & { readonly locoop_top_k: number };

/**
 * The configuration with K resolved: the one given, else the family's share of the classes
 * (SPEC §5's 300 of ImageNet's 1,000 for CLIP), said to the user and written into config_best.json.
 */
function withTopK(config: SearchConfig, classes: number): { config: ResolvedSearchConfig; note?: string } {
  if (config.locoop_top_k !== null) return { config: config as ResolvedSearchConfig };
  const share = resolveFamily(config.model, locoopLoadOptions(config)).defaults.locoopTopKShare;
  const k = defaultTopK(share, classes);
  const note = `locoop_top_k ${k}: round(${share} × ${classes} classes), the reference's share of the classes (--locoop-top-k sets it)`;
  return { config: { ...config, locoop_top_k: k, official: { ...config.official, locoop_top_k: k } }, note };
}

/** Everything that changes the search's decisions, hashed: resuming under other settings is refused. */
export function fingerprint(c: ResolvedSearchConfig): string {
  const keys = {
    model: c.model, clipCkpt: c.clip_ckpt, ...(c.locoop_ckpt ? { locoopCkpt: c.locoop_ckpt, nCtx: c.n_ctx } : {}), id: c.id, labels: c.labels, split: c.split, searcher: c.searcher, candi_ratios: c.candi_ratios, weight_type: c.weight_type,
    freeze_proj: c.freeze_proj, mode: c.lora_svd_init_type, seed: c.seed, objective: c.objective, lambda: c.locoop_lambda, topK: c.locoop_top_k,
    usePred: c.use_pred_label, temperature: c.temperature, recall: c.recall_level, template: c.template,
  };
  return createHash('sha256').update(JSON.stringify(keys)).digest('hex').slice(0, 16);
}

/** A record's figures without its identifying keys and the bytes it moved. */
export function figuresOf(r: CandidateRecord): CandidateFigures {
  const { step: _s, tower_type: _t, weight_type: _w, layer_num: _l, ratio: _r, bytes_up: _u, bytes_down: _d, ...figures } = r;
  return figures as unknown as CandidateFigures;
}

export function slotKey(s: WeightSlot): string {
  return `${s.tower}:${s.weight}:${s.layer === null ? 'p' : typeof s.layer === 'number' ? s.layer : s.layer.join('.')}`;
}

/** Writes search_best_results.csv (one row per decided step) and search_results.json (every candidate). */
export function writeSearchOutputs(config: ResolvedSearchConfig, state: SearchState): void {
  const col = objectiveColumn(config.objective);
  const figureCols = ['locoop_loss', 'loss_id', 'loss_ood', 'acc', 'ood_patch_percent'];
  if (!figureCols.includes(col)) figureCols.splice(0, 0, col);
  const header = ['step', 'tower_type', 'weight_type', 'layer_num', 'best_ratio', ...figureCols.map((c) => (c === col ? `${c}*` : c))];
  const layer = (l: WeightSlot['layer']) => (l === null ? '' : typeof l === 'number' ? l : JSON.stringify(l));
  writeFileAtomic(join(config.out, 'search_best_results.csv'), stringify([header, ...state.steps.map((s) => [
    s.step, s.tower_type, s.weight_type, layer(s.layer_num), s.best_ratio, ...figureCols.map((c) => s.figures[c]),
  ])]));
  writeFileAtomic(join(config.out, 'search_results.json'), JSON.stringify(state.candidates, null, 1) + '\n');
}

/**
 * The bookkeeping every search shares, whatever the model: the log, the validation data, the
 * resumable state, the decisions and the best figures so far, the output files and the final
 * evaluation on test data.
 */
export class SearchRun {
  readonly decided = new Map<string, number>();
  best: { value: number; figures: CandidateFigures } | null = null;
  readonly resumedFromStep: number;
  private readonly factors = new Map<string, Awaited<ReturnType<typeof getSvd>>>();

  private constructor(
    readonly config: ResolvedSearchConfig,
    readonly hooks: SearchHooks,
    readonly id: ReturnType<typeof loadIdDataset>['dataset'],
    readonly labels: string[],
    readonly statePath: string,
    readonly state: SearchState,
  ) {
    this.resumedFromStep = state.steps.length;
  }

  /** Resolves the validation data (never the test split) and loads a saved state of the same settings. */
  static open(given: SearchConfig, hooks: SearchHooks): SearchRun {
    prepareOutDir(given.out);
    const orphans = openOutputFolder(given.out); // a killed run's temporary files
    const { dataset, labels } = loadIdDataset(given.id, given.split, given.labels);
    const { config, note } = withTopK(given, labels.length);
    if (config.locoop_top_k > labels.length) {
      throw new Error(`locoop_top_k ${config.locoop_top_k} exceeds the number of classes (${labels.length}) of ${dataset.name}; it must be in [1, ${labels.length}]`);
    }
    const fp = fingerprint(config);
    const statePath = join(config.out, STATE_FILE);
    let state: SearchState = { fingerprint: fp, steps: [], candidates: [] };
    if (existsSync(statePath)) {
      const saved = JSON.parse(readFileSync(statePath, 'utf8')) as SearchState;
      if (saved.fingerprint !== fp) {
        throw new Error(`'${statePath}' belongs to a search with other settings; use another --out folder or delete it to start over`);
      }
      state = saved;
    }
    const run = new SearchRun(config, hooks, dataset, labels, statePath, state);
    for (const f of orphans) run.log(`removed ${f}, a temporary file left by an interrupted run`);
    if (note) {
      run.log(note);
      hooks.notice?.(note);
    }
    if (state.steps.length) run.log(`resuming after step ${state.steps.length - 1} (${state.steps.length} steps done)`);
    return run;
  }

  log(line: string): void {
    appendFileSync(join(this.config.out, 'search.log'), `${new Date().toISOString()} ${line}\n`);
    this.hooks.log?.(line);
  }

  get loader(): typeof loadImageBatches {
    return this.hooks.loader ?? loadImageBatches;
  }

  /** Sets a weight to its low-rank approximation at `ratio` (0: the checkpoint's weight); SVDs come from the cache. */
  async setRatio(model: LowRankTarget, name: string, ratio: number): Promise<void> {
    if (ratio === 0) {
      model.resetWeight(name);
      return;
    }
    const weight = model.getOriginalWeight(name);
    const shape = model.weightShape(name) as [number, number];
    let f = this.factors.get(name);
    if (!f) {
      f = await getSvd(weight, shape);
      this.factors.set(name, f);
    }
    model.setWeight(name, lowRankApprox({ weight, shape, ratio, mode: this.config.lora_svd_init_type, seed: this.config.seed, factors: f, name }));
  }

  /** Re-applies the saved decisions (resuming) and restores the best figures so far. */
  async restore(slots: readonly WeightSlot[], apply: (slot: WeightSlot, ratio: number) => Promise<void>): Promise<void> {
    for (const st of this.state.steps) {
      const key = slotKey({ tower: st.tower_type as WeightSlot['tower'], weight: st.weight_type as WeightSlot['weight'], layer: st.layer_num });
      const slot = slots.find((s) => slotKey(s) === key);
      if (!slot) throw new Error(`'${this.statePath}': step ${st.step} names ${key}, not a slot of this search`);
      this.decided.set(key, st.best_ratio);
      await apply(slot, st.best_ratio);
    }
    const last = this.state.steps.at(-1);
    if (last) this.best = { value: objectiveValue(this.config.objective, last.figures), figures: last.figures };
  }

  /**
   * Records a step: the candidate with the lowest objective is kept if it strictly improves on
   * the best so far (the first step's ratio-0 candidate, the unpruned model, is the start);
   * otherwise the slot gets 0. Returns the chosen ratio.
   */
  decide(step: number, slot: WeightSlot, records: CandidateRecord[]): number {
    const value = (r: Readonly<Record<string, unknown>>) => objectiveValue(this.config.objective, r);
    let pick = records[0]!;
    for (const r of records) if (value(r) < value(pick)) pick = r;
    if (!this.best) {
      const zero = records.find((r) => r.ratio === 0);
      if (zero) this.best = { value: value(zero), figures: figuresOf(zero) };
    }
    const improves = !this.best || value(pick) < this.best.value;
    const ratio = improves && pick.ratio !== 0 ? pick.ratio : 0;
    if (improves) this.best = { value: value(pick), figures: figuresOf(pick) };
    this.state.steps.push({ step, tower_type: slot.tower, weight_type: slot.weight, layer_num: slot.layer, best_ratio: ratio, figures: this.best!.figures });
    this.decided.set(slotKey(slot), ratio);
    return ratio;
  }

  /** Saves the outputs and the state after a step, atomically. */
  save(): void {
    writeSearchOutputs(this.config, this.state);
    writeFileAtomic(this.statePath, JSON.stringify(this.state));
  }

  /** The chosen settings, one per slot in search order, ratio 0 included; writes the outputs and config_best.json. */
  finish(slots: readonly WeightSlot[]): LowRankSetting[] {
    const lora_settings = slots.map((s) => [s.tower, s.weight, s.layer, this.decided.get(slotKey(s)) ?? 0] as LowRankSetting);
    writeSearchOutputs(this.config, this.state);
    writeFileAtomic(join(this.config.out, 'config_best.json'), JSON.stringify({ ...this.config.official, split: 'test', lora_settings }, null, 2) + '\n');
    return lora_settings;
  }

  /** `setar eval` with the chosen settings when the config names test data that exists; never before the search ends. */
  async finalEvaluation(lora_settings: readonly LowRankSetting[]): Promise<EvalResult | null> {
    const config = this.config;
    if (!config.test) return null;
    const testRoot = config.test.id.kind === 'benchmark' ? join(config.test.id.dataRoot, config.official.id_dataset as string, 'test') : config.test.id.root;
    if (!existsSync(testRoot)) {
      this.log(`no test data at '${testRoot}': skipping the final evaluation`);
      return null;
    }
    this.hooks.onPhase?.('final-eval');
    this.log('final evaluation on the test data with the chosen settings');
    const evalConfig = resolveEvalConfig(null, {
      model: config.model, clipCkpt: config.clip_ckpt, locoopCkpt: config.locoop_ckpt,
      ...(config.test.id.kind === 'folder' ? { id: `${config.test.id.name}=${config.test.id.root}`, ood: config.test.ood.map((o) => `${o.name}=${o.root}`) } : { benchmark: config.test.id.benchmark, dataRoot: config.test.id.dataRoot }),
      labels: config.test.id.kind === 'folder' ? config.labels : undefined, scorers: config.scorers, temperature: config.temperature, recallLevel: config.recall_level, split: 'test', loraSettings: lora_settings,
      loraSvdInitType: config.lora_svd_init_type, batchSize: config.batch_size, seed: config.seed, template: config.template, strict: config.strict,
      out: config.out, workers: config.workers, threads: config.threads, device: config.device,
    });
    return runEval(evalConfig, { log: this.hooks.log });
  }
}
