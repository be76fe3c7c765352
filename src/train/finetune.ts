import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadIdDataset } from '../data/datasets.js';
import { decodeImage, type DecodedImage } from '../image/decode.js';
import { resolveEvalConfig } from '../eval/config.js';
import { runEval, type EvalResult } from '../eval/run-eval.js';
import { openOutputFolder } from '../io/atomic.js';
import type { TensorToWrite } from '../io/safetensors.js';
import type { LoraAdapter } from '../models/common/layers.js';
import { loadModel, resolveFamily } from '../models/registry.js';
import { locoopLoadOptions } from '../config/run-config.js';
import { defaultTopK } from '../ood/locoop.js';
import { runLocoopTraining } from './locoop.js';
import { openDevice, recordedConfig } from '../config/device.js';
import { DeviceMemory } from '../runtime/device-memory.js';
import type { Resident } from '../runtime/device-tensor.js';
import { Session } from '../runtime/session.js';
import { TransferCounter } from '../runtime/transfers.js';
import { tensor } from '../tensor.js';
import { setarAdapters, loraAdapters, mergeAdapter, type Adapter } from './adapters.js';
import { trainTransform } from './augment.js';
import { EpochCheckpoint } from './checkpoint.js';
import type { FinetuneConfig } from './config.js';
import { Sgd, type Param } from './optimizer.js';
import { SeededRng } from '../rng.js';
import { learningRate } from './schedule.js';
import { writeTrainingReport } from '../report/training-report.js';
import { prepareOutDir } from '../io/out-dir.js';
import { writeTrainLogs, type FinetuneHooks, type FinetuneResult, type TrainLogRow } from './train-log.js';

export type { TrainLogRow, FinetuneHooks, FinetuneResult } from './train-log.js';
export { NonFiniteLossError } from './train-log.js';

function fingerprint(c: FinetuneConfig): string {
  // the device changes no decision: a run may resume on another one
  const { out: _o, threads: _t, test: _x, scorers: _s, official: _f, device: _d, deviceOrigin: _do, ...rest } = c;
  return createHash('sha256').update(JSON.stringify(rest)).digest('hex').slice(0, 16);
}

/**
 * SeTAR+FT and plain LoRA (SPEC §7): trains only the adapters' A and B with the LoCoOp loss by
 * SGD with momentum and weight decay under a cosine (or other) schedule, on the ID training
 * images with random-resized-crop and flips. Forward, loss and gradients run as one ONNX graph
 * per step. Saves a checkpoint after every epoch (a re-run resumes from it), then the merged
 * model (base + scaling·B·A) in HF layout under `OUT/model`, a log, a report, and evaluates the
 * merged model when test data is configured. On a LoCoOp model the context stays fixed and is
 * written beside the merged model (`OUT/ctx.safetensors`, `OUT/prompt_learner/…`), unchanged.
 * `--method locoop` (a `context` plan) trains a LoCoOp context instead: {@link runLocoopTraining}.
 *
 * On webgpu the frozen weights and the fixed inputs are uploaded once; each step moves the
 * images, the adapters and the gradients, and train_log gains `bytes_up` / `bytes_down`.
 */
export async function runFinetune(given: FinetuneConfig, hooks: FinetuneHooks = {}): Promise<FinetuneResult> {
  if (given.adapters.kind === 'context') return runLocoopTraining(given, given.adapters, hooks);
  prepareOutDir(given.out);
  const orphans = openOutputFolder(given.out);
  const log = (line: string) => {
    appendFileSync(join(given.out, 'finetune.log'), `${new Date().toISOString()} ${line}\n`);
    hooks.log?.(line);
  };
  for (const f of orphans) log(`removed ${f}, a temporary file left by an interrupted run`);

  const { dataset: data, labels } = loadIdDataset(given.id, given.split, given.labels);
  // K: given, else the family's share of the classes (SPEC §5's 300 of ImageNet's 1,000 for CLIP)
  let config = given as FinetuneConfig & { locoop_top_k: number };
  if (given.locoop_top_k === null) {
    const share = resolveFamily(given.model, locoopLoadOptions(given)).defaults.locoopTopKShare;
    config = { ...given, locoop_top_k: defaultTopK(share, labels.length) };
    const note = `locoop_top_k ${config.locoop_top_k}: round(${share} × ${labels.length} classes), the reference's share of the classes (--locoop-top-k sets it)`;
    log(note);
    hooks.notice?.(note);
  }
  if (config.locoop_top_k > labels.length) throw new RangeError(`locoop_top_k ${config.locoop_top_k} exceeds the number of classes (${labels.length}); it must be in [1, ${labels.length}]`);

  const device = await openDevice(config, (line) => {
    log(line);
    hooks.notice?.(line);
  });
  const transfers = device.name === 'cpu' ? null : new TransferCounter();
  if (transfers) log(`device: ${device.name} (${device.executionProviders.join(', ')})`);
  const sessionOptions = { threads: config.threads, device, ...(transfers ? { transfers } : {}) };
  const model = await loadModel(config.model, { ...sessionOptions, ...locoopLoadOptions(config) });
  try {
    model.checkLabels(labels);
  } catch (e) {
    await model.dispose();
    throw e;
  }
  let session: Session | null = null;
  const memory = new DeviceMemory({ executionProviders: device.executionProviders, transfers: transfers ?? undefined });
  try {
    // Training images, decoded once (augmentation differs per epoch, decoding does not).
    const images: DecodedImage[] = [];
    const imageLabels: number[] = [];
    for (let i = 0; i < data.files.length; i++) {
      try {
        images.push(await decodeImage(data.files[i]!));
        imageLabels.push(data.labels![i]!);
      } catch (e) {
        log(`skipped ${data.files[i]}: ${(e as Error).message}`);
      }
    }
    if (images.length === 0) throw new Error(`none of the ${data.files.length} training images of ${data.name} could be read`);

    // Adapters, with their frozen bases in place of the weights.
    const rng = new SeededRng(config.seed);
    const adapterOptions = config.adapters.kind === 'lora' ? { r: config.adapters.r, alpha: config.adapters.alpha, targetModules: config.adapters.targetModules, rng: () => rng.next() } : null;
    const adapters: Adapter[] = config.adapters.kind === 'setar'
      ? await setarAdapters(model, config.adapters.settings, { mode: config.adapters.mode, seed: config.seed })
      : loraAdapters(model, adapterOptions!);
    for (const a of adapters) model.setWeight(`${a.prefix}.weight`, a.base);
    log(`${config.adapters.kind === 'setar' ? 'SeTAR+FT' : 'LoRA'}: ${adapters.length} adapters (${adapters.map((a) => `${a.prefix} r=${a.rank}`).join(', ')}); ${images.length} images of ${labels.length} classes`);

    const plan = new Map<string, LoraAdapter>(adapters.map((a) => [a.prefix, { rank: a.rank, scaling: a.scaling }]));
    const lossOptions = { topK: config.locoop_top_k, lambda: config.locoop_lambda, usePredLabel: config.use_pred_label };
    const { graph, feeds: fixedFeeds, patchesPerImage } = await model.trainSetup(plan, lossOptions, { labels, template: config.template });
    session = await Session.create(graph.bytes, `${model.family.name}_train`, { memoryArena: true, threads: config.threads, executionProviders: device.executionProviders, transfers: transfers ?? undefined });
    // what every step feeds unchanged: the (frozen) weight matrices and the family's fixed inputs, uploaded once
    const constantFeeds: Record<string, Resident> = {};
    for (const n of session.inputNames) if (model.isSwappable(n)) constantFeeds[n] = await model.residentMatrix(n);
    for (const [k, v] of Object.entries(fixedFeeds)) constantFeeds[k] = await memory.upload(v);
    const once = transfers?.take();
    if (once) log(`set-up moved ${(once.uploaded / 1024 ** 2).toFixed(2)} MiB up, ${(once.downloaded / 1024 ** 2).toFixed(2)} MiB down (the frozen weights and fixed inputs, uploaded once)`);

    // Parameters and optimiser; LoRA matrices are weights, so they decay (PEFT's parameters are not biases or norms).
    const params: Param[] = adapters.flatMap((a) => [
      { name: `${a.prefix}.lora_A`, value: a.A, decay: true },
      { name: `${a.prefix}.lora_B`, value: a.B, decay: true },
    ]);
    const sgd = new Sgd(params, { momentum: config.momentum, weightDecay: config.weight_decay });
    const shapes = new Map<string, readonly number[]>(adapters.flatMap((a) => [[`${a.prefix}.lora_A`, [a.shape[1], a.rank]], [`${a.prefix}.lora_B`, [a.rank, a.shape[0]]]]));

    const n = images.length;
    const batchesPerEpoch = Math.ceil(n / config.batch_size);
    const stepsPerEpoch = Math.max(1, Math.ceil(batchesPerEpoch / config.gradient_accumulation_steps));
    const totalSteps = config.max_train_steps ?? stepsPerEpoch * config.num_train_epochs;
    const epochs = Math.ceil(totalSteps / stepsPerEpoch);

    // Resume from the last epoch's checkpoint.
    const checkpoint = new EpochCheckpoint(config.out, fingerprint(config), 'adapters');
    const start = checkpoint.start((f) => {
      for (const p of params) p.value.set(f.readFloat32(p.name));
      sgd.loadState(new Map(params.filter((p) => f.entries.has(`momentum:${p.name}`)).map((p) => [p.name, f.readFloat32(`momentum:${p.name}`)])));
    }, rng, log);
    const trainLog = start.log;
    let step = start.step;
    const startEpoch = start.epoch;
    const saveCheckpoint = (epoch: number) => {
      const t: Record<string, TensorToWrite> = {};
      for (const p of params) t[p.name] = { dtype: 'F32', shape: shapes.get(p.name)!, data: p.value };
      for (const [k, v] of sgd.state()) t[`momentum:${k}`] = { dtype: 'F32', shape: shapes.get(k)!, data: v };
      checkpoint.save({ epoch, step, rng: rng.state, log: trainLog }, t);
    };
    const writeLogs = () => writeTrainLogs(config.out, trainLog, transfers !== null || trainLog.some((r) => r.bytes_up !== undefined));

    // SPEC §1: the family's random-resized-crop scale, flips and (Swin) colour jitter.
    const { size, ...augment } = model.augment;
    const classes = labels.length;
    const perImage = 3 * size * size;
    for (let epoch = startEpoch; epoch < epochs && step < totalSteps; epoch++) {
      const order = rng.permutation(n);
      for (let b = 0; b < batchesPerEpoch && step < totalSteps; b += config.gradient_accumulation_steps) {
        const grads = new Map(params.map((p) => [p.name, new Float32Array(p.value.length)]));
        const sums = { locoop_loss: 0, loss_id: 0, loss_ood: 0, correct: 0, ood: 0, images: 0, patches: 0 };
        const accum = Math.min(config.gradient_accumulation_steps, batchesPerEpoch - b);
        for (let a = 0; a < accum; a++) {
          const idx = order.slice((b + a) * config.batch_size, (b + a + 1) * config.batch_size);
          const px = new Float32Array(idx.length * perImage);
          const onehot = new Float32Array(idx.length * classes);
          idx.forEach((i, r) => {
            px.set(trainTransform(images[i]!, size, () => rng.next(), augment), r * perImage);
            onehot[r * classes + imageLabels[i]!] = 1;
          });
          const feeds: Record<string, Resident> = {
            ...constantFeeds,
            pixel_values: tensor('float32', px, [idx.length, 3, size, size], 'pixel_values'),
            labels_onehot: tensor('float32', onehot, [idx.length, classes], 'labels_onehot'),
          };
          for (const p of params) feeds[p.name] = tensor('float32', p.value, shapes.get(p.name)!, p.name);
          const out = await session.run(feeds);
          const scalar = (k: string) => (out[k]!.data as Float32Array)[0]!;
          const loss = scalar('locoop_loss');
          if (!Number.isFinite(loss)) {
            throw checkpoint.nonFiniteLoss(loss, step, epoch);
          }
          // gradient accumulation as the reference: each micro-batch's loss divided by the number of micro-batches
          for (const [name, gname] of graph.gradients) {
            const g = out[gname]!.data as Float32Array;
            const acc = grads.get(name)!;
            for (let i = 0; i < g.length; i++) acc[i] = acc[i]! + g[i]! / accum;
          }
          sums.locoop_loss += loss / accum;
          sums.loss_id += scalar('loss_id') / accum;
          sums.loss_ood += scalar('loss_ood') / accum;
          sums.correct += scalar('n_correct');
          sums.ood += scalar('n_ood');
          sums.images += idx.length;
          sums.patches += idx.length * patchesPerImage;
        }
        const lr = learningRate(config.lr_scheduler_type, config.learning_rate, step, totalSteps, config.num_warmup_steps);
        sgd.step(grads, lr);
        const row: TrainLogRow = {
          step, epoch, lr, locoop_loss: sums.locoop_loss, loss_id: sums.loss_id, loss_ood: sums.loss_ood,
          acc: (sums.correct / sums.images) * 100, ood_patch_percent: (sums.ood / sums.patches) * 100,
        };
        const moved = transfers?.take();
        if (moved) Object.assign(row, { bytes_up: moved.uploaded, bytes_down: moved.downloaded });
        trainLog.push(row);
        hooks.onStep?.(step, totalSteps, row);
        step++;
      }
      writeLogs();
      saveCheckpoint(epoch + 1);
      log(`epoch ${epoch} done: step ${step}/${totalSteps}, locoop_loss ${trainLog.at(-1)?.locoop_loss}`);
    }
    writeLogs();

    // The merged model: base + scaling·B·A in place of each adapted weight.
    for (const a of adapters) model.setWeight(`${a.prefix}.weight`, mergeAdapter(a));
    const modelDir = join(config.out, 'model');
    rmSync(modelDir, { recursive: true, force: true });
    model.save(modelDir);
    // a LoCoOp model's context never trains here: written as it came, so OUT is the whole fine-tuned LoCoOp model
    const pc = model.promptContext;
    const context = pc?.save(config.out, { epoch: pc.epoch ?? 0, labels, template: config.template });
    if (context) log(`the LoCoOp context (unchanged) is in ${context.safetensors} and ${context.checkpoint}`);
    writeTrainingReport(join(config.out, 'report_finetune.html'), { title: `setar finetune — ${data.name}`, rows: trainLog, config: { ...recordedConfig(config), labels: undefined, official: undefined } as unknown as Record<string, unknown> });
    log(`saved the merged model to ${modelDir}`);
    await session.release();
    session = null;
    await memory.release();
    await model.dispose();

    let evaluation: EvalResult | null = null;
    if (config.test) {
      const root = config.test.id.kind === 'benchmark' ? null : config.test.id.root;
      const presetTest = config.test.id.kind === 'benchmark' ? join(config.test.id.dataRoot, data.name, 'test') : null;
      if ((root && existsSync(root)) || (presetTest && existsSync(presetTest))) {
        const ev = resolveEvalConfig(null, {
          model: modelDir, locoopCkpt: context?.safetensors,
          ...(config.test.id.kind === 'folder' ? { id: `${config.test.id.name}=${config.test.id.root}`, ood: config.test.ood.map((o) => `${o.name}=${o.root}`), labels: config.labels } : { benchmark: config.test.id.benchmark, dataRoot: config.test.id.dataRoot }),
          scorers: config.scorers, temperature: config.temperature, recallLevel: config.recall_level, split: 'test', template: config.template, out: config.out, threads: config.threads,
          device: config.device,
        });
        evaluation = await runEval(ev, { log: hooks.log });
      } else {
        log('no test data found: skipping the final evaluation');
      }
    }
    return { steps: step, resumedFromEpoch: startEpoch, log: trainLog, modelDir, ...(context ? { context } : {}), locoopTopK: config.locoop_top_k, evaluation };
  } finally {
    await session?.release();
    await memory.release();
    await model.dispose().catch(() => undefined);
  }
}
