import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { loadIdDataset } from '../data/datasets.js';
import { loadImageBatches } from '../data/loader.js';
import { resolveEvalConfig } from '../eval/config.js';
import { runEval, type EvalResult } from '../eval/run-eval.js';
import { openOutputFolder, writeFileAtomic } from '../io/atomic.js';
import { lowRankApprox } from '../lowrank/lowrank.js';
import { clipWeightName, type LoraSetting } from '../lowrank/settings.js';
import { getSvd } from '../lowrank/svd-cache.js';
import { ClipLogitsHead } from '../models/clip/logits.js';
import { concatBatch, sliceBatch, type ImageFeatures, type TokenIds } from '../models/clip/model.js';
import { ClipPipeline, fillTemplate } from '../models/clip/pipeline.js';
import type { Tensor } from '../tensor.js';
import type { SearchConfig } from './config.js';
import { ObjectiveAccumulator, objectiveColumn, objectiveValue, type CandidateFigures } from './objective.js';
import { searchSlots, slotLabel, type SearchSlot } from './orders.js';
import { runSwinSearch } from './run-search-swin.js';

/** One evaluated candidate: a row of search_results.json (its figures follow the five keys). */
export type CandidateRecord = {
  step: number;
  tower_type: string;
  weight_type: string;
  /** CLIP: the layer (null for W_p); Swin: [stage, block] */
  layer_num: SearchSlot['layer'];
  ratio: number;
} & Record<string, number | string | null | SearchSlot['layer']>;

/** One decided step: a row of search_best_results.csv (figures are the best so far). */
export interface StepRecord {
  readonly step: number;
  readonly tower_type: string;
  readonly weight_type: string;
  readonly layer_num: SearchSlot['layer'];
  readonly best_ratio: number;
  readonly figures: CandidateFigures;
}

/** Work counters: how many times a layer ran over the whole validation set (or prompt set). */
export interface SearchStats {
  visionLayerEvals: number;
  textLayerEvals: number;
  candidatesEvaluated: number;
  candidatesFromCache: number;
}

/** Progress hooks of {@link runSearch}. */
export interface SearchHooks {
  readonly onStepStart?: (step: number, total: number, label: string) => void;
  readonly onCandidate?: (done: number, total: number) => void;
  readonly onStepEnd?: (step: number) => void;
  readonly onPhase?: (phase: 'load' | 'search' | 'final-eval') => void;
  readonly log?: (line: string) => void;
  /** Replaces the image loader (tests record which files a run reads). */
  readonly loader?: typeof loadImageBatches;
}

/** What {@link runSearch} found. */
export interface SearchResult {
  readonly lora_settings: LoraSetting[];
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
/** Memory the cached search may spend on hidden states entering every layer (ViT-B/16: 7.3 MB per image). */
const HIDDEN_CACHE_BYTES = 2 * 1024 ** 3;

/** Everything that changes the search's decisions, hashed: resuming under other settings is refused. */
export function fingerprint(c: SearchConfig): string {
  const keys = {
    model: c.model, id: c.id, labels: c.labels, split: c.split, searcher: c.searcher, candi_ratios: c.candi_ratios, weight_type: c.weight_type,
    freeze_proj: c.freeze_proj, mode: c.lora_svd_init_type, seed: c.seed, objective: c.objective, lambda: c.locoop_lambda, topK: c.locoop_top_k,
    usePred: c.use_pred_label, temperature: c.temperature, recall: c.recall_level, template: c.template,
  };
  return createHash('sha256').update(JSON.stringify(keys)).digest('hex').slice(0, 16);
}

/** A record's figures without its identifying keys. */
export function figuresOf(r: CandidateRecord): CandidateFigures {
  const { step: _s, tower_type: _t, weight_type: _w, layer_num: _l, ratio: _r, ...figures } = r;
  return figures as unknown as CandidateFigures;
}

export function slotKey(s: SearchSlot): string {
  return `${s.tower}:${s.weight}:${s.layer === null ? 'p' : typeof s.layer === 'number' ? s.layer : s.layer.join('.')}`;
}

/** Writes search_best_results.csv (one row per decided step) and search_results.json (every candidate). */
export function writeSearchOutputs(config: SearchConfig, state: SearchState): void {
  const col = objectiveColumn(config.objective);
  const figureCols = ['locoop_loss', 'loss_id', 'loss_ood', 'acc', 'ood_patch_percent'];
  if (!figureCols.includes(col)) figureCols.splice(0, 0, col);
  const header = ['step', 'tower_type', 'weight_type', 'layer_num', 'best_ratio', ...figureCols.map((c) => (c === col ? `${c}*` : c))];
  const layer = (l: SearchSlot['layer']) => (l === null ? '' : typeof l === 'number' ? l : JSON.stringify(l));
  writeFileAtomic(join(config.out, 'search_best_results.csv'), stringify([header, ...state.steps.map((s) => [
    s.step, s.tower_type, s.weight_type, layer(s.layer_num), s.best_ratio, ...figureCols.map((c) => s.figures[c]),
  ])]));
  writeFileAtomic(join(config.out, 'search_results.json'), JSON.stringify(state.candidates, null, 1) + '\n');
}

/** The model operations a search needs to try and keep low-rank weights (CLIP and Swin models have them). */
export interface EditableModel {
  getOriginalWeight(name: string): Float32Array;
  weightShape(name: string): readonly number[];
  setWeight(name: string, value: Float32Array): void;
  resetWeight(name?: string): void;
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
    readonly config: SearchConfig,
    readonly hooks: SearchHooks,
    readonly id: ReturnType<typeof loadIdDataset>['dataset'],
    readonly labels: string[],
    readonly statePath: string,
    readonly state: SearchState,
  ) {
    this.resumedFromStep = state.steps.length;
  }

  /** Resolves the validation data (never the test split) and loads a saved state of the same settings. */
  static open(config: SearchConfig, hooks: SearchHooks): SearchRun {
    mkdirSync(config.out, { recursive: true });
    openOutputFolder(config.out); // a killed run's orphan temporary files
    const { dataset, labels } = loadIdDataset(config.id, config.split, config.labels);
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

  /** Sets a slot's weight to its low-rank approximation at `ratio` (0: the checkpoint's weight); SVDs come from the cache. */
  async setRatio(model: EditableModel, name: string, ratio: number): Promise<void> {
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
  async restore(slots: readonly SearchSlot[], apply: (slot: SearchSlot, ratio: number) => Promise<void>): Promise<void> {
    for (const st of this.state.steps) {
      const key = slotKey({ tower: st.tower_type as SearchSlot['tower'], weight: st.weight_type as SearchSlot['weight'], layer: st.layer_num });
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
  decide(step: number, slot: SearchSlot, records: CandidateRecord[]): number {
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
  finish(slots: readonly SearchSlot[]): LoraSetting[] {
    const lora_settings = slots.map((s) => [s.tower, s.weight, s.layer, this.decided.get(slotKey(s)) ?? 0] as LoraSetting);
    writeSearchOutputs(this.config, this.state);
    writeFileAtomic(join(this.config.out, 'config_best.json'), JSON.stringify({ ...this.config.official, split: 'test', lora_settings }, null, 2) + '\n');
    return lora_settings;
  }

  /** `setar eval` with the chosen settings when the config names test data that exists; never before the search ends. */
  async finalEvaluation(lora_settings: readonly LoraSetting[]): Promise<EvalResult | null> {
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
      model: config.model,
      ...(config.test.id.kind === 'folder' ? { id: `${config.test.id.name}=${config.test.id.root}`, ood: config.test.ood.map((o) => `${o.name}=${o.root}`) } : { benchmark: config.test.id.benchmark, dataRoot: config.test.id.dataRoot }),
      labels: config.test.id.kind === 'folder' ? config.labels : undefined, scorers: config.scorers, temperature: config.temperature, recallLevel: config.recall_level, split: 'test', loraSettings: lora_settings,
      pruneMode: config.lora_svd_init_type, batchSize: config.batch_size, seed: config.seed, template: config.template, strict: config.strict,
      out: config.out, workers: config.workers, threads: config.threads,
    });
    return runEval(evalConfig, { log: this.hooks.log });
  }
}

/**
 * Training-free SeTAR (SPEC §6): decides, slot by slot in the searcher's order, which ratio of
 * each weight's smallest singular components to drop, minimising the objective (SPEC §5) over
 * the ID validation images. A candidate keeps its ratio only if it strictly improves on the
 * best so far; otherwise the slot gets 0.
 *
 * With caching (the default) each candidate runs only what it changes: the hidden states
 * entering the searched layer are computed once per step, the other tower's features once per
 * change of that tower, each weight's SVD once ever (disk cache), and ratio 0 — the best so
 * far — is never recomputed. `cache: false` recomputes both towers from the images for every
 * candidate, like the reference.
 */
export async function runSearch(config: SearchConfig, hooks: SearchHooks = {}): Promise<SearchResult> {
  if (config.arch === 'swinv2') return runSwinSearch(config, hooks);
  const run = SearchRun.open(config, hooks);
  const { id, labels, loader } = run;
  const log = (line: string) => run.log(line);

  const clip = await ClipPipeline.load(config.model, { threads: config.threads });
  const model = clip.model;
  const stats: SearchStats = { visionLayerEvals: 0, textLayerEvals: 0, candidatesEvaluated: 0, candidatesFromCache: 0 };
  const L = { visual: model.visionLayerCount, text: model.textLayerCount };
  try {
    hooks.onPhase?.('load');
    // Prompts: one padded batch of token ids and each prompt's pooling position.
    const rows = clip.tokenize(labels.map((l) => fillTemplate(config.template, l)));
    const length = Math.max(...rows.map((r) => r.length));
    const ids = new Int32Array(rows.length * length).fill(model.config.text_config.eos_token_id);
    rows.forEach((r, i) => ids.set(r, i * length));
    const tokens: TokenIds = { ids, batch: rows.length, length };
    const positions = model.poolPositions(tokens);

    // Images: embeddings (cached mode) or pixels (no-cache mode) of every validation image.
    const size = model.config.vision_config.image_size;
    const parts: Tensor<'float32'>[] = [];
    const kept: number[] = [];
    for await (const b of loader(id.files, { batchSize: config.batch_size, preprocess: { size }, workers: config.workers, strict: config.strict, onSkip: (s) => log(`skipped ${s.file}: ${s.reason}`) })) {
      parts.push(config.cache ? await model.visionEmbeddings(b.pixelValues) : b.pixelValues);
      kept.push(...b.indices);
    }
    if (kept.length === 0) throw new Error(`none of the ${id.files.length} validation images of ${id.name} could be read`);
    const base = concatBatch(parts); // [N, tokens, D] embeddings, or [N, 3, S, S] pixels
    parts.length = 0;
    const imageLabels = Int32Array.from(kept, (i) => id.labels![i]!);
    const textEmbeddings = await model.textEmbeddings(tokens);
    log(`validation: ${kept.length} images of ${labels.length} classes from ${id.name}; ${config.searcher}, ratios ${config.candi_ratios.join(', ')}, ${config.weight_type}, cache ${config.cache ? 'on' : 'off'}`);

    const head = await ClipLogitsHead.create(await model.encodeTokenIds(tokens), model.logitScale, { threads: config.threads });
    const objectiveOf = async (img: ImageFeatures, text: Tensor<'float32'>): Promise<CandidateFigures> => {
      head.setText(text);
      const acc = new ObjectiveAccumulator({
        objective: config.objective, topK: config.locoop_top_k, lambda: config.locoop_lambda, usePredLabel: config.use_pred_label,
        temperature: config.temperature, recallLevel: config.recall_level,
      });
      const n = img.image_embeds.dims[0]!;
      const chunk = 32; // bounds the local logits held at once: chunk × patches × classes floats
      for (let s = 0; s < n; s += chunk) {
        const k = Math.min(chunk, n - s);
        acc.add(await head.logits(sliceBatch(img.image_embeds, s, k)), await head.logits(sliceBatch(img.image_embeds_local!, s, k)), imageLabels.subarray(s, s + k));
      }
      return acc.result();
    };

    // Full forward passes (no-cache mode, and the other tower's features in cached mode).
    const imageFeatures = async (): Promise<ImageFeatures> => {
      stats.visionLayerEvals += L.visual;
      return config.cache ? model.visionFrom(base, 0) : model.encodeImages(base);
    };
    const textFeatures = async (): Promise<Tensor<'float32'>> => {
      stats.textLayerEvals += L.text;
      return model.textFrom(textEmbeddings, 0, positions);
    };

    // Decisions so far (all slots decided earlier, re-applied when resuming).
    const slots = searchSlots(config.searcher, config.weight_type, L, config.freeze_proj);
    const nameOf = (s: SearchSlot) => clipWeightName([s.tower, s.weight, s.layer as number | null, 0], L);
    const setRatio = (s: SearchSlot, ratio: number) => run.setRatio(model, nameOf(s), ratio);
    await run.restore(slots, setRatio);

    // Features of each tower under the current decisions, recomputed only when they change.
    const towerCache: { visual?: ImageFeatures; text?: Tensor<'float32'> } = {};
    // Hidden states entering each layer under the current decisions. A decision at layer l
    // changes only the states entering layers above l, so a top-down search computes the layers
    // below once for the whole tower. Kept while they fit HIDDEN_CACHE_BYTES; else recomputed per step.
    const hiddenCache = { visual: new Map<number, Tensor<'float32'>>(), text: new Map<number, Tensor<'float32'>>() };
    const invalidate = (tower: 'visual' | 'text', layer: number | null) => {
      delete towerCache[tower];
      if (layer !== null) for (const k of [...hiddenCache[tower].keys()]) if (k > layer) hiddenCache[tower].delete(k);
    };
    const hiddenAt = async (tower: 'visual' | 'text', from: number): Promise<Tensor<'float32'>> => {
      const first = tower === 'visual' ? base : textEmbeddings;
      const layers = (h: Tensor<'float32'>, a: number, b: number) => (tower === 'visual' ? model.visionLayers(h, a, b) : model.textLayers(h, a, b));
      const count = (k: number) => (tower === 'visual' ? (stats.visionLayerEvals += k) : (stats.textLayerEvals += k));
      const cache = hiddenCache[tower];
      if (first.data.byteLength * L[tower] > HIDDEN_CACHE_BYTES) {
        count(from);
        return layers(first, 0, from);
      }
      cache.set(0, first);
      let start = 0;
      for (const k of cache.keys()) if (k <= from && k > start) start = k;
      let h = cache.get(start)!;
      for (let j = start; j < from; j++) {
        h = await layers(h, j, j + 1);
        count(1);
        cache.set(j + 1, h);
      }
      return h;
    };

    /** Runs the candidates of one slot; the slot's weight is left at the checkpoint's value. */
    const evaluateSlot = async (slot: SearchSlot, step: number, onDone: () => void): Promise<CandidateRecord[]> => {
      const from = (slot.layer as number | null) ?? (slot.tower === 'visual' ? L.visual : L.text) - 1;
      let hidden: Tensor<'float32'> | null = null;
      if (config.cache) {
        // hidden states entering `from` under the current decisions, once for all candidates
        hidden = await hiddenAt(slot.tower, from);
        if (slot.tower === 'visual') towerCache.text ??= await textFeatures();
        else towerCache.visual ??= await imageFeatures();
      }
      const records: CandidateRecord[] = [];
      for (const ratio of config.candi_ratios) {
        let figures: CandidateFigures;
        if (config.cache && ratio === 0 && run.best) {
          figures = run.best.figures; // the current model: the run.best so far, already measured
          stats.candidatesFromCache++;
        } else {
          await setRatio(slot, ratio);
          if (!config.cache) {
            figures = await objectiveOf(await imageFeatures(), await textFeatures());
          } else if (slot.tower === 'visual') {
            stats.visionLayerEvals += L.visual - from;
            figures = await objectiveOf(await model.visionFrom(hidden!, from), towerCache.text!);
          } else {
            stats.textLayerEvals += L.text - from;
            figures = await objectiveOf(towerCache.visual!, await model.textFrom(hidden!, from, positions));
          }
          stats.candidatesEvaluated++;
        }
        records.push({ step, tower_type: slot.tower, weight_type: slot.weight, layer_num: slot.layer, ratio, ...figures });
        onDone();
      }
      await setRatio(slot, 0);
      return records;
    };

    hooks.onPhase?.('search');
    const total = slots.length; // steps (layer_exhaustive: at most this many rounds)
    if (config.searcher !== 'layer_exhaustive') {
      for (let step = run.state.steps.length; step < slots.length; step++) {
        const slot = slots[step]!;
        hooks.onStepStart?.(step, total, slotLabel(slot));
        let done = 0;
        const records = await evaluateSlot(slot, step, () => hooks.onCandidate?.(++done, config.candi_ratios.length));
        run.state.candidates.push(...records);
        const ratio = run.decide(step, slot, records);
        if (ratio > 0) {
          await setRatio(slot, ratio);
          invalidate(slot.tower, slot.layer as number | null);
        }
        run.save();
        log(`step ${step} ${slotLabel(slot)}: ratio ${ratio} (${objectiveColumn(config.objective)} ${objectiveValue(config.objective, run.best!.figures)})`);
        hooks.onStepEnd?.(step);
      }
    } else {
      // Each round tries every undecided slot × ratio and fixes the single run.best (SPEC §6);
      // a round that cannot improve ends the search, the rest keeping ratio 0.
      let pending = run.state.pending ?? slots.map((_, i) => i);
      for (let step = run.state.steps.length; pending.length > 0; step++) {
        hooks.onStepStart?.(step, total, `round ${step}: ${pending.length} slots`);
        let done = 0;
        const all: { slot: number; records: CandidateRecord[] }[] = [];
        for (const i of pending) all.push({ slot: i, records: await evaluateSlot(slots[i]!, step, () => hooks.onCandidate?.(++done, pending.length * config.candi_ratios.length)) });
        let bestSlot = all[0]!;
        for (const a of all) {
          const v = (r: CandidateRecord[]) => Math.min(...r.map((x) => objectiveValue(config.objective, x)));
          if (v(a.records) < v(bestSlot.records)) bestSlot = a;
        }
        for (const a of all) run.state.candidates.push(...a.records);
        const slot = slots[bestSlot.slot]!;
        const ratio = run.decide(step, slot, bestSlot.records);
        if (ratio > 0) {
          await setRatio(slot, ratio);
          invalidate(slot.tower, slot.layer as number | null);
          pending = pending.filter((i) => i !== bestSlot.slot);
        } else {
          pending = [];
        }
        run.state.pending = pending;
        run.save();
        log(`round ${step}: ${slotLabel(slot)} ratio ${ratio}`);
        hooks.onStepEnd?.(step);
      }
    }
    await head.release();

    const lora_settings = run.finish(slots);
    log(`search done: ${run.state.steps.length} steps; ${stats.candidatesEvaluated} candidates evaluated, ${stats.candidatesFromCache} from cache; layer evaluations: vision ${stats.visionLayerEvals}, text ${stats.textLayerEvals}`);
    await clip.dispose();
    const evaluation = await run.finalEvaluation(lora_settings);
    return { lora_settings, steps: run.state.steps, candidates: run.state.candidates, stats, resumedFromStep: run.resumedFromStep, evaluation };
  } finally {
    await clip.dispose().catch(() => undefined);
  }
}
