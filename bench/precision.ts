// `npm run bench:precision`: the three bundle precisions of one random-weight CLIP ViT-B/16
// (`setar bundle --precision fp32|fp16|int8` on the same checkpoint and validation images):
// image_encoder.onnx size, and images/s through the bundle's Detector at batch 1 and 32 (an int8
// encoder runs one image per run, so its batch of 32 is 32 runs). The precisions are timed in
// turn, round after round, so a slow spell of a shared machine hits all of them; each figure is
// the best round. Options: --rounds N (default 3), --threads N (default: every core).
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import sharp from 'sharp';
import { createBundle, Detector } from '../src/bundle/bundle.js';
import { mulberry32, VIT_B16_CONFIG, writeRandomClip } from '../src/models/clip/random.js';
import { PRECISIONS, type Precision } from '../src/onnx/precision.js';
import { defaultThreads } from '../src/runtime/session.js';
import { tensor } from '../src/tensor.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '3' }, threads: { type: 'string' } } });
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

  const batches = [1, 32] as const;
  const px = Object.fromEntries(batches.map((b) => [b, tensor('float32', randomPixels(b, b), [b, 3, 224, 224], 'pixel_values')]));
  for (const b of batches) for (const p of PRECISIONS) await detectors[p].scoreBatch(px[b]!); // warm-up: arenas, packed weights
  const best: Record<string, number> = {};
  for (let round = 0; round < rounds; round++) {
    for (const b of batches) {
      for (const p of PRECISIONS) {
        const t = performance.now();
        await detectors[p].scoreBatch(px[b]!);
        best[`${p}/${b}`] = Math.max(best[`${p}/${b}`] ?? 0, b / ((performance.now() - t) / 1000));
      }
    }
  }
  for (const p of PRECISIONS) await detectors[p].release();

  const row = (cells: string[]) => console.log(cells.map((c, i) => (i === 0 ? c.padEnd(9) : c.padStart(i < 3 ? 9 : 13))).join(' '));
  console.log('');
  row(['precision', 'MiB', 'x fp32', 'b1 images/s', 'b32 images/s', 'b1 x fp32', 'b32 x fp32']);
  for (const p of PRECISIONS) {
    row([p, (sizes[p] / MiB).toFixed(1), (sizes[p] / sizes.fp32).toFixed(3), best[`${p}/1`]!.toFixed(2), best[`${p}/32`]!.toFixed(2),
      (best[`${p}/1`]! / best['fp32/1']!).toFixed(2), (best[`${p}/32`]! / best['fp32/32']!).toFixed(2)]);
  }
  console.log(`\n(load average after: ${loadavg().map((l) => l.toFixed(1)).join(' ')})`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
