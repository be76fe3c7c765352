// `npm run bench:serve`: load test of `setar serve` on loopback, dynamic batching off and on, in
// one run. Two bundles: the demo CLIP (28x28 PNGs) and a ViT-B/16 CLIP with random weights (the
// real architecture; 320x240 JPEGs). For 1, 4 and 16 concurrent clients: requests/s, latency
// p50 / p99, errors, and the mean images per model run (from /metrics), each the better of two
// rounds run in turn with the other mode. One table.
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { createBundle } from '../src/bundle/bundle.js';
import { demoModelDir, writeDemoData } from '../src/demo/run-demo.js';
import { VIT_B16_CONFIG, writeRandomClip } from '../src/models/clip/random.js';
import { startServer } from '../src/serve/server.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const repo = resolve(here, here.includes('/dist/') ? '../..' : '..');
const shared = process.env.SETAR_SHARED ?? resolve(repo, '..', 'shared');

interface Cell {
  readonly bundle: string;
  readonly batching: string;
  readonly clients: number;
  readonly requests: number;
  readonly rps: number;
  readonly p50: number;
  readonly p99: number;
  readonly errors: number;
  readonly perRun: number;
}

/** A photo-sized JPEG of noise (the model's weights are random: only the cost matters). */
async function noiseJpeg(seed: number): Promise<Buffer> {
  return sharp({ create: { width: 320, height: 240, channels: 3, background: { r: 40 * seed, g: 90, b: 160 }, noise: { type: 'gaussian', mean: 100 + seed, sigma: 40 } } }).jpeg({ quality: 90 }).toBuffer();
}

function metric(text: string, name: string): number {
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

/** `total` requests from `clients` concurrent clients; latency quantiles as the nearest rank. */
async function load(url: string, images: readonly Buffer[], type: string, clients: number, total: number): Promise<Omit<Cell, 'bundle' | 'batching' | 'perRun'>> {
  const latencies: number[] = [];
  let errors = 0;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, async () => {
    while (next < total) {
      const i = next++;
      const s = performance.now();
      const r = await fetch(`${url}/v1/score`, { method: 'POST', body: images[i % images.length], headers: { 'Content-Type': type } });
      await r.arrayBuffer();
      if (r.status !== 200) errors++;
      latencies.push(performance.now() - s);
    }
  }));
  const wall = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.ceil(p * latencies.length) - 1)]!;
  return { clients, requests: total, rps: total / wall, p50: q(0.5), p99: q(0.99), errors };
}

const load0 = loadavg()[0]!;
const dir = mkdtempSync(join(tmpdir(), 'setar-bench-serve-'));
process.env.SETAR_CACHE_DIR = join(dir, 'cache');
try {
  const data = await writeDemoData(join(dir, 'data'), { val: 20, test: 10, digits: 5, noise: 20 });
  await createBundle({ model: demoModelDir(), id: { kind: 'folder', name: 'ID_fashion', root: data.val }, out: join(dir, 'demo-bundle') });
  const demoImages = ['ID_test/T-shirt/0.png', 'OOD_clothes/coat/0.png', 'OOD_digits/3/0.png', 'OOD_noise/0.png'].map((p) => readFileSync(join(dir, 'data', p)));

  process.stderr.write('writing a random ViT-B/16 CLIP and its bundle…\n');
  const vit = join(dir, 'vit-b16');
  writeRandomClip(vit, VIT_B16_CONFIG, { seed: 0 });
  for (const f of ['vocab.json', 'merges.txt']) copyFileSync(join(shared, 'fixtures', 'clip-tokenizer', f), join(vit, f));
  for (const c of ['a', 'b', 'c']) {
    mkdirSync(join(dir, 'vit-val', c), { recursive: true });
    for (let i = 0; i < 2; i++) writeFileSync(join(dir, 'vit-val', c, `${i}.jpg`), await noiseJpeg(i));
  }
  await createBundle({ model: vit, id: { kind: 'folder', name: 'toy', root: join(dir, 'vit-val') }, out: join(dir, 'vit-bundle') });
  const vitImages = await Promise.all([0, 1, 2, 3].map(noiseJpeg));

  const setups = [
    { name: 'demo CLIP', bundle: join(dir, 'demo-bundle'), images: demoImages, type: 'image/png', requests: (c: number) => 100 * Math.max(2, c / 2) },
    { name: 'ViT-B/16', bundle: join(dir, 'vit-bundle'), images: vitImages, type: 'image/jpeg', requests: (c: number) => 16 + 4 * c },
  ];
  // Both servers of a bundle run side by side and each cell is measured twice, off and on in turn:
  // this machine is shared, and the better of two rounds is the one least disturbed by other work.
  const cells: Cell[] = [];
  const modes = [['off', 1], ['on (16, 5 ms)', 16]] as const;
  for (const s of setups) {
    const servers = await Promise.all(modes.map(([, maxBatch]) => startServer({ bundle: s.bundle, port: 0, maxBatch, maxDelayMs: 5, maxQueue: 64 })));
    try {
      for (const server of servers) await load(server.url, s.images, s.type, 2, 4); // warm-up: sessions, arenas, workers
      for (const clients of [1, 4, 16]) {
        const best: (Cell | null)[] = modes.map(() => null);
        for (let round = 0; round < 2; round++) {
          for (const [k, server] of servers.entries()) {
            const before = await (await fetch(`${server.url}/metrics`)).text();
            const r = await load(server.url, s.images, s.type, clients, s.requests(clients));
            const after = await (await fetch(`${server.url}/metrics`)).text();
            const perRun = (metric(after, 'setar_batch_size_sum') - metric(before, 'setar_batch_size_sum')) / (metric(after, 'setar_batch_size_count') - metric(before, 'setar_batch_size_count'));
            process.stderr.write(`  ${s.name}, batching ${modes[k]![0]}, ${clients} clients, round ${round + 1}: ${r.rps.toFixed(1)} requests/s\n`);
            if (!best[k] || r.rps > best[k]!.rps) best[k] = { bundle: s.name, batching: modes[k]![0], perRun, ...r };
          }
        }
        cells.push(...best.map((c) => c!));
      }
    } finally {
      await Promise.all(servers.map((x) => x.close()));
    }
  }

  console.log(`setar serve load test — loopback, ${availableParallelism()} cores (load average ${load0.toFixed(1)} at the start, ${loadavg()[0]!.toFixed(1)} at the end), dynamic batching off (--max-batch 1) vs on (--max-batch 16 --max-delay-ms 5)`);
  console.log('bundle     batching        clients  requests  requests/s   p50 ms    p99 ms  errors  images/run');
  for (const c of cells) {
    console.log(`${c.bundle.padEnd(10)} ${c.batching.padEnd(15)} ${String(c.clients).padStart(7)} ${String(c.requests).padStart(9)} ${c.rps.toFixed(1).padStart(11)} ${c.p50.toFixed(1).padStart(8)} ${c.p99.toFixed(1).padStart(9)} ${String(c.errors).padStart(7)} ${c.perRun.toFixed(2).padStart(11)}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
