// `npm run bench:device`: setar's workloads on every device available here (cpu, webgpu, cuda),
// in one run, one table:
//   - images/s of the image tower with GL-MCM local features at batch 1, 8 and 32;
//   - prompts/s of the text tower on the 1,000 ImageNet prompts "a photo of a {c}";
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
import { ClipLogitsHead } from '../src/models/clip/logits.js';
import { ClipModel } from '../src/models/clip/model.js';
import { mulberry32, VIT_B16_CONFIG, writeRandomClip } from '../src/models/clip/random.js';
import { ClipTokenizer } from '../src/models/clip/tokenizer.js';
import { isSwappable } from '../src/models/clip/weights.js';
import type { ResolvedDevice } from '../src/runtime/device.js';
import { builtinDevices } from '../src/runtime/devices.js';
import { defaultThreads, ortVersion, Session } from '../src/runtime/session.js';
import { TransferCounter } from '../src/runtime/transfers.js';
import { ObjectiveAccumulator } from '../src/search/objective.js';
import { sliceBatch, tensor, type Tensor } from '../src/tensor.js';
import { loraAdapters } from '../src/train/adapters.js';
import { clipTrainGraph } from '../src/models/clip/train-graph.js';
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

/** One device's figures; a string is why a figure is missing. */
interface Row {
  device: string;
  note?: string;
  imagesPerSecond: Record<number, number | string>;
  bytesPerImage: number | string;
  promptsPerSecond: number | string;
  trainImagesPerSecond: number | string;
  bytesPerStep: number | string;
  secondsPerCandidate: number | string;
  bytesPerCandidate: number | string;
}

function randomArray(n: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r() * 2 - 1;
  return a;
}

/** Median wall seconds of `reps` calls after one warm-up call (compiles sessions, sizes arenas). */
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

async function measure(dir: string, d: ResolvedDevice, s: Sizes, prompts: readonly (readonly number[])[]): Promise<Row> {
  const transfers = new TransferCounter();
  const eps = d.executionProviders;
  const model = await ClipModel.load(dir, { executionProviders: eps, transfers, maxVisionBatch: 32 });
  const v = model.config.vision_config;
  const row: Row = { device: d.name, imagesPerSecond: {}, bytesPerImage: '', promptsPerSecond: '', trainImagesPerSecond: '', bytesPerStep: '', secondsPerCandidate: '', bytesPerCandidate: '' };
  try {
    // ---- embed: pixels → image_embeds + image_embeds_local
    for (const b of s.batches) {
      const px = tensor('float32', randomArray(b * 3 * v.image_size * v.image_size, b), [b, 3, v.image_size, v.image_size]);
      row.imagesPerSecond[b] = await figure(`batch ${b}`, async () => b / (await seconds(() => model.encodeImages(px, { local: true }), s.reps)));
      console.log(`    embed batch ${b}: ${fmt(row.imagesPerSecond[b]!, 2)} images/s`);
    }
    row.bytesPerImage = await figure('bytes per image', async () => {
      const b = s.batches[s.batches.length - 1]!;
      const px = tensor('float32', randomArray(b * 3 * v.image_size * v.image_size, 99), [b, 3, v.image_size, v.image_size]);
      transfers.take();
      await model.encodeImages(px, { local: true });
      const t = transfers.take();
      return (t.uploaded + t.downloaded) / b;
    });

    // ---- text tower on the ImageNet prompts
    row.promptsPerSecond = await figure('text tower', async () => prompts.length / (await seconds(() => model.encodeTokenRows(prompts), s.reps)));
    console.log(`    text tower: ${fmt(row.promptsPerSecond, 0)} prompts/s`);

    // ---- training step
    const train = await figure('training', async () => {
      const r = mulberry32(1);
      const adapters = loraAdapters(model, { r: s.loraRank, alpha: s.loraRank / 2, targetModules: ['mlp.fc1'], rng: r });
      const plan = new Map(adapters.map((a) => [a.prefix, { rank: a.rank, scaling: a.scaling }]));
      const graph = clipTrainGraph(model.config, model.source, plan, model.logitScale, { topK: Math.max(1, Math.floor(s.trainClasses / 5)), lambda: 0.25, usePredLabel: false });
      const rows = prompts.slice(0, s.trainClasses);
      const length = Math.max(...rows.map((x) => x.length));
      const ids = new Int32Array(rows.length * length).fill(model.config.text_config.eos_token_id);
      rows.forEach((x, i) => ids.set(x, i * length));
      const tokens = { ids, batch: rows.length, length };
      const B = s.trainBatch;
      const C = s.trainClasses;
      const feeds: Record<string, Tensor> = {
        pixel_values: tensor('float32', randomArray(B * 3 * v.image_size * v.image_size, 5), [B, 3, v.image_size, v.image_size]),
        labels_onehot: tensor('float32', Float32Array.from({ length: B * C }, (_, i) => (i % C === Math.floor(i / C) % C ? 1 : 0)), [B, C]),
        text_hidden: await model.textEmbeddings(tokens),
        pool_index: tensor('int64', BigInt64Array.from(model.poolPositions(tokens), (p, i) => BigInt(i * length + p)), [C]),
      };
      const session = await Session.create(graph.bytes, 'train', { memoryArena: true, executionProviders: eps, transfers });
      try {
        for (const n of session.inputNames) if (isSwappable(n)) feeds[n] = model.matrix(n);
        const params = adapters.flatMap((a) => [{ name: `${a.prefix}.lora_A`, value: a.A, decay: true }, { name: `${a.prefix}.lora_B`, value: a.B, decay: true }]);
        const shapes = new Map<string, number[]>(adapters.flatMap((a) => [[`${a.prefix}.lora_A`, [a.shape[1], a.rank]], [`${a.prefix}.lora_B`, [a.rank, a.shape[0]]]]));
        const sgd = new Sgd(params, { momentum: 0.9, weightDecay: 5e-4 });
        const step = async () => {
          for (const p of params) feeds[p.name] = tensor('float32', p.value, shapes.get(p.name)!, p.name);
          const out = await session.run(feeds);
          sgd.step(new Map([...graph.gradients].map(([n, g]) => [n, out[g]!.data as Float32Array])), 1e-4);
        };
        const sec = await seconds(step, s.reps);
        transfers.take();
        await step();
        const t = transfers.take();
        return { ips: B / sec, bytes: t.uploaded + t.downloaded };
      } finally {
        await session.release();
      }
    });
    row.trainImagesPerSecond = typeof train === 'string' ? train : train.ips;
    row.bytesPerStep = typeof train === 'string' ? train : train.bytes;
    console.log(`    training: ${fmt(row.trainImagesPerSecond, 2)} images/s`);

    // ---- one search candidate
    const cand = await figure('search candidate', async () => {
      const N = s.searchImages;
      const C = s.searchClasses;
      const l = Math.floor(model.visionLayerCount / 2);
      const name = `vision_model.encoder.layers.${l}.mlp.fc1.weight`;
      const shape = model.weightShape(name) as [number, number];
      const weight = model.getOriginalWeight(name);
      const factors = await getSvd(weight, shape); // the search reads SVDs from its disk cache
      const hidden = await model.visionLayers(await model.visionEmbeddings(tensor('float32', randomArray(N * 3 * v.image_size * v.image_size, 7), [N, 3, v.image_size, v.image_size])), 0, l);
      const rows = Array.from({ length: C }, (_, i) => prompts[i % prompts.length]!);
      const head = await ClipLogitsHead.create(await model.encodeTokenRows(rows), model.logitScale, { executionProviders: eps, transfers });
      const labels = Int32Array.from({ length: N }, (_, i) => i % C);
      const candidate = async (ratio: number) => {
        model.setWeight(name, lowRankApprox({ weight, shape, ratio, factors, name }));
        const img = await model.visionFrom(hidden, l);
        const acc = new ObjectiveAccumulator({ objective: { kind: 'loss', metric: 'locoop_loss' }, topK: Math.floor(C / 5), lambda: 0.25, usePredLabel: false, temperature: 1, recallLevel: 0.95 });
        for (let i = 0; i < N; i += 32) {
          const k = Math.min(32, N - i);
          acc.add(await head.logits(sliceBatch(img.image_embeds, i, k)), await head.logits(sliceBatch(img.image_embeds_local!, i, k)), labels.subarray(i, i + k));
        }
        return acc.result();
      };
      try {
        await candidate(0.1); // compiles the session from layer l
        transfers.take();
        const t0 = performance.now();
        for (const ratio of [0.2, 0.4]) await candidate(ratio);
        const sec = (performance.now() - t0) / 1000 / 2;
        const t = transfers.take();
        return { sec, bytes: (t.uploaded + t.downloaded) / 2, N, C, l };
      } finally {
        model.resetWeight(name);
        await head.release();
      }
    });
    row.secondsPerCandidate = typeof cand === 'string' ? cand : cand.sec;
    row.bytesPerCandidate = typeof cand === 'string' ? cand : cand.bytes;
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
  const tok = await ClipTokenizer.fromDir(dir);
  const prompts = classes.map((c) => tok.encode(`a photo of a ${c}`));

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
    rows.push(await measure(dir, d, sizes, prompts));
  }

  const b = sizes.batches;
  console.log(`\n| device | ${b.map((x) => `images/s @${x}`).join(' | ')} | MiB moved / image | prompts/s | train images/s (batch ${sizes.trainBatch}) | MiB moved / step | s / candidate (${sizes.searchImages} images, ${sizes.searchClasses} classes) | MiB moved / candidate |`);
  console.log(`|---|${b.map(() => '---:').join('|')}|---:|---:|---:|---:|---:|---:|`);
  for (const r of rows) {
    console.log(`| ${r.device} | ${b.map((x) => fmt(r.imagesPerSecond[x] ?? '', 2)).join(' | ')} | ${mib(r.bytesPerImage)} | ${fmt(r.promptsPerSecond, 0)} | ${fmt(r.trainImagesPerSecond, 2)} | ${mib(r.bytesPerStep)} | ${fmt(r.secondsPerCandidate, 2)} | ${mib(r.bytesPerCandidate)} |`);
  }
  for (const m of missing) console.log(`\nnot measured — ${m}`);
  console.log('\nMiB moved: host tensors fed to and fetched from runs on a device (weights fed per run included); 0 on the CPU. Copies ORT makes inside a run around CPU-fallback nodes are not counted.');
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
