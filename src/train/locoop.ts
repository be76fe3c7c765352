import { createHash } from 'node:crypto';
import { appendFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { locoopLoadOptions } from '../config/run-config.js';
import { loadIdDataset } from '../data/datasets.js';
import { resolveEvalConfig } from '../eval/config.js';
import { runEval, type EvalResult } from '../eval/run-eval.js';
import { decodeImage, type DecodedImage } from '../image/decode.js';
import { openOutputFolder } from '../io/atomic.js';
import { prepareOutDir } from '../io/out-dir.js';
import { PyFloat, type SaveValue } from '../io/torch-save.js';
import type { FamilyLoadOptions } from '../models/family.js';
import { loadModel } from '../models/registry.js';
import { defaultTopK } from '../ood/locoop.js';
import { writeTrainingReport } from '../report/training-report.js';
import { SeededRng } from '../rng.js';
import { Session } from '../runtime/session.js';
import { tensor, type Tensor } from '../tensor.js';
import { trainTransform } from './augment.js';
import { EpochCheckpoint } from './checkpoint.js';
import type { AdapterPlan, FinetuneConfig } from './config.js';
import { Sgd } from './optimizer.js';
import { dasslEpochLr } from './schedule.js';
import { drawShots } from './shots.js';
import { writeTrainLogs, type FinetuneHooks, type FinetuneResult, type TrainLogRow } from './train-log.js';

/** The plan of `setar finetune --method locoop`. */
export type ContextPlan = Extract<AdapterPlan, { kind: 'context' }>;

function fingerprint(c: FinetuneConfig): string {
  const { out: _o, threads: _t, test: _x, scorers: _s, official: _f, ...rest } = c;
  return createHash('sha256').update(JSON.stringify({ method: 'locoop', ...rest })).digest('hex').slice(0, 16);
}

/** Dassl's scheduler entry as plain data: the constant warm-up scheduler, its CosineAnnealingLR successor as a state dict (not a pickled object). */
function schedulerState(base: number, epochs: number, plan: ContextPlan, lr: number): SaveValue {
  const cosineSteps = Math.max(0, epochs - plan.warmup_epochs);
  const successor = new Map<string, SaveValue>([
    ['T_max', epochs], ['eta_min', new PyFloat(0)], ['base_lrs', [new PyFloat(base)]], ['last_epoch', cosineSteps], ['_step_count', cosineSteps + 1],
    ['verbose', false], ['_get_lr_called_within_step', false], ['_last_lr', [new PyFloat(lr)]],
  ]);
  return new Map<string, SaveValue>([
    ['successor', successor], ['warmup_epoch', plan.warmup_epochs], ['cons_lr', new PyFloat(plan.warmup_lr)], ['base_lrs', [new PyFloat(base)]],
    ['last_epoch', epochs], ['_step_count', epochs + 1], ['verbose', false], ['_get_lr_called_within_step', false], ['_last_lr', [new PyFloat(lr)]],
  ]);
}

/**
 * LoCoOp training (SPEC §9; `setar finetune --method locoop`): only the prompt context trains;
 * the LoCoOp loss (SPEC §5) runs through CLIP's frozen towers in one ONNX graph per step, which
 * also returns the context's gradient through every text layer. `shots` images per class are
 * drawn with the seed; each epoch shuffles them and, as Dassl's loader, drops a last incomplete
 * batch (when there is at least one full batch); random-resized-crop (`crop_scale`) and flips;
 * SGD with momentum and weight decay, the learning rate set per epoch by Dassl's schedule
 * ({@link dasslEpochLr}). After every epoch `OUT/checkpoint/` holds the context and momentum (a
 * re-run resumes from it, identically); at the end the context goes to Dassl's
 * `OUT/prompt_learner/model.pth.tar-<epochs>` and `OUT/ctx.safetensors`, and the LoCoOp model is
 * evaluated when test data is configured.
 */
export async function runLocoopTraining(config: FinetuneConfig, plan: ContextPlan, hooks: FinetuneHooks = {}): Promise<FinetuneResult> {
  prepareOutDir(config.out);
  const orphans = openOutputFolder(config.out); // a killed run's temporary files
  const log = (line: string) => {
    appendFileSync(join(config.out, 'finetune.log'), `${new Date().toISOString()} ${line}\n`);
    hooks.log?.(line);
  };
  for (const f of orphans) log(`removed ${f}, a temporary file left by an interrupted run`);

  const { dataset: data, labels } = loadIdDataset(config.id, config.split, config.labels);
  const classes = labels.length;
  // K: given, else SPEC §9's share of the classes (200 of ImageNet's 1,000)
  const topK = config.locoop_top_k ?? defaultTopK(plan.top_k_share, classes);
  if (config.locoop_top_k === null) {
    const note = `locoop_top_k ${topK}: round(${plan.top_k_share} × ${classes} classes), LoCoOp's share of the classes (200 of ImageNet's 1,000; --locoop-top-k sets it)`;
    log(note);
    hooks.notice?.(note);
  }
  if (topK > classes) throw new RangeError(`locoop_top_k ${topK} exceeds the number of classes (${classes}); it must be in [1, ${classes}]`);

  const load: FamilyLoadOptions = config.locoop_ckpt
    ? locoopLoadOptions(config)
    : { locoopInit: { phrase: plan.ctx_init, seed: config.seed }, ...(plan.n_ctx !== null ? { nCtx: plan.n_ctx, nCtxName: plan.n_ctx_name ?? 'n_ctx' } : {}) };
  const model = await loadModel(config.model, { threads: config.threads, ...load });
  let session: Session | null = null;
  try {
    const pc = model.promptContext;
    if (!pc) throw new Error(`the ${model.family.displayName} model in '${config.model}' carries no prompt context to train`);
    model.checkLabels(labels);

    // K shots per class, drawn first from the seed alone (a resumed run draws the same ones).
    const rng = new SeededRng(config.seed);
    const { indices, short } = drawShots(data.labels!, classes, plan.shots, rng);
    for (const s of short) log(`class ${labels[s.label]} has ${s.images} images, fewer than --shots ${plan.shots}: all of them are used`);
    const images: DecodedImage[] = [];
    const imageLabels: number[] = [];
    for (const i of indices) {
      try {
        images.push(await decodeImage(data.files[i]!));
        imageLabels.push(data.labels![i]!);
      } catch (e) {
        log(`skipped ${data.files[i]}: ${(e as Error).message}`);
      }
    }
    if (images.length === 0) throw new Error(`none of the ${indices.length} training images drawn from ${data.name} could be read`);

    const lossOptions = { topK, lambda: config.locoop_lambda, usePredLabel: config.use_pred_label };
    const { graph, feeds: fixedFeeds, patchesPerImage } = await pc.trainSetup(lossOptions, { labels, template: config.template });
    session = await Session.create(graph.bytes, 'locoop_train', { memoryArena: true, threads: config.threads });
    const weightFeeds: Record<string, Tensor> = {};
    for (const name of session.inputNames) if (model.isSwappable(name)) weightFeeds[name] = model.matrix(name);

    const shape = [pc.n, pc.width];
    const ctx = pc.value();
    const sgd = new Sgd([{ name: 'ctx', value: ctx, decay: true }], { momentum: config.momentum, weightDecay: config.weight_decay });
    const n = images.length;
    const epochs = config.num_train_epochs;
    // Dassl's train loader drops the last incomplete batch when there is a full one
    const batchesPerEpoch = n >= config.batch_size ? Math.floor(n / config.batch_size) : 1;
    const totalSteps = batchesPerEpoch * epochs;
    const lrOf = (epoch: number) => dasslEpochLr(config.learning_rate, epoch, epochs, plan.warmup_epochs, plan.warmup_lr);
    log(`LoCoOp: n_ctx ${pc.n} (context from ${pc.source}); ${n} images (${plan.shots} per class) of ${classes} classes; locoop_top_k ${topK}, λ ${config.locoop_lambda}; ${epochs} epochs of ${batchesPerEpoch} steps (batch ${config.batch_size}), lr ${config.learning_rate} after ${plan.warmup_epochs} warm-up epoch(s) at ${plan.warmup_lr}`);

    // Resume from the last epoch's checkpoint.
    const checkpoint = new EpochCheckpoint(config.out, fingerprint(config), 'context');
    const start = checkpoint.start((f) => {
      ctx.set(f.readFloat32('ctx'));
      if (f.entries.has('momentum:ctx')) sgd.loadState(new Map([['ctx', f.readFloat32('momentum:ctx')]]));
    }, rng, log);
    const trainLog = start.log;
    let step = start.step;
    const startEpoch = start.epoch;
    const saveCheckpoint = (epoch: number) => {
      const m = sgd.state().get('ctx');
      checkpoint.save({ epoch, step, rng: rng.state, log: trainLog }, { ctx: { dtype: 'F32', shape, data: ctx }, ...(m ? { 'momentum:ctx': { dtype: 'F32', shape, data: m } } : {}) });
    };

    const { size, mean, std } = model.augment;
    const perImage = 3 * size * size;
    for (let epoch = startEpoch; epoch < epochs; epoch++) {
      const lr = lrOf(epoch);
      const order = rng.permutation(n);
      for (let b = 0; b < batchesPerEpoch; b++) {
        const idx = order.slice(b * config.batch_size, (b + 1) * config.batch_size);
        const px = new Float32Array(idx.length * perImage);
        const onehot = new Float32Array(idx.length * classes);
        idx.forEach((i, r) => {
          px.set(trainTransform(images[i]!, size, () => rng.next(), { scale: plan.crop_scale, mean, std }), r * perImage);
          onehot[r * classes + imageLabels[i]!] = 1;
        });
        const out = await session.run({
          ...weightFeeds, ...fixedFeeds,
          pixel_values: tensor('float32', px, [idx.length, 3, size, size], 'pixel_values'),
          labels_onehot: tensor('float32', onehot, [idx.length, classes], 'labels_onehot'),
          ctx: tensor('float32', ctx, shape, 'ctx'),
        });
        const scalar = (k: string) => (out[k]!.data as Float32Array)[0]!;
        const loss = scalar('locoop_loss');
        if (!Number.isFinite(loss)) {
          throw checkpoint.nonFiniteLoss(loss, step, epoch);
        }
        sgd.step(new Map([['ctx', out[graph.gradients.get('ctx')!]!.data as Float32Array]]), lr);
        const row: TrainLogRow = {
          step, epoch, lr, locoop_loss: loss, loss_id: scalar('loss_id'), loss_ood: scalar('loss_ood'),
          acc: (scalar('n_correct') / idx.length) * 100, ood_patch_percent: (scalar('n_ood') / (idx.length * patchesPerImage)) * 100,
        };
        trainLog.push(row);
        hooks.onStep?.(step, totalSteps, row);
        step++;
      }
      writeTrainLogs(config.out, trainLog);
      saveCheckpoint(epoch + 1);
      log(`epoch ${epoch} done (lr ${lr}): step ${step}/${totalSteps}, locoop_loss ${trainLog.at(-1)?.locoop_loss}`);
    }
    writeTrainLogs(config.out, trainLog);

    // The trained context, in Dassl's layout and as safetensors.
    pc.set(ctx);
    const lastLr = lrOf(Math.max(0, epochs - 1));
    const context = pc.save(config.out, {
      epoch: epochs, labels, template: config.template,
      optimizer: { lr: lastLr, momentum: config.momentum, weightDecay: config.weight_decay, initialLr: config.learning_rate, momentumBuffer: sgd.state().get('ctx') },
      scheduler: schedulerState(config.learning_rate, epochs, plan, lastLr),
    });
    writeTrainingReport(join(config.out, 'report_finetune.html'), { title: `setar finetune --method locoop — ${data.name}`, rows: trainLog, config: { ...config, labels: undefined, official: undefined } as unknown as Record<string, unknown> });
    log(`saved the LoCoOp context to ${context.checkpoint} and ${context.safetensors}`);
    await session.release();
    session = null;
    await model.dispose();

    let evaluation: EvalResult | null = null;
    if (config.test) {
      const root = config.test.id.kind === 'benchmark' ? null : config.test.id.root;
      const presetTest = config.test.id.kind === 'benchmark' ? join(config.test.id.dataRoot, data.name, 'test') : null;
      if ((root && existsSync(root)) || (presetTest && existsSync(presetTest))) {
        const ev = resolveEvalConfig(null, {
          model: config.model, locoopCkpt: context.checkpoint,
          ...(config.test.id.kind === 'folder' ? { id: `${config.test.id.name}=${config.test.id.root}`, ood: config.test.ood.map((o) => `${o.name}=${o.root}`), labels: config.labels } : { benchmark: config.test.id.benchmark, dataRoot: config.test.id.dataRoot }),
          scorers: config.scorers, temperature: config.temperature, recallLevel: config.recall_level, split: 'test', template: config.template, out: config.out, threads: config.threads,
        });
        evaluation = await runEval(ev, { log: hooks.log });
      } else {
        log('no test data found: skipping the final evaluation');
      }
    }
    return { steps: step, resumedFromEpoch: startEpoch, log: trainLog, modelDir: config.model, context, locoopTopK: topK, evaluation };
  } finally {
    await session?.release();
    await model.dispose().catch(() => undefined);
  }
}
