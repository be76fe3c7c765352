// `npm run bench:train`: SeTAR+FT / LoRA training speed on a random-weight ViT-B/16 CLIP.
// LoRA (r 32, alpha 16) on every mlp.fc1 of both towers, 100 classes, batch 16: images/s of a
// training step (forward + backward in one ONNX run, plus the SGD update) next to the same
// graph's forward alone, and the peak RSS.
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClipPipeline } from '../src/models/clip/pipeline.js';
import { writeRandomClip, VIT_B16_CONFIG, mulberry32 } from '../src/models/clip/random.js';
import { isSwappable } from '../src/models/clip/weights.js';
import { defaultThreads, Session } from '../src/runtime/session.js';
import { tensor, type Tensor } from '../src/tensor.js';
import { loraAdapters } from '../src/train/adapters.js';
import { clipTrainGraph } from '../src/models/clip/train-graph.js';
import { Sgd } from '../src/train/optimizer.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const repo = resolve(here, here.includes('/dist/') ? '../..' : '..');
const shared = process.env.SETAR_SHARED ?? resolve(repo, '..', 'shared');
const vmHwm = () => Number(/VmHWM:\s+(\d+)/.exec(readFileSync('/proc/self/status', 'utf8'))?.[1]) * 1024;
const MiB = 1024 * 1024;

const dir = mkdtempSync(join(tmpdir(), 'setar-bench-train-'));
try {
  const B = 16;
  const C = 100;
  console.log(`setar training benchmark — ViT-B/16 architecture, random weights, LoRA r 32 / alpha 16 on every mlp.fc1, ${C} classes, batch ${B}, ${defaultThreads()} threads`);
  writeRandomClip(dir, VIT_B16_CONFIG, { seed: 0 });
  for (const f of ['vocab.json', 'merges.txt']) copyFileSync(join(shared, 'fixtures', 'clip-tokenizer', f), join(dir, f));
  const clip = await ClipPipeline.load(dir);
  const model = clip.model;
  const r = mulberry32(1);
  const adapters = loraAdapters(model, { r: 32, alpha: 16, targetModules: ['mlp.fc1'], rng: r });
  const plan = new Map(adapters.map((a) => [a.prefix, { rank: a.rank, scaling: a.scaling }]));
  const lossOpts = { topK: 10, lambda: 0.1, usePredLabel: false };
  let t0 = performance.now();
  const train = clipTrainGraph(model.config, model.source, plan, model.logitScale, lossOpts);
  const fwd = clipTrainGraph(model.config, model.source, plan, model.logitScale, lossOpts, { gradients: false });
  console.log(`graphs built in ${((performance.now() - t0) / 1000).toFixed(1)} s (${adapters.length} adapters, ${train.gradients.size} gradients)`);

  const rows = clip.tokenize(Array.from({ length: C }, (_, i) => `a photo of a class number ${i}`));
  const length = Math.max(...rows.map((x) => x.length));
  const ids = new Int32Array(C * length).fill(49407);
  rows.forEach((x, i) => ids.set(x, i * length));
  const tokens = { ids, batch: C, length };
  const feeds: Record<string, Tensor> = {
    pixel_values: tensor('float32', Float32Array.from({ length: B * 3 * 224 * 224 }, () => r() * 2 - 1), [B, 3, 224, 224]),
    labels_onehot: tensor('float32', Float32Array.from({ length: B * C }, (_, i) => (i % C === Math.floor(i / C) % C ? 1 : 0)), [B, C]),
    text_hidden: await model.textEmbeddings(tokens),
    pool_index: tensor('int64', BigInt64Array.from(model.poolPositions(tokens), (p, i) => BigInt(i * length + p)), [C]),
  };
  const fwdSession = await Session.create(fwd.bytes, 'forward', { memoryArena: true });
  for (const n of fwdSession.inputNames) if (isSwappable(n)) feeds[n] = model.matrix(n);
  for (const a of adapters) {
    feeds[`${a.prefix}.lora_A`] = tensor('float32', a.A, [a.shape[1], a.rank]);
    feeds[`${a.prefix}.lora_B`] = tensor('float32', a.B, [a.rank, a.shape[0]]);
  }
  const params = adapters.flatMap((a) => [{ name: `${a.prefix}.lora_A`, value: a.A, decay: true }, { name: `${a.prefix}.lora_B`, value: a.B, decay: true }]);
  const sgd = new Sgd(params, { momentum: 0.9, weightDecay: 5e-4 });

  const time = async (f: () => Promise<unknown>, reps: number) => {
    await f();
    let best = Infinity;
    for (let i = 0; i < reps; i++) {
      t0 = performance.now();
      await f();
      best = Math.min(best, (performance.now() - t0) / 1000);
    }
    return best;
  };
  const forward = await time(() => fwdSession.run(feeds), 3);
  await fwdSession.release(); // one session's arena at a time, as in setar finetune
  const rssForward = vmHwm();
  const trainSession = await Session.create(train.bytes, 'train', { memoryArena: true });
  const step = await time(async () => {
    const out = await trainSession.run(feeds);
    sgd.step(new Map([...train.gradients].map(([n, g]) => [n, out[g]!.data as Float32Array])), 0.01);
  }, 3);
  const rssTrain = vmHwm();
  await trainSession.release();
  const inference = await time(() => model.encodeImages(feeds.pixel_values as Tensor<'float32'>), 3);
  console.log(`forward only (same graph: both towers, ${C} prompts, loss): ${forward.toFixed(2)} s per batch -> ${(B / forward).toFixed(2)} images/s`);
  console.log(`training step (forward + backward + SGD update):     ${step.toFixed(2)} s per batch -> ${(B / step).toFixed(2)} images/s`);
  console.log(`ratio training / forward: ${(step / forward).toFixed(2)}x (aim <= 2.5x)`);
  console.log(`for reference, the inference image encoder: ${(B / inference).toFixed(2)} images/s`);
  console.log(`peak RSS: ${(rssForward / MiB).toFixed(0)} MiB after the forward runs, ${(rssTrain / MiB).toFixed(0)} MiB after the training steps (aim <= 8 GiB)`);
  await clip.dispose();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
