import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBundle, Detector } from '../../src/bundle/bundle.js';
import { startServer } from '../../src/serve/server.js';
import { fixture } from '../helpers/fixtures.js';
import { writeTestImage } from '../helpers/images.js';
import { launchBrowser } from '../helpers/browser.js';

const MODEL = fixture('clip-tiny-a');

describe('setar serve (real HTTP on loopback, real browser)', () => {
  let dir = '';
  let server: Awaited<ReturnType<typeof startServer>>;
  let jpeg: Buffer;
  let png: string;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-serve-'));
    process.env.SETAR_CACHE_DIR = join(dir, 'cache');
    let k = 0;
    for (const c of ['bird', 'cat', 'dog']) for (let i = 0; i < 4; i++) await writeTestImage(join(dir, 'val', c, `${i}.jpg`), k++);
    await createBundle({ model: MODEL, id: { kind: 'folder', name: 'toy', root: join(dir, 'val') }, out: join(dir, 'bundle'), threads: 1 });
    server = await startServer({ bundle: join(dir, 'bundle'), port: 0, maxBytes: 200_000, threads: 1 });
    jpeg = readFileSync(join(dir, 'val', 'cat', '1.jpg'));
    png = join(dir, 'upload.png');
    await writeTestImage(png, 99, { width: 64, height: 48 });
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const post = (body: Parameters<typeof fetch>[1] extends infer O ? (O extends { body?: infer B } ? B : never) : never, type?: string) => fetch(`${server.url}/v1/score`, { method: 'POST', body, headers: type ? { 'Content-Type': type } : {} });

  it('health, labels, and a verdict equal to the bundle detector\'s, raw or multipart', async () => {
    assert.deepEqual(await (await fetch(`${server.url}/v1/health`)).json(), { status: 'ok' });
    assert.deepEqual(await (await fetch(`${server.url}/v1/labels`)).json(), { labels: ['bird', 'cat', 'dog'] });
    const raw = await post(jpeg, 'image/jpeg');
    assert.equal(raw.status, 200);
    const v = (await raw.json()) as { label: string; top: { label: string; prob: number }[]; scores: Record<string, number>; ood: boolean; threshold: number; patch_map: number[][] };
    const d = await Detector.load(join(dir, 'bundle'), { threads: 1 });
    assert.deepEqual(v, JSON.parse(JSON.stringify(await d.scoreImage(jpeg))));
    await d.release();
    assert.equal(v.patch_map.length, 4);
    assert.ok(Math.abs(v.top.reduce((a, t) => a + t.prob, 0) - 1) < 1e-9);
    const form = new FormData();
    form.append('image', new Blob([jpeg], { type: 'image/jpeg' }), 'cat.jpg');
    const multi = await post(form);
    assert.equal(multi.status, 200);
    assert.deepEqual(await multi.json(), v);
  });

  it('bad uploads get a 4xx JSON error and the server keeps serving', async () => {
    const cases: [string, Promise<Response>, number, RegExp][] = [
      ['not an image', post('hello', 'text/plain'), 415, /Content-Type "text\/plain" is not an image/],
      ['empty', post(new Uint8Array(0), 'image/png'), 400, /the upload is empty/],
      ['oversized', post(new Uint8Array(300_000), 'image/jpeg'), 413, /upload larger than 200000 bytes/],
      ['truncated', post(jpeg.subarray(0, 200), 'image/jpeg'), 422, /upload/],
      ['garbage bytes', post(new Uint8Array(500).fill(7), 'image/png'), 422, /upload/],
      ['multipart without image', (() => { const f = new FormData(); f.append('photo', new Blob([jpeg])); return post(f); })(), 400, /no file field "image"/],
      ['GET on score', fetch(`${server.url}/v1/score`), 405, /use POST/],
      ['unknown route', fetch(`${server.url}/v2/x`), 404, /no route GET \/v2\/x/],
    ];
    for (const [what, p, status, msg] of cases) {
      const r = await p;
      assert.equal(r.status, status, what);
      assert.match(((await r.json()) as { error: string }).error, msg, what);
    }
    assert.equal((await fetch(`${server.url}/v1/health`)).status, 200);
  });

  it('the page: a person picks an image and sees the verdict, top classes and the patch map', async () => {
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      await page.goto(server.url + '/');
      await page.setInputFiles('#file', png);
      await page.waitForSelector('#result:not([hidden])');
      assert.match(await page.textContent('#verdict') ?? '', /^(Out of distribution|In distribution: (bird|cat|dog))$/);
      assert.equal(await page.$$eval('#top tr', (r) => r.length), 3);
      assert.equal(await page.getAttribute('#view', 'data-patches'), '16');
      // the overlay is drawn: the canvas is not a plain copy of a blank area
      const painted = await page.$eval('#view', (c) => { const d = (c as unknown as { getContext(k: string): { getImageData(x: number, y: number, w: number, h: number): { data: Uint8ClampedArray } } }).getContext('2d')!.getImageData(0, 0, 336, 336).data; let s = 0; for (let i = 0; i < d.length; i += 4) s += d[i]!; return s; });
      assert.ok(painted > 0);
    } finally {
      await browser.close();
    }
  });
});
