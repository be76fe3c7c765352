import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBundle, type Verdict } from '../../src/bundle/bundle.js';
import { startServer } from '../../src/serve/server.js';
import { fixture } from '../helpers/fixtures.js';
import { writeTestImage } from '../helpers/images.js';
import { launchBrowser } from '../helpers/browser.js';
import type { Precision } from '../../src/onnx/precision.js';

const PRECISIONS: readonly Precision[] = ['fp32', 'fp16', 'int8'];

const MODEL = fixture('clip-tiny-a');

/**
 * Tolerance between the browser's and the server's scores. Both paths feed the encoder the same
 * float32 pixels (PNG decoding is lossless and exact in browsers, and the preprocessing is the
 * same Pillow-exact TypeScript) and share the verdict math (src/bundle/verdict.ts), so the only
 * difference is the encoder itself: onnxruntime-web's wasm kernels (SIMD128, one thread) and
 * onnxruntime-node's native ones (AVX/FMA, MLAS blocking) sum float32 products in different orders
 * and fuse differently, which moves the embeddings by a few float32 ulps per layer. Scores are
 * O(1) softmax-derived quantities (energy: T · logsumexp, O(10)), so 1e-4 is far above that
 * rounding noise yet far below any difference a bug in preprocessing or the math would make.
 */
const TOL = 1e-4;

/**
 * The same bound for the reduced-precision bundles. fp16: the weights are stored in half but
 * both runtimes turn them back into the same float32 values and compute in float32, so the fp32
 * reasoning holds unchanged (measured max 8.3e-6). int8: both run the same exact integer
 * arithmetic, but an activation whose x / scale lands within float32 noise of a rounding
 * midpoint can round to the neighbouring level in one runtime, moving that MatMul output by
 * scale_x · |w| (1/255 of the activation's range times one weight): measured max 2.7e-5 on
 * these images; a wrong scale, zero point or weight layout moves scores by 1e-2 and more.
 */
const TOL_BY_PRECISION = { fp32: TOL, fp16: TOL, int8: TOL } as const;

describe('setar serve: the same bundle scored in the browser (onnxruntime-web, WebGPU or wasm)', () => {
  let dir = '';
  let server: Awaited<ReturnType<typeof startServer>>;
  const servers: Partial<Record<Precision, Awaited<ReturnType<typeof startServer>>>> = {};
  const pngs: string[] = [];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-client-'));
    process.env.SETAR_CACHE_DIR = join(dir, 'cache');
    let k = 0;
    for (const c of ['bird', 'cat', 'dog']) for (let i = 0; i < 4; i++) await writeTestImage(join(dir, 'val', c, `${i}.jpg`), k++);
    for (const precision of PRECISIONS) {
      const out = join(dir, precision === 'fp32' ? 'bundle' : `bundle-${precision}`);
      await createBundle({ model: MODEL, id: { kind: 'folder', name: 'toy', root: join(dir, 'val') }, out, threads: 1, precision });
      servers[precision] = await startServer({ bundle: out, port: 0, threads: 1 });
    }
    server = servers.fp32!;
    // landscape, portrait (resize + crop paths) and one smaller than the crop on one side
    for (const [k2, width, height] of [[99, 64, 48], [5, 41, 77], [17, 300, 20]] as const) {
      const p = join(dir, `upload-${k2}.png`);
      await writeTestImage(p, k2, { width, height });
      pngs.push(p);
    }
  });
  after(async () => {
    for (const s of Object.values(servers)) await s.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves only the three bundle files, the wasm backend with its content types, and the client', async () => {
    for (const f of ['bundle.json', 'image_encoder.onnx', 'text_features.safetensors']) {
      const r = await fetch(`${server.url}/bundle/${f}`);
      assert.equal(r.status, 200, f);
      assert.deepEqual(new Uint8Array(await r.arrayBuffer()), new Uint8Array(readFileSync(join(dir, 'bundle', f))), f);
    }
    for (const bad of ['recipe.json', '..%2Fbundle%2Fbundle.json', '', 'x']) assert.equal((await fetch(`${server.url}/bundle/${bad}`)).status, 404, bad);
    const post = await fetch(`${server.url}/bundle/bundle.json`, { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get('allow'), 'GET, HEAD, OPTIONS');
    const wasm = await fetch(`${server.url}/ort/ort-wasm-simd-threaded.asyncify.wasm`);
    assert.equal(wasm.headers.get('content-type'), 'application/wasm');
    assert.deepEqual([...new Uint8Array(await wasm.arrayBuffer()).subarray(0, 4)], [0, 0x61, 0x73, 0x6d]); // \0asm
    assert.match((await fetch(`${server.url}/ort/ort-wasm-simd-threaded.asyncify.mjs`)).headers.get('content-type') ?? '', /^text\/javascript/);
    assert.equal((await fetch(`${server.url}/ort/ort.node.min.js`)).status, 404);
    const client = await fetch(`${server.url}/client.js`);
    assert.match(client.headers.get('content-type') ?? '', /^text\/javascript/);
    const src = await client.text();
    assert.match(src, /export\s*\{[^}]*loadClientDetector/);
    assert.doesNotMatch(src, /from\s*["'](node:|sharp|fs)/);
  });

  /** Scores the PNGs in the page of a browser and on the server; returns the largest difference. */
  async function compareInBrowser(server: Awaited<ReturnType<typeof startServer>>, webgpu: boolean, TOL: number): Promise<number> {
    const browser = await launchBrowser({ webgpu });
    const backend = webgpu ? 'webgpu' : 'wasm';
    let maxDiff = 0;
    try {
      const page = await browser.newPage();
      const external: string[] = [];
      page.on('request', (r) => { if (!r.url().startsWith(server.url) && !r.url().startsWith('blob:')) external.push(r.url()); });
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      await page.goto(server.url + '/');
      await page.check('#in-browser');
      for (const png of pngs) {
        await page.setInputFiles('#file', png);
        await page.waitForSelector('#result[data-source="browser"][data-verdict]', { timeout: 60_000 }).catch(async (e: unknown) => {
          throw new Error(`${(e as Error).message}; page error: ${await page.textContent('#error')} ${errors.join('; ')}`);
        });
        const client = JSON.parse((await page.getAttribute('#result', 'data-verdict'))!) as Verdict;
        assert.equal(await page.getAttribute('#result', 'data-backend'), backend);
        assert.match(await page.textContent('#status') ?? '', webgpu ? /^scored in this browser with WebGPU: a WebGPU adapter is available$/ : /^scored in this browser with WebAssembly \(CPU\): navigator\.gpu gives no adapter/);
        const res = await fetch(`${server.url}/v1/score`, { method: 'POST', body: readFileSync(png), headers: { 'Content-Type': 'image/png' } });
        assert.equal(res.status, 200);
        const want = (await res.json()) as Verdict;
        assert.equal(client.label, want.label, png);
        assert.equal(client.ood, want.ood, png);
        assert.equal(client.threshold, want.threshold);
        assert.deepEqual(Object.keys(client.scores).sort(), Object.keys(want.scores).sort());
        const diffs: [string, number][] = [];
        for (const [k, v] of Object.entries(want.scores)) diffs.push([`scores.${k}`, Math.abs(client.scores[k]! - v)]);
        assert.deepEqual(client.top.map((x) => x.label), want.top.map((x) => x.label), png);
        client.top.forEach((x, i) => diffs.push([`top[${i}].prob`, Math.abs(x.prob - want.top[i]!.prob)]));
        assert.equal(client.patch_map.length, want.patch_map.length);
        client.patch_map.forEach((row, r) => row.forEach((x, q) => diffs.push([`patch_map[${r}][${q}]`, Math.abs(x - want.patch_map[r]![q]!)])));
        for (const [what, d] of diffs) {
          assert.ok(d <= TOL, `${png} ${what}: |client - server| = ${d} > ${TOL}`);
          maxDiff = Math.max(maxDiff, d);
        }
        // the same verdict UI as the server path
        assert.match(await page.textContent('#verdict') ?? '', /^(Out of distribution|In distribution: (bird|cat|dog))$/);
        assert.equal(await page.getAttribute('#view', 'data-patches'), '16');
        await page.setInputFiles('#file', []);
      }
      // the server path is still the default and still works from the same page
      await page.uncheck('#in-browser');
      await page.setInputFiles('#file', pngs[0]!);
      await page.waitForSelector('#result[data-source="server"][data-verdict]');
      assert.deepEqual(external, [], 'the page loads nothing from outside the server (blob: URLs are its own previews)');
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
    }
    return maxDiff;
  }

  for (const precision of PRECISIONS) it(`"score in this browser" without a GPU adapter runs wasm and gives the server's verdict on PNGs, ${precision} bundle: same label and OOD flag, every score within ${TOL_BY_PRECISION[precision]}`, async (t) => {
    t.diagnostic(`${precision}: max |client - server| over scores, top probs and patch maps: ${(await compareInBrowser(servers[precision]!, false, TOL_BY_PRECISION[precision])).toExponential(3)}`);
  });

  it('with a GPU adapter (Chromium --enable-unsafe-webgpu) the page scores on WebGPU, with the server\'s verdict within 1e-4', async (t) => {
    t.diagnostic(`max |client (WebGPU) - server| over scores, top probs and patch maps: ${(await compareInBrowser(server, true, TOL)).toExponential(3)}`);
  });

  it('chooseBackend: webgpu exactly when navigator.gpu gives an adapter', async () => {
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      await page.goto(server.url + '/');
      const choices = await page.evaluate(async () => {
        const { chooseBackend } = (await import(String('/client.js'))) as { chooseBackend: (gpu?: unknown) => Promise<{ backend: string; reason: string }> };
        return [
          await chooseBackend(null),
          await chooseBackend({ requestAdapter: async () => null }),
          await chooseBackend({ requestAdapter: async () => ({ features: new Set() }) }),
          await chooseBackend({ requestAdapter: async () => { throw new Error('lost'); } }),
          await chooseBackend(), // this browser's own navigator.gpu: the GPU is off
        ];
      });
      assert.deepEqual(choices, [
        { backend: 'wasm', reason: 'this browser has no WebGPU (navigator.gpu is absent)' },
        { backend: 'wasm', reason: 'navigator.gpu gives no adapter (no usable GPU, or WebGPU is disabled)' },
        { backend: 'webgpu', reason: 'a WebGPU adapter is available' },
        { backend: 'wasm', reason: 'navigator.gpu.requestAdapter() failed: lost' },
        { backend: 'wasm', reason: 'navigator.gpu gives no adapter (no usable GPU, or WebGPU is disabled)' },
      ]);
    } finally {
      await browser.close();
    }
  });
});
