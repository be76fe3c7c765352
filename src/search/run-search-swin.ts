import { swinWeightName } from '../lowrank/settings.js';
import { swinPreprocess } from '../models/registry.js';
import { SwinV2Model } from '../models/swinv2/model.js';
import type { Tensor } from '../tensor.js';
import type { SearchConfig } from './config.js';
import { ObjectiveAccumulator, objectiveColumn, objectiveValue, type CandidateFigures } from './objective.js';
import { slotLabel, swinSearchSlots, type SearchSlot } from './orders.js';
import { SearchRun, type CandidateRecord, type SearchHooks, type SearchResult, type SearchStats } from './run-search.js';

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
  const run = SearchRun.open(config, hooks);
  const { id, labels, loader } = run;
  const log = (line: string) => run.log(line);

  const model = await SwinV2Model.load(config.model, { threads: config.threads, clipCkpt: config.clip_ckpt });
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
    const preprocess = swinPreprocess(model.config);
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
    const setRatio = (s: SearchSlot, ratio: number) => run.setRatio(model, swinWeightName([s.tower, s.weight, s.layer, 0], depths), ratio);
    await run.restore(slots, setRatio);

    hooks.onPhase?.('search');
    for (let step = run.state.steps.length; step < slots.length; step++) {
      const slot = slots[step]!;
      hooks.onStepStart?.(step, slots.length, slotLabel(slot));
      let done = 0;
      const records: CandidateRecord[] = [];
      for (const ratio of config.candi_ratios) {
        let figures: CandidateFigures;
        if (config.cache && ratio === 0 && run.best) {
          figures = run.best.figures;
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
      run.state.candidates.push(...records);
      const ratio = run.decide(step, slot, records);
      if (ratio > 0) await setRatio(slot, ratio);
      run.save();
      log(`step ${step} ${slotLabel(slot)}: ratio ${ratio} (${objectiveColumn(config.objective)} ${objectiveValue(config.objective, run.best!.figures)})`);
      hooks.onStepEnd?.(step);
    }

    // One entry per slot, in search order, ratio 0 included; layers as [stage, block].
    const lora_settings = run.finish(slots);
    log(`search done: ${run.state.steps.length} steps; ${stats.candidatesEvaluated} candidates evaluated, ${stats.candidatesFromCache} from cache; block evaluations ${stats.visionLayerEvals}`);
    await model.dispose();
    const evaluation = await run.finalEvaluation(lora_settings);
    return { lora_settings, steps: run.state.steps, candidates: run.state.candidates, stats, resumedFromStep: run.resumedFromStep, evaluation };
  } finally {
    await model.dispose().catch(() => undefined);
  }
}
