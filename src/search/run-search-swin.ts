import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadIdDataset } from '../data/datasets.js';
import { loadImageBatches } from '../data/loader.js';
import { resolveEvalConfig } from '../eval/config.js';
import { runEval, type EvalResult } from '../eval/run-eval.js';
import { writeFileAtomic } from '../io/atomic.js';
import { lowRankApprox } from '../lowrank/lowrank.js';
import { swinWeightName, type LoraSetting } from '../lowrank/settings.js';
import { getSvd } from '../lowrank/svd-cache.js';
import { SwinV2Model } from '../models/swinv2/model.js';
import type { Tensor } from '../tensor.js';
import type { SearchConfig } from './config.js';
import { ObjectiveAccumulator, objectiveColumn, objectiveValue, type CandidateFigures } from './objective.js';
import { slotLabel, swinSearchSlots, type SearchSlot } from './orders.js';
import {
  figuresOf, fingerprint, slotKey, STATE_FILE, writeSearchOutputs,
  type CandidateRecord, type SearchHooks, type SearchResult, type SearchState, type SearchStats,
} from './run-search.js';

/** ImageNet normalisation of Swin V2's evaluation preprocessing (SPEC §1). */
const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

/**
 * Training-free SeTAR on a Swin V2 classifier (searcher `visual_only_swin`, SPEC §6): `[stage,
 * block]` slots from the last stage and block down, objective = the LoCoOp loss (SPEC §5) of the
 * classifier's logits and SeTAR's local logits, no logit scale. Labels are the classifier's
 * outputs: class folder i is output i.
 *
 * Caching is simpler than CLIP's: the validation images are decoded and preprocessed once and
 * kept as pixels, and every candidate runs the whole classifier on them (no hidden-state cache).
 * With caching on, ratio 0 after the first decision — the best model so far — is not
 * recomputed; `cache: false` recomputes it too.
 */
export async function runSwinSearch(config: SearchConfig, hooks: SearchHooks = {}): Promise<SearchResult> {
  mkdirSync(config.out, { recursive: true });
  const log = (line: string) => {
    appendFileSync(join(config.out, 'search.log'), `${new Date().toISOString()} ${line}\n`);
    hooks.log?.(line);
  };
  const loader = hooks.loader ?? loadImageBatches;

  const { dataset: id, labels } = loadIdDataset(config.id, config.split, config.labels);
  if (config.locoop_top_k > labels.length) {
    throw new Error(`locoop_top_k ${config.locoop_top_k} exceeds the number of classes (${labels.length}) of ${id.name}; it must be in [1, ${labels.length}]`);
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
    log(`resuming after step ${state.steps.length - 1} (${state.steps.length} steps done)`);
  }
  const resumedFromStep = state.steps.length;

  const model = await SwinV2Model.load(config.model, { threads: config.threads });
  const stats: SearchStats = { visionLayerEvals: 0, textLayerEvals: 0, candidatesEvaluated: 0, candidatesFromCache: 0 };
  try {
    if (model.numLabels !== labels.length) {
      throw new Error(`the ID data ${id.name} has ${labels.length} classes but the Swin V2 classifier '${config.model}' has ${model.numLabels} outputs; class folder i must be classifier output i, so the counts must match`);
    }
    const depths = model.config.depths;
    const blocks = depths.reduce((a, b) => a + b, 0);
    hooks.onPhase?.('load');

    // Pixels of every validation image, preprocessed once: resize the shorter side to
    // floor(size / 0.9), centre-crop size, ImageNet mean/std.
    const [height, width] = model.config.image_size;
    if (height !== width) throw new Error(`Swin V2 model '${config.model}': image_size ${height}x${width} is not square; the search's preprocessing needs a square crop`);
    const preprocess = { resizeTo: Math.floor(height / 0.9), cropSize: height, mean: IMAGENET_MEAN, std: IMAGENET_STD };
    const batches: { pixels: Tensor<'float32'>; labels: Int32Array }[] = [];
    let count = 0;
    for await (const b of loader(id.files, { batchSize: config.batch_size, preprocess, workers: config.workers, strict: config.strict, onSkip: (s) => log(`skipped ${s.file}: ${s.reason}`) })) {
      batches.push({ pixels: b.pixelValues, labels: Int32Array.from(b.indices, (i) => id.labels![i]!) });
      count += b.indices.length;
    }
    if (count === 0) throw new Error(`none of the ${id.files.length} validation images of ${id.name} could be read`);
    log(`validation: ${count} images of ${labels.length} classes from ${id.name}; ${config.searcher}, ratios ${config.candi_ratios.join(', ')}, ${config.weight_type}, cache ${config.cache ? 'on (pixels)' : 'off'}`);

    /** The objective of the model as it stands: the classifier over every cached batch. */
    const measure = async (): Promise<CandidateFigures> => {
      const acc = new ObjectiveAccumulator({
        objective: config.objective, topK: config.locoop_top_k, lambda: config.locoop_lambda, usePredLabel: config.use_pred_label,
        temperature: config.temperature, recallLevel: config.recall_level,
      });
      for (const b of batches) {
        const { logits, logits_local } = await model.classify(b.pixels);
        acc.add(logits, logits_local, b.labels);
      }
      stats.visionLayerEvals += blocks;
      return acc.result();
    };

    const slots = swinSearchSlots(config.weight_type, depths);
    const decided = new Map<string, number>();
    const factors = new Map<string, Awaited<ReturnType<typeof getSvd>>>();
    const setRatio = async (s: SearchSlot, ratio: number) => {
      const name = swinWeightName([s.tower, s.weight, s.layer, 0], depths);
      if (ratio === 0) {
        model.resetWeight(name);
        return;
      }
      const weight = model.getOriginalWeight(name);
      const shape = model.weightShape(name) as [number, number];
      let f = factors.get(name);
      if (!f) {
        f = await getSvd(weight, shape);
        factors.set(name, f);
      }
      model.setWeight(name, lowRankApprox({ weight, shape, ratio, mode: config.lora_svd_init_type, seed: config.seed, factors: f, name }));
    };
    for (const st of state.steps) {
      const key = slotKey({ tower: st.tower_type as SearchSlot['tower'], weight: st.weight_type as SearchSlot['weight'], layer: st.layer_num });
      const slot = slots.find((s) => slotKey(s) === key);
      if (!slot) throw new Error(`'${statePath}': step ${st.step} names ${key}, not a slot of this search`);
      decided.set(key, st.best_ratio);
      await setRatio(slot, st.best_ratio);
    }
    let best: { value: number; figures: CandidateFigures } | null = state.steps.length
      ? { value: objectiveValue(config.objective, state.steps.at(-1)!.figures), figures: state.steps.at(-1)!.figures }
      : null;

    const decide = (step: number, slot: SearchSlot, records: CandidateRecord[]): number => {
      let pick = records[0]!;
      for (const r of records) if (objectiveValue(config.objective, r) < objectiveValue(config.objective, pick)) pick = r;
      if (!best) {
        const zero = records.find((r) => r.ratio === 0);
        if (zero) best = { value: objectiveValue(config.objective, zero), figures: figuresOf(zero) };
      }
      const improves = !best || objectiveValue(config.objective, pick) < best.value;
      const ratio = improves && pick.ratio !== 0 ? pick.ratio : 0;
      if (improves) best = { value: objectiveValue(config.objective, pick), figures: figuresOf(pick) };
      state.steps.push({ step, tower_type: slot.tower, weight_type: slot.weight, layer_num: slot.layer, best_ratio: ratio, figures: best!.figures });
      return ratio;
    };

    hooks.onPhase?.('search');
    for (let step = state.steps.length; step < slots.length; step++) {
      const slot = slots[step]!;
      hooks.onStepStart?.(step, slots.length, slotLabel(slot));
      let done = 0;
      const records: CandidateRecord[] = [];
      for (const ratio of config.candi_ratios) {
        let figures: CandidateFigures;
        if (config.cache && ratio === 0 && best) {
          figures = best.figures;
          stats.candidatesFromCache++;
        } else {
          await setRatio(slot, ratio);
          figures = await measure();
          stats.candidatesEvaluated++;
        }
        records.push({ step, tower_type: slot.tower, weight_type: slot.weight, layer_num: slot.layer, ratio, ...figures });
        hooks.onCandidate?.(++done, config.candi_ratios.length);
      }
      await setRatio(slot, 0);
      state.candidates.push(...records);
      const ratio = decide(step, slot, records);
      decided.set(slotKey(slot), ratio);
      if (ratio > 0) await setRatio(slot, ratio);
      writeSearchOutputs(config, state);
      writeFileAtomic(statePath, JSON.stringify(state));
      log(`step ${step} ${slotLabel(slot)}: ratio ${ratio} (${objectiveColumn(config.objective)} ${objectiveValue(config.objective, best!.figures)})`);
      hooks.onStepEnd?.(step);
    }

    // One entry per slot, in search order, ratio 0 included; layers as [stage, block].
    const lora_settings: LoraSetting[] = slots.map((s) => [s.tower, s.weight, s.layer, decided.get(slotKey(s)) ?? 0] as LoraSetting);
    writeSearchOutputs(config, state);
    writeFileAtomic(join(config.out, 'config_best.json'), JSON.stringify({ ...config.official, split: 'test', lora_settings }, null, 2) + '\n');
    log(`search done: ${state.steps.length} steps; ${stats.candidatesEvaluated} candidates evaluated, ${stats.candidatesFromCache} from cache; block evaluations ${stats.visionLayerEvals}`);

    await model.dispose();
    let evaluation: EvalResult | null = null;
    if (config.test) {
      const testRoot = config.test.id.kind === 'benchmark' ? join(config.test.id.dataRoot, config.official.id_dataset as string, 'test') : config.test.id.root;
      if (existsSync(testRoot)) {
        hooks.onPhase?.('final-eval');
        log(`final evaluation on the test data with the chosen settings`);
        const evalConfig = resolveEvalConfig(null, {
          model: config.model,
          ...(config.test.id.kind === 'folder' ? { id: `${config.test.id.name}=${config.test.id.root}`, ood: config.test.ood.map((o) => `${o.name}=${o.root}`) } : { benchmark: config.test.id.benchmark, dataRoot: config.test.id.dataRoot }),
          labels: config.test.id.kind === 'folder' ? config.labels : undefined, scorers: config.scorers, temperature: config.temperature, recallLevel: config.recall_level, split: 'test', loraSettings: lora_settings,
          pruneMode: config.lora_svd_init_type, batchSize: config.batch_size, seed: config.seed, template: config.template, strict: config.strict,
          out: config.out, workers: config.workers, threads: config.threads,
        });
        evaluation = await runEval(evalConfig, { log: hooks.log });
      } else {
        log(`no test data at '${testRoot}': skipping the final evaluation`);
      }
    }
    return { lora_settings, steps: state.steps, candidates: state.candidates, stats, resumedFromStep, evaluation };
  } finally {
    await model.dispose().catch(() => undefined);
  }
}
