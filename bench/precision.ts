// `npm run bench:precision`: the three bundle precisions of one random-weight CLIP ViT-B/16
// (`setar bundle --precision fp32|fp16|int8` on the same checkpoint and validation images):
// image_encoder.onnx size, and images/s through the bundle's Detector at batch 1 and 32 (an int8
// encoder runs one image per run, so its batch of 32 is 32 runs). The precisions are timed in
// turn, round after round, so a slow spell of a shared machine hits all of them: images/s is each
// precision's best round, "x fp32" the median over rounds of its ratio to fp32 in the same round.
// One more row, not a bundle: the int8 encoder run on whole batches (what batch independence
// costs). Options: --rounds N (default 5), --threads N (default: every core).
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { createBundle, Detector } from '../src/bundle/bundle.js';
import { mulberry32, VIT_B16_CONFIG, writeRandomClip } from '../src/models/clip/random.js';
import { decodeModel, encodeModel } from '../src/onnx/model-proto.js';
import { PRECISIONS, type Precision } from '../src/onnx/precision.js';
import { quantizeMatMuls } from '../src/onnx/quantize.js';
import { defaultThreads, Session } from '../src/runtime/session.js';
import { tensor, type Tensor } from '../src/tensor.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, threads: { type: 'string' } } });
const rounds = Number(values.rounds);
const threads = values.threads ? Number(values.threads) : defaultThreads();
const here = fileURLToPath(new URL('.', import.meta.url));
const repo = resolve(here, here.includes('/dist/') ? '../..' : '..');
const shared = process.env.SETAR_SHARED ?? resolve(repo, '..', 'shared');
const MiB = 1024 * 1024;

function randomPixels(n: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n * 3 * 224 * 224 }, () => r() * 4 - 2);
}

const dir = mkdtempSync(join(tmpdir(), 'setar-bench-precision-'));
process.env.SETAR_CACHE_DIR = join(dir, 'cache');
try {
  console.log(`setar bundle precisions — CLIP ViT-B/16 architecture, random weights, ${threads} threads, ${rounds} rounds (load average ${loadavg().map((l) => l.toFixed(1)).join(' ')})`);
  const model = join(dir, 'model');
  writeRandomClip(model, VIT_B16_CONFIG, { seed: 0 });
  for (const f of ['vocab.json', 'merges.txt']) copyFileSync(join(shared, 'fixtures', 'clip-tokenizer', f), join(model, f));
  // a few validation images: the threshold is chosen on them (meaningless with random weights)
  for (const [k, c] of ['a', 'b'].entries()) {
    mkdirSync(join(dir, 'val', c), { recursive: true });
    for (let i = 0; i < 3; i++) {
      const r = mulberry32(10 * k + i);
      const raw = Buffer.from(Array.from({ length: 240 * 240 * 3 }, () => Math.floor(r() * 256)));
      await sharp(raw, { raw: { width: 240, height: 240, channels: 3 } }).png().toFile(join(dir, 'val', c, `${i}.png`));
    }
  }
  const sizes = {} as Record<Precision, number>;
  const detectors = {} as Record<Precision, Detector>;
  for (const precision of PRECISIONS) {
    const out = join(dir, `bundle-${precision}`);
    const t0 = performance.now();
    await createBundle({ model, id: { kind: 'folder', name: 'val', root: join(dir, 'val') }, out, precision, threads });
    sizes[precision] = statSync(join(out, 'image_encoder.onnx')).size;
    console.log(`  bundle ${precision}: written in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    detectors[precision] = await Detector.load(out, { threads });
  }

  // For comparison, not a bundle: the same int8 encoder without its one-image-per-run pin, run on
  // whole batches (activation scales shared by the batch's images): what batch independence costs.
  const fp32Bytes = new Uint8Array(readFileSync(join(dir, 'bundle-fp32', 'image_encoder.onnx')));
  const batched = await Session.create(encodeModel(quantizeMatMuls(decodeModel(fp32Bytes))), 'int8_batched', { memoryArena: true, threads });
  const runners: [string, (px: Tensor<'float32'>) => Promise<unknown>][] = [
    ...PRECISIONS.map((p) => [p, (px: Tensor<'float32'>) => detectors[p].scoreBatch(px)] as [string, (px: Tensor<'float32'>) => Promise<unknown>]),
    ['int8, batched*', (px: Tensor<'float32'>) => batched.run({ pixel_values: px })],
  ];

  const batches = [1, 32] as const;
  const px = Object.fromEntries(batches.map((b) => [b, tensor('float32', randomPixels(b, b), [b, 3, 224, 224], 'pixel_values')]));
  for (const b of batches) for (const [, run] of runners) await run(px[b]!); // warm-up: arenas, packed weights
  const best: Record<string, number> = {};
  const cpu: Record<string, number> = {};
  const ratios: Record<string, number[]> = {};
  for (let round = 0; round < rounds; round++) {
    for (const b of batches) {
      const ips: Record<string, number> = {};
      for (const [name, run] of runners) {
        const c0 = process.cpuUsage();
        const t = performance.now();
        await run(px[b]!);
        ips[name] = b / ((performance.now() - t) / 1000);
        const c = process.cpuUsage(c0);
        const k = `${name}/${b}`;
        best[k] = Math.max(best[k] ?? 0, ips[name]);
        cpu[k] = Math.min(cpu[k] ?? Infinity, (c.user + c.system) / 1000 / b);
        (ratios[k] ??= []).push(ips[name] / ips.fp32!);
      }
    }
  }
  const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
  for (const p of PRECISIONS) await detectors[p].release();
  await batched.release();

  const widths = [14, 7, 7, 12, 12, 10, 10, 13, 13];
  const row = (cells: string[]) => console.log(cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' '));
  console.log('');
  row(['precision', 'MiB', 'x fp32', 'b1 images/s', 'b32 images/s', 'b1 x fp32', 'b32 x fp32', 'b1 CPU ms/im', 'b32 CPU ms/im']);
  for (const [name] of runners) {
    const size = (PRECISIONS as readonly string[]).includes(name) ? sizes[name as Precision] : sizes.int8;
    row([name, (size / MiB).toFixed(1), (size / sizes.fp32).toFixed(3), best[`${name}/1`]!.toFixed(2), best[`${name}/32`]!.toFixed(2),
      median(ratios[`${name}/1`]!).toFixed(2), median(ratios[`${name}/32`]!).toFixed(2), cpu[`${name}/1`]!.toFixed(0), cpu[`${name}/32`]!.toFixed(0)]);
  }
  console.log('\n* not a bundle: int8 without the one-image-per-run pin, a batch in one run sharing activation scales.');
  console.log('images/s: best round; x fp32: median over rounds of the ratio to fp32 in the same round; CPU ms/im: this');
  console.log(`process's CPU time per image, best round (with ${threads} threads it includes ONNX Runtime's spinning workers).`);
  console.log(`\n(load average after: ${loadavg().map((l) => l.toFixed(1)).join(' ')})`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
