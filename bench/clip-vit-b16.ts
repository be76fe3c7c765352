// `npm run bench`: ViT-B/16 CLIP (random weights, exact architecture) on ONNX Runtime.
// Prints image-encoder images/s at batch 1, 8 and 32 (with and without GL-MCM local features),
// text-encoder prompts/s on the 1,000 ImageNet prompts, the cost of replacing one weight, peak
// RSS while loading, and the ONNX Runtime MatMul ceiling measured in the same run.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ClipModel } from '../src/models/clip/model.js';
import { ClipTokenizer } from '../src/models/clip/tokenizer.js';
import { writeRandomClip, VIT_B16_CONFIG, mulberry32 } from '../src/models/clip/random.js';
import { GraphBuilder } from '../src/onnx/graph-builder.js';
import { defaultThreads, Session } from '../src/runtime/session.js';
import { tensor } from '../src/tensor.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const repo = resolve(here, here.includes('/dist/') ? '../..' : '..');
const shared = process.env.SETAR_SHARED ?? resolve(repo, '..', 'shared');
const MB = 1024 * 1024;

function randomArray(n: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r() * 2 - 1;
  return a;
}

async function time<T>(f: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const v = await f();
  return [(performance.now() - t0) / 1000, v];
}

async function matmulCeiling(): Promise<number> {
  const g = new GraphBuilder('matmul_ceiling');
  const a = g.input('a', 'FLOAT', [3152, 768]);
  g.output(g.op('MatMul', [a, g.initializer('b', randomArray(768 * 3072, 1), [768, 3072])]), 'y', 'FLOAT', [3152, 3072]);
  const s = await Session.create(g.toBytes(), 'matmul_ceiling', { memoryArena: true });
  const x = tensor('float32', randomArray(3152 * 768, 2), [3152, 768]);
  await s.run({ a: x });
  let best = Infinity;
  for (let i = 0; i < 5; i++) best = Math.min(best, (await time(() => s.run({ a: x })))[0]);
  await s.release();
  return (2 * 3152 * 768 * 3072) / best / 1e9;
}

const dir = mkdtempSync(join(tmpdir(), 'setar-bench-vitb16-'));
try {
  console.log(`setar benchmark — CLIP ViT-B/16 architecture, random weights, float32, ${defaultThreads()} threads`);
  writeRandomClip(dir, VIT_B16_CONFIG, { seed: 0 });
  for (const f of ['vocab.json', 'merges.txt']) copyFileSync(join(shared, 'fixtures', 'clip-tokenizer', f), join(dir, f));
  const weightBytes = statSync(join(dir, 'model.safetensors')).size;

  // Loading, in a fresh process so its peak RSS is its own.
  const childScript = join(here, 'load-rss.js');
  const load = JSON.parse(execFileSync(process.execPath, [childScript, dir], { encoding: 'utf8' }).trim()) as { before: number; peak: number; after: number; seconds: number };
  console.log(`\nload + compile all sessions: ${load.seconds.toFixed(1)} s`);
  console.log(`  weights ${(weightBytes / MB).toFixed(0)} MiB; peak RSS ${(load.peak / MB).toFixed(0)} MiB = ${(load.peak / weightBytes).toFixed(2)}x weights (process before loading: ${(load.before / MB).toFixed(0)} MiB; target <= 1.5x)`);

  const gflops = await matmulCeiling();
  console.log(`\nONNX Runtime MatMul ceiling (3152x768 @ 768x3072): ${gflops.toFixed(0)} GFLOP/s`);

  const model = await ClipModel.load(dir);
  // ≈ 2·MACs of one ViT-B/16 image forward (patch conv, 12 blocks incl. attention, head).
  const S = 197, D = 768, F = 3072;
  const perImageFlop = 2 * (S * 12 * (4 * D * D + 2 * D * F) + 12 * 2 * S * S * D + 196 * D * 768);
  console.log('\nimage encoder (pixel_values -> image_embeds [+ image_embeds_local]):');
  const rows: string[] = [];
  for (const [batch, local, reps] of [[1, true, 5], [8, true, 3], [32, true, 2], [32, false, 2]] as const) {
    const px = tensor('float32', randomArray(batch * 3 * 224 * 224, 3), [batch, 3, 224, 224]);
    await model.encodeImages(px, { local }); // warm-up: compiles sessions, sizes arenas
    let best = Infinity;
    for (let i = 0; i < reps; i++) best = Math.min(best, (await time(() => model.encodeImages(px, { local })))[0]);
    const ips = batch / best;
    rows.push(`  batch ${String(batch).padStart(2)}  local ${local ? 'on ' : 'off'}  ${ips.toFixed(2)} images/s  (${((ips * perImageFlop) / 1e9).toFixed(0)} GFLOP/s)`);
    console.log(rows[rows.length - 1]);
  }

  // Replacing one 3072x768 weight: weight matrices are graph inputs, so a swap is the new
  // matrix's transpose into MatMul layout and nothing else; the next run costs a normal run.
  const name = 'vision_model.encoder.layers.5.mlp.fc1.weight';
  const w = model.getWeight(name).map((x) => x * 0.5);
  const px32 = tensor('float32', randomArray(32 * 3 * 224 * 224, 4), [32, 3, 224, 224]);
  const [plain] = await time(() => model.encodeImages(px32, { local: true }));
  let swap = Infinity;
  for (let i = 0; i < 5; i++) {
    const t = performance.now();
    model.setWeight(name, i % 2 ? w : w.slice());
    model.matrix(name);
    swap = Math.min(swap, (performance.now() - t) / 1000);
  }
  const [replaced] = await time(() => model.encodeImages(px32, { local: true }));
  console.log(`  replace ${name}: ${(swap * 1000).toFixed(1)} ms (a batch of 32 takes ${plain.toFixed(2)} s; the run after the swap took ${replaced.toFixed(2)} s)`);

  // Text tower on the 1,000 ImageNet prompts.
  const classes = (JSON.parse(readFileSync(join(shared, 'data', 'benchmarks.json'), 'utf8')) as { id_labels: Record<string, string[]> }).id_labels.ID_ImageNet1K!;
  const tok = await ClipTokenizer.fromDir(dir);
  const [tokSeconds, rowsIds] = await time(async () => classes.map((c) => tok.encode(`a photo of a ${c}`)));
  await model.encodeTokenRows(rowsIds);
  let bestText = Infinity;
  for (let i = 0; i < 3; i++) bestText = Math.min(bestText, (await time(() => model.encodeTokenRows(rowsIds)))[0]);
  console.log(`\ntext encoder: ${classes.length} ImageNet prompts "a photo of a {c}" in ${bestText.toFixed(2)} s -> ${(classes.length / bestText).toFixed(0)} prompts/s (sorted by length, padded per batch of 128; tokenizing took ${(tokSeconds * 1000).toFixed(0)} ms)`);
  console.log(`\npeak RSS of this process: ${(Number(/VmHWM:\s+(\d+)/.exec(readFileSync("/proc/self/status", "utf8"))?.[1]) / 1024).toFixed(0)} MiB`);
  await model.dispose();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
