// `npm run bench:serve`: load test of `setar serve` on loopback with the demo model's bundle:
// 200 requests from 8 concurrent clients, p50 / p99 latency and the error count.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBundle } from '../src/bundle/bundle.js';
import { demoModelDir, writeDemoData } from '../src/demo/run-demo.js';
import { startServer } from '../src/serve/server.js';

const dir = mkdtempSync(join(tmpdir(), 'setar-bench-serve-'));
process.env.SETAR_CACHE_DIR = join(dir, 'cache');
try {
  const data = await writeDemoData(join(dir, 'data'), { val: 20, test: 10, digits: 5, noise: 20 });
  await createBundle({ model: demoModelDir(), id: { kind: 'folder', name: 'ID_fashion', root: data.val }, out: join(dir, 'bundle') });
  const server = await startServer({ bundle: join(dir, 'bundle'), port: 0 });
  const images = ['ID_test/T-shirt/0.png', 'OOD_clothes/coat/0.png', 'OOD_digits/3/0.png', 'OOD_noise/0.png'].map((p) => readFileSync(join(dir, 'data', p)));
  const total = 200;
  const clients = 8;
  const latencies: number[] = [];
  let errors = 0;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: clients }, async () => {
    while (next < total) {
      const i = next++;
      const s = performance.now();
      const r = await fetch(`${server.url}/v1/score`, { method: 'POST', body: images[i % images.length], headers: { 'Content-Type': 'image/png' } });
      await r.json();
      if (r.status !== 200) errors++;
      latencies.push(performance.now() - s);
    }
  }));
  const wall = (performance.now() - t0) / 1000;
  latencies.sort((a, b) => a - b);
  const q = (p: number) => latencies[Math.min(latencies.length - 1, Math.ceil(p * latencies.length) - 1)]!;
  console.log(`setar serve load test — demo CLIP bundle, ${total} requests (28x28 PNGs), ${clients} concurrent clients, loopback`);
  console.log(`  ${errors} errors; ${(total / wall).toFixed(0)} requests/s; latency p50 ${q(0.5).toFixed(1)} ms, p99 ${q(0.99).toFixed(1)} ms, max ${latencies.at(-1)!.toFixed(1)} ms`);
  await server.close();
} finally {
  rmSync(dir, { recursive: true, force: true });
}
