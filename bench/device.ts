// `npm run bench:device`: setar's workloads on every device available here (cpu, webgpu, cuda),
// in one run, one table:
//   - images/s of the image tower with GL-MCM local features at batch 1, 8 and 32;
//   - prompts/s of the text tower on the 1,000 ImageNet prompts "a photo of a {c}" (tokenizer included);
//   - training images/s (LoRA on every mlp.fc1 of both towers, LoCoOp loss, forward + backward in
//     one run, plus the SGD update);
//   - seconds per search candidate: one visual W_up of the middle layer replaced by its low-rank
//     approximation, the vision tower from that layer on the validation images' cached hidden
//     states, and the LoCoOp objective over all classes (the search's inner loop, SVD cached);
//   - bytes moved between host and device: per image (embed), per training step, per candidate.
// Default: CLIP ViT-B/16 (random weights, exact architecture), training batch 16 × 100 classes with
// rank 32, search on 256 images × 1,000 classes. `--quick` (or SETAR_BENCH_QUICK=1) shrinks the
// model and sizes so a CPU-emulated GPU (Mesa's lavapipe) finishes in minutes; `--devices cpu,webgpu`
// picks devices. Unavailable devices are listed with the reason.
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { lowRankApprox } from '../src/lowrank/lowrank.js';
import { getSvd } from '../src/lowrank/svd-cache.js';
import { clipFamily } from '../src/models/clip/family.js';
import { mulberry32, VIT_B16_CONFIG, writeRandomClip } from '../src/models/clip/random.js';
import type { ResolvedDevice } from '../src/runtime/device.js';
import { builtinDevices } from '../src/runtime/devices.js';
import { defaultThreads, ortVersion, Session } from '../src/runtime/session.js';
import { DeviceMemory } from '../src/runtime/device-memory.js';
import type { Resident } from '../src/runtime/device-tensor.js';
import { TransferCounter } from '../src/runtime/transfers.js';
import { Evaluator } from '../src/search/evaluator.js';
import { tensor } from '../src/tensor.js';
import { loraAdapters } from '../src/train/adapters.js';
import { Sgd } from '../src/train/optimizer.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const repo = resolve(here, here.includes('/dist/') ? '../..' : '..');
const shared = process.env.SETAR_SHARED ?? resolve(repo, '..', 'shared');
const MiB = 1024 * 1024;

/** A small CLIP for `--quick`: 64 px images, 16 px patches (17 tokens), 4 layers per tower. */
const QUICK_CONFIG = {
  model_type: 'clip',
  projection_dim: 128,
  text_config: { hidden_size: 128, intermediate_size: 512, num_attention_heads: 2, num_hidden_layers: 4, max_position_embeddings: 77, vocab_size: 49408 },
  vision_config: { hidden_size: 192, intermediate_size: 768, num_attention_heads: 3, num_hidden_layers: 4, image_size: 64, patch_size: 16 },
};

interface Sizes {
  readonly label: string;
  readonly config: typeof VIT_B16_CONFIG | typeof QUICK_CONFIG;
  readonly batches: readonly number[];
  readonly trainBatch: number;
  readonly trainClasses: number;
  readonly loraRank: number;
  readonly searchImages: number;
  readonly searchClasses: number;
  readonly reps: number;
}

const FULL: Sizes = { label: 'CLIP ViT-B/16 (random weights)', config: VIT_B16_CONFIG, batches: [1, 8, 32], trainBatch: 16, trainClasses: 100, loraRank: 32, searchImages: 256, searchClasses: 1000, reps: 3 };
const QUICK: Sizes = { label: 'quick: CLIP with a 4-layer 192-wide ViT/16 on 64 px images, 4-layer 128-wide text tower (random weights)', config: QUICK_CONFIG, batches: [1, 8, 32], trainBatch: 4, trainClasses: 10, loraRank: 8, searchImages: 32, searchClasses: 100, reps: 2 };

/** Bytes moved between host and device by one unit of work. */
interface Moved {
  readonly up: number;
  readonly down: number;
}

/** One device's figures; a string is why a figure is missing. */
interface Row {
  device: string;
  imagesPerSecond: Record<number, number | string>;
  perImage: Moved | string;
  weightsOnce: number | string;
  promptsPerSecond: number | string;
  trainImagesPerSecond: number | string;
  perStep: Moved | string;
  secondsPerCandidate: number | string;
  perCandidate: Moved | string;
}

function randomArray(n: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r() * 2 - 1;
  return a;
}

/** Median wall seconds of `reps` calls after one warm-up call (compiles sessions, sizes arenas, uploads weights). */
async function seconds(f: () => Promise<unknown>, reps: number): Promise<number> {
  await f();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    await f();
    ts.push((performance.now() - t0) / 1000);
  }
  ts.sort((a, b) => a - b);
  return ts[Math.floor(ts.length / 2)]!;
}

/** Runs one figure, keeping the error message in its place if it fails. */
async function figure<T>(what: string, f: () => Promise<T>): Promise<T | string> {
  try {
    return await f();
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0]!;
    console.log(`    ${what} failed: ${msg}`);
    return `failed: ${msg.slice(0, 60)}`;
  }
}

/**
 * The device's figures, each through the code path the commands run: the family's model with its
 * weights resident on the device (`setar embed`), the text tower, a training step as
 * `setar finetune` runs it (frozen weights and prompts uploaded once), and a search candidate as
 * `setar search` evaluates it (hidden states cached on the device, one weight replaced, the
 * tower from that layer and the objective over every class).
 */
async function measure(dir: string, d: ResolvedDevice, s: Sizes, classes: readonly string[]): Promise<Row> {
  const transfers = new TransferCounter();
  const model = await clipFamily.load(dir, { device: d, transfers });
  const size = model.preprocess.cropSize;
  const v = { image_size: size };
  const moved = (n: number): Moved => {
    const t = transfers.take();
    return { up: t.uploaded / n, down: t.downloaded / n };
  };
  const row: Row = { device: d.name, imagesPerSecond: {}, perImage: '', weightsOnce: '', promptsPerSecond: '', trainImagesPerSecond: '', perStep: '', secondsPerCandidate: '', perCandidate: '' };
  try {
    // ---- embed: pixels → image_embeds + image_embeds_local
    for (const b of s.batches) {
      const pixels = tensor('float32', randomArray(b * 3 * v.image_size * v.image_size, b), [b, 3, v.image_size, v.image_size]);
      row.imagesPerSecond[b] = await figure(`batch ${b}`, async () => b / (await seconds(() => model.embed({ pixels }, { local: true }), s.reps)));
      console.log(`    embed batch ${b}: ${fmt(row.imagesPerSecond[b]!, 2)} images/s`);
    }
    row.weightsOnce = model.deviceWeightBytes;
    row.perImage = await figure('bytes per image', async () => {
      const b = s.batches[s.batches.length - 1]!;
      const pixels = tensor('float32', randomArray(b * 3 * v.image_size * v.image_size, 99), [b, 3, v.image_size, v.image_size]);
      transfers.take();
      await model.embed({ pixels }, { local: true });
      return moved(b);
    });

    // ---- text tower on the ImageNet prompts
    const texts = classes.map((c) => `a photo of a ${c}`);
    row.promptsPerSecond = await figure('text tower', async () => texts.length / (await seconds(() => model.embed({ texts }, { local: false }), s.reps)));
    console.log(`    text tower: ${fmt(row.promptsPerSecond, 0)} prompts/s`);

    // ---- a training step, as runFinetune runs it
    const train = await figure('training', async () => {
      const r = mulberry32(1);
      const adapters = loraAdapters(model, { r: s.loraRank, alpha: s.loraRank / 2, targetModules: ['mlp.fc1'], rng: r });
      const plan = new Map(adapters.map((a) => [a.prefix, { rank: a.rank, scaling: a.scaling }]));
      const C = s.trainClasses;
      const B = s.trainBatch;
      const setup = await model.trainSetup(plan, { topK: Math.max(1, Math.floor(C / 5)), lambda: 0.25, usePredLabel: false }, { labels: classes.slice(0, C), template: 'a photo of a {}' });
      const session = await Session.create(setup.graph.bytes, 'train', { memoryArena: true, executionProviders: d.executionProviders, transfers });
      const memory = new DeviceMemory({ executionProviders: d.executionProviders, transfers });
      try {
        const feeds: Record<string, Resident> = {
          pixel_values: tensor('float32', randomArray(B * 3 * v.image_size * v.image_size, 5), [B, 3, v.image_size, v.image_size]),
          labels_onehot: tensor('float32', Float32Array.from({ length: B * C }, (_, i) => (i % C === Math.floor(i / C) % C ? 1 : 0)), [B, C]),
        };
        for (const n of session.inputNames) if (model.isSwappable(n)) feeds[n] = await model.residentMatrix(n);
        for (const [k, t] of Object.entries(setup.feeds)) feeds[k] = await memory.upload(t);
        const params = adapters.flatMap((a) => [{ name: `${a.prefix}.lora_A`, value: a.A, decay: true }, { name: `${a.prefix}.lora_B`, value: a.B, decay: true }]);
        const shapes = new Map<string, number[]>(adapters.flatMap((a) => [[`${a.prefix}.lora_A`, [a.shape[1], a.rank]], [`${a.prefix}.lora_B`, [a.rank, a.shape[0]]]]));
        const sgd = new Sgd(params, { momentum: 0.9, weightDecay: 5e-4 });
        const step = async () => {
          for (const p of params) feeds[p.name] = tensor('float32', p.value, shapes.get(p.name)!, p.name);
          const out = await session.run(feeds);
          sgd.step(new Map([...setup.graph.gradients].map(([n, g]) => [n, out[g]!.data as Float32Array])), 1e-4);
        };
        const sec = await seconds(step, s.reps);
        transfers.take();
        await step();
        return { ips: B / sec, moved: moved(1) };
      } finally {
        await session.release();
        await memory.release();
      }
    });
    row.trainImagesPerSecond = typeof train === 'string' ? train : train.ips;
    row.perStep = typeof train === 'string' ? train : train.moved;
    console.log(`    training: ${fmt(row.trainImagesPerSecond, 2)} images/s`);

    // ---- search candidates, as runSearch evaluates them
    const cand = await figure('search candidate', async () => {
      const N = s.searchImages;
      const C = s.searchClasses;
      const l = Math.floor(s.config.vision_config.num_hidden_layers / 2);
      const slot = { tower: 'visual', weight: 'W_up', layer: l } as const;
      const name = model.weightName([slot.tower, slot.weight, l, 0]);
      const shape = model.weightShape(name) as [number, number];
      const weight = model.getOriginalWeight(name);
      const factors = await getSvd(weight, shape); // the search reads SVDs from its disk cache
      const labels = Array.from({ length: C }, (_, i) => classes[i % classes.length]!);
      const subject = await model.searchSubject(labels, { template: 'a photo of a {}' });
      async function* batches() {
        for (let i = 0; i < N; i += 32) {
          const k = Math.min(32, N - i);
          yield { pixels: tensor('float32', randomArray(k * 3 * v.image_size * v.image_size, 7 + i), [k, 3, v.image_size, v.image_size]), labels: Int32Array.from({ length: k }, (_, j) => (i + j) % C) };
        }
      }
      const evaluator = await Evaluator.create(subject, batches(), { objective: { kind: 'loss', metric: 'locoop_loss' }, topK: Math.floor(C / 5), lambda: 0.25, usePredLabel: false, temperature: 1, recallLevel: 0.95 }, true);
      const candidate = async (ratio: number) => {
        model.setWeight(name, lowRankApprox({ weight, shape, ratio, factors, name }));
        return evaluator.measure(slot);
      };
      try {
        await evaluator.beginSlot(slot);
        await candidate(0.1); // compiles the session from layer l
        transfers.take();
        const t0 = performance.now();
        for (const ratio of [0.2, 0.4]) await candidate(ratio);
        return { sec: (performance.now() - t0) / 1000 / 2, moved: moved(2) };
      } finally {
        model.resetWeight(name);
        evaluator.release();
        await subject.release();
      }
    });
    row.secondsPerCandidate = typeof cand === 'string' ? cand : cand.sec;
    row.perCandidate = typeof cand === 'string' ? cand : cand.moved;
    console.log(`    search: ${fmt(row.secondsPerCandidate, 2)} s per candidate`);
  } finally {
    await model.dispose();
  }
  return row;
}

function fmt(x: number | string, digits: number): string {
  return typeof x === 'number' ? x.toFixed(digits) : x;
}

function mib(x: number | string): string {
  return typeof x === 'number' ? (x / MiB).toFixed(2) : x;
}

const args = process.argv.slice(2);
const quick = args.includes('--quick') || process.env.SETAR_BENCH_QUICK === '1';
const di = args.indexOf('--devices');
const wanted = di >= 0 ? args[di + 1]!.split(',') : ['cpu', 'webgpu', 'cuda'];
const sizes = quick ? QUICK : FULL;

const tmp = mkdtempSync(join(tmpdir(), 'setar-bench-device-'));
try {
  process.env.SETAR_CACHE_DIR ??= join(tmp, 'cache');
  console.log(`setar device benchmark — ${sizes.label}, float32; onnxruntime-node ${ortVersion()}; ${defaultThreads()} CPU threads`);
  const dir = join(tmp, 'model');
  writeRandomClip(dir, sizes.config, { seed: 0 });
  for (const f of ['vocab.json', 'merges.txt']) copyFileSync(join(shared, 'fixtures', 'clip-tokenizer', f), join(dir, f));
  const classes = (JSON.parse(readFileSync(join(shared, 'data', 'benchmarks.json'), 'utf8')) as { id_labels: Record<string, string[]> }).id_labels.ID_ImageNet1K!;

  const devices = builtinDevices();
  const rows: Row[] = [];
  const missing: string[] = [];
  for (const name of wanted) {
    let d: ResolvedDevice;
    try {
      d = await devices.resolve(name);
    } catch (e) {
      missing.push(`${name}: ${(e as Error).message}`);
      continue;
    }
    console.log(`\n${name} (execution providers: ${d.executionProviders.join(', ')})`);
    rows.push(await measure(dir, d, sizes, classes));
  }

  const b = sizes.batches;
  const upDown = (m: Moved | string) => (typeof m === 'string' ? `${m} | ${m}` : `${mib(m.up)} | ${mib(m.down)}`);
  console.log(`\n| device | ${b.map((x) => `images/s @${x}`).join(' | ')} | MiB up / image | MiB down / image | weights uploaded once, MiB | prompts/s | train images/s (batch ${sizes.trainBatch}) | MiB up / step | MiB down / step | s / candidate (${sizes.searchImages} images, ${sizes.searchClasses} classes) | MiB up / candidate | MiB down / candidate |`);
  console.log(`|---|${b.map(() => '---:').join('|')}|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|`);
  for (const r of rows) {
    console.log(`| ${r.device} | ${b.map((x) => fmt(r.imagesPerSecond[x] ?? '', 2)).join(' | ')} | ${upDown(r.perImage)} | ${mib(r.weightsOnce)} | ${fmt(r.promptsPerSecond, 0)} | ${fmt(r.trainImagesPerSecond, 2)} | ${upDown(r.perStep)} | ${fmt(r.secondsPerCandidate, 2)} | ${upDown(r.perCandidate)} |`);
  }
  for (const m of missing) console.log(`\nnot measured — ${m}`);
  console.log('\nMiB moved: host tensors fed to and fetched from runs on a device (webgpu: the weights are uploaded once and stay, the search\'s hidden states stay on the device; cuda: onnxruntime-node holds no device memory, so every run feeds its weights); 0 on the CPU. Copies ORT makes inside a run around CPU-fallback nodes (bench/device-placements.ts) are not counted.');
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
