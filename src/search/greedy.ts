import type { WeightSlot } from '../lowrank/settings.js';
import type { FamilyModel } from '../models/family.js';
import { loadModel } from '../models/registry.js';
import { locoopLoadOptions } from '../config/run-config.js';
import { openDevice } from '../config/device.js';
import { TransferCounter } from '../runtime/transfers.js';
import type { Tensor } from '../tensor.js';
import type { SearchConfig } from './config.js';
import { Evaluator } from './evaluator.js';
import { objectiveColumn, objectiveValue, type CandidateFigures } from './objective.js';
import { searcherRow, slotLabel, towerSlots } from './searchers.js';
import { SearchRun, type CandidateRecord, type SearchHooks, type SearchResult } from './search-run.js';

/**
 * Training-free SeTAR (SPEC §6) on any model family: decides, slot by slot in the searcher's
 * order, which ratio of each weight's smallest singular components to drop, minimising the
 * objective (SPEC §5) over the ID validation images. A candidate keeps its ratio only if it
 * strictly improves on the best so far; otherwise the slot gets 0. `layer_exhaustive` instead
 * tries every undecided slot in each round and fixes the single best one.
 *
 * Each candidate costs only what it changes (see {@link Evaluator}); each weight's SVD is
 * computed once ever (disk cache), and ratio 0 — the best so far — is never recomputed.
 * `cache: false` recomputes every tower from the images for every candidate, like the reference.
 *
 * On a device other than the CPU the bytes each candidate moves between host and device are
 * logged and recorded (`bytes_up`, `bytes_down` in search_results.json).
 */
export async function runSearch(given: SearchConfig, hooks: SearchHooks = {}): Promise<SearchResult> {
  const run = SearchRun.open(given, hooks);
  const config = run.config;
  const { id, labels, loader } = run;
  const log = (line: string) => run.log(line);
  const row = searcherRow(config.searcher);

  const device = await openDevice(config, (line) => {
    log(line);
    hooks.notice?.(line);
  });
  // bytes moved are counted and written only where something moves (not on the CPU, whose outputs stay as they were)
  const transfers = device.name === 'cpu' ? null : new TransferCounter();
  if (transfers) log(`device: ${device.name} (${device.executionProviders.join(', ')})`);
  const model = await loadModel(config.model, { threads: config.threads, clipCkpt: config.clip_ckpt, ...locoopLoadOptions(config), device, ...(transfers ? { transfers } : {}) });
  try {
    hooks.onPhase?.('load');
    if (model.promptContext) log(`LoCoOp context: ${model.promptContext.source} (n_ctx ${model.promptContext.n}), fixed during the search`);
    const subject = await model.searchSubject(labels, { template: config.template });
    try {
      // The validation images, preprocessed once, in dataset order.
      async function* batches(): AsyncGenerator<{ pixels: Tensor<'float32'>; labels: Int32Array }> {
        for await (const b of loader(id.files, { batchSize: config.batch_size, preprocess: model.preprocess, workers: config.workers, strict: config.strict, onSkip: (s) => log(`skipped ${s.file}: ${s.reason}`) })) {
          yield { pixels: b.pixelValues, labels: Int32Array.from(b.indices, (i) => id.labels![i]!) };
        }
      }
      const objective = {
        objective: config.objective, topK: config.locoop_top_k, lambda: config.locoop_lambda, usePredLabel: config.use_pred_label,
        temperature: config.temperature, recallLevel: config.recall_level,
      };
      const evaluator = await Evaluator.create(subject, batches(), objective, config.cache);
      if (evaluator.images === 0) throw new Error(`none of the ${id.files.length} validation images of ${id.name} could be read`);
      const embedded = transfers?.take();
      if (embedded) log(`validation images ${config.cache ? 'embedded' : 'read'}: ${movedText(embedded)}`);
      const { stats } = evaluator;
      log(`validation: ${evaluator.images} images of ${labels.length} classes from ${id.name}; ${config.searcher}, ratios ${config.candi_ratios.join(', ')}, ${config.weight_type}, cache ${config.cache ? 'on' : 'off'}`);

      const bySlot = Object.fromEntries(subject.towers.map((t) => [t.tower, towerSlots(t.tower, config.weight_type, t.layers, t.projection, config.freeze_proj)]));
      const slots = row.order(bySlot);
      const setRatio = (s: WeightSlot, ratio: number) => run.setRatio(model, model.weightName([s.tower, s.weight, s.layer, 0]), ratio);
      await run.restore(slots, setRatio);

      hooks.onPhase?.('search');
      const search = row.loop === 'greedy' ? greedySteps : exhaustiveRounds;
      const moved = { uploaded: 0, downloaded: 0, candidates: 0 };
      try {
        await search({ run, model, evaluator, slots, setRatio, hooks, transfers, moved });
      } finally {
        evaluator.release();
      }

      const lora_settings = run.finish(slots);
      const layerEvals = subject.towers.map((t) => `${t.tower === 'visual' ? 'vision' : 'text'} ${t.tower === 'visual' ? stats.visionLayerEvals : stats.textLayerEvals}`).join(', ');
      log(`search done: ${run.state.steps.length} steps; ${stats.candidatesEvaluated} candidates evaluated, ${stats.candidatesFromCache} from cache; layer evaluations: ${layerEvals}`);
      if (transfers && moved.candidates) log(`bytes moved per evaluated candidate (mean of ${moved.candidates}): ${movedText({ uploaded: moved.uploaded / moved.candidates, downloaded: moved.downloaded / moved.candidates })}`);
      await subject.release();
      await model.dispose();
      const evaluation = await run.finalEvaluation(lora_settings);
      return { lora_settings, steps: run.state.steps, candidates: run.state.candidates, stats, resumedFromStep: run.resumedFromStep, evaluation };
    } finally {
      await subject.release().catch(() => undefined);
    }
  } finally {
    await model.dispose().catch(() => undefined);
  }
}

/** What a search loop works with. */
interface SearchLoop {
  readonly run: SearchRun;
  readonly model: FamilyModel;
  readonly evaluator: Evaluator;
  readonly slots: readonly WeightSlot[];
  readonly setRatio: (s: WeightSlot, ratio: number) => Promise<void>;
  readonly hooks: SearchHooks;
  /** Counts bytes moved between host and device (null on the CPU: nothing moves, nothing is recorded). */
  readonly transfers: TransferCounter | null;
  /** Bytes moved by the candidates evaluated in this run, for the summary. */
  readonly moved: { uploaded: number; downloaded: number; candidates: number };
}

const MIB = 1024 * 1024;

/** `1.23 MiB up, 0.45 MiB down` */
function movedText(t: { readonly uploaded: number; readonly downloaded: number }): string {
  return `${(t.uploaded / MIB).toFixed(2)} MiB up, ${(t.downloaded / MIB).toFixed(2)} MiB down`;
}

/** Runs the candidates of one slot; the slot's weight is left at the checkpoint's value. */
async function evaluateSlot(loop: SearchLoop, slot: WeightSlot, step: number, onDone: () => void): Promise<CandidateRecord[]> {
  const { run, evaluator, setRatio, transfers } = loop;
  transfers?.take();
  await evaluator.beginSlot(slot);
  const setup = transfers?.take();
  if (setup && setup.runs) run.log(`step ${step} ${slotLabel(slot)}: hidden states and other towers: ${movedText(setup)}`);
  const records: CandidateRecord[] = [];
  for (const ratio of run.config.candi_ratios) {
    let figures: CandidateFigures;
    let measured = false;
    if (evaluator.cache && ratio === 0 && run.best) {
      figures = run.best.figures; // the current model: the best so far, already measured
      evaluator.stats.candidatesFromCache++;
    } else {
      await setRatio(slot, ratio);
      figures = await evaluator.measure(slot);
      measured = true;
    }
    const t = transfers?.take();
    const bytes: Record<string, number> = t ? { bytes_up: t.uploaded, bytes_down: t.downloaded } : {};
    if (t && measured) {
      run.log(`step ${step} ${slotLabel(slot)} ratio ${ratio}: ${movedText(t)}`);
      loop.moved.uploaded += t.uploaded;
      loop.moved.downloaded += t.downloaded;
      loop.moved.candidates++;
    }
    records.push({ step, tower_type: slot.tower, weight_type: slot.weight, layer_num: slot.layer, ratio, ...figures, ...bytes });
    onDone();
  }
  await setRatio(slot, 0);
  return records;
}

/** Keeps a decided ratio: the slot's weight, and the evaluator's stale caches. */
async function keep(loop: SearchLoop, slot: WeightSlot, ratio: number): Promise<void> {
  if (ratio === 0) return;
  await loop.setRatio(slot, ratio);
  loop.evaluator.decided(slot);
}

/** The greedy rule (SPEC §6): one slot per step, in order, each with every earlier decision fixed. */
async function greedySteps(loop: SearchLoop): Promise<void> {
  const { run, slots, hooks } = loop;
  const config = run.config;
  for (let step = run.state.steps.length; step < slots.length; step++) {
    const slot = slots[step]!;
    hooks.onStepStart?.(step, slots.length, slotLabel(slot));
    let done = 0;
    const records = await evaluateSlot(loop, slot, step, () => hooks.onCandidate?.(++done, config.candi_ratios.length));
    run.state.candidates.push(...records);
    const ratio = run.decide(step, slot, records);
    await keep(loop, slot, ratio);
    run.save();
    run.log(`step ${step} ${slotLabel(slot)}: ratio ${ratio} (${objectiveColumn(config.objective)} ${objectiveValue(config.objective, run.best!.figures)})`);
    hooks.onStepEnd?.(step);
  }
}

/**
 * `layer_exhaustive` (SPEC §6): each round tries every undecided slot × ratio and fixes the
 * single best; a round that cannot improve ends the search, the rest keeping ratio 0.
 */
async function exhaustiveRounds(loop: SearchLoop): Promise<void> {
  const { run, slots, hooks } = loop;
  const config = run.config;
  let pending = run.state.pending ?? slots.map((_, i) => i);
  for (let step = run.state.steps.length; pending.length > 0; step++) {
    hooks.onStepStart?.(step, slots.length, `round ${step}: ${pending.length} slots`);
    let done = 0;
    const all: { slot: number; records: CandidateRecord[] }[] = [];
    for (const i of pending) all.push({ slot: i, records: await evaluateSlot(loop, slots[i]!, step, () => hooks.onCandidate?.(++done, pending.length * config.candi_ratios.length)) });
    const lowest = (r: CandidateRecord[]) => Math.min(...r.map((x) => objectiveValue(config.objective, x)));
    let best = all[0]!;
    for (const a of all) if (lowest(a.records) < lowest(best.records)) best = a;
    for (const a of all) run.state.candidates.push(...a.records);
    const slot = slots[best.slot]!;
    const ratio = run.decide(step, slot, best.records);
    await keep(loop, slot, ratio);
    pending = ratio > 0 ? pending.filter((i) => i !== best.slot) : [];
    run.state.pending = pending;
    run.save();
    run.log(`round ${step}: ${slotLabel(slot)} ratio ${ratio}`);
    hooks.onStepEnd?.(step);
  }
}
