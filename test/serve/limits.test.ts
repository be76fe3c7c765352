import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../src/serve/server.js';
import { bombPng } from '../helpers/bombs.js';
import { spawnServe, type ServeProcess } from '../helpers/serve-process.js';
import { writeToyBundle } from '../helpers/toy-bundle.js';

const GiB = 1024 ** 3;
/** 16000 x 16000 = 256 MP in 31 KB: refused from its header. */
const BOMB = bombPng(16000, 16000);
/** 6320 x 6320 = 39.9 MP, just under the default limit: decoded for real (about 1 s and 120 MB of RGB each). */
const NEAR = bombPng(6320, 6320);

const postPng = (url: string, body: Uint8Array) => fetch(`${url}/v1/score`, { method: 'POST', body, headers: { 'Content-Type': 'image/png' } });

describe('setar serve: bounded work per image', () => {
  let dir = '';
  let png: Buffer;
  let bundle = '';
  let serve: ServeProcess;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-limits-'));
    const toy = await writeToyBundle(dir);
    bundle = toy.bundle;
    png = readFileSync(toy.png);
    serve = await spawnServe(['--bundle', bundle, '--threads', '1']);
  });
  after(() => {
    serve?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  it('an image above --max-pixels is refused from its header with 413 naming the limit, raw or multipart', async () => {
    const raw = await postPng(serve.url, BOMB);
    assert.equal(raw.status, 413);
    assert.equal(((await raw.json()) as { error: string }).error, 'cannot decode image upload: 16000 x 16000 = 256000000 pixels exceeds the limit of 40000000 pixels (--max-pixels)');
    const form = new FormData();
    form.append('image', new Blob([BOMB], { type: 'image/png' }), 'bomb.png');
    const multi = await fetch(`${serve.url}/v1/score`, { method: 'POST', body: form });
    assert.equal(multi.status, 413);
    assert.match(((await multi.json()) as { error: string }).error, /^cannot decode image bomb\.png: 16000 x 16000 = 256000000 pixels exceeds the limit of 40000000 pixels/);
  });

  it('three bombs and three 40 MP images in flight: peak RSS < 1 GiB, and a normal request is answered within 3 s meanwhile', async (t) => {
    // All seven requests go out at once; the 40 MP images take seconds to decode in the workers,
    // one at a time, so they are still in flight while the normal request is answered — checked
    // below by the order of the answers, not assumed.
    // warm both decoding workers and the model first: the figure is the steady state, not start-up
    await Promise.all([0, 1].map(() => postPng(serve.url, png).then((r) => r.arrayBuffer())));
    const done: string[] = [];
    const track = async (what: string, p: Promise<Response>) => {
      const r = await p;
      await r.arrayBuffer();
      done.push(what);
      return r.status;
    };
    const heavy = [
      ...[0, 1, 2].map((i) => track(`bomb${i}`, postPng(serve.url, BOMB))),
      ...[0, 1, 2].map((i) => track(`near${i}`, postPng(serve.url, NEAR))),
    ];
    const t0 = performance.now();
    const normal = await postPng(serve.url, png);
    const latency = performance.now() - t0;
    assert.equal(normal.status, 200);
    done.push('normal');
    const statuses = await Promise.all(heavy);
    const peak = serve.peakRss();
    t.diagnostic(`normal request answered in ${latency.toFixed(0)} ms with 3 bombs (16000x16000) and 3 images of 6320x6320 in flight; server peak RSS ${(peak / 2 ** 20).toFixed(0)} MiB; order of answers: ${done.join(' ')}`);
    assert.deepEqual(statuses, [413, 413, 413, 200, 200, 200]);
    assert.ok(done.indexOf('normal') < done.indexOf('near2') || done.indexOf('normal') < done.indexOf('near1'), `the 40 MP images were not in flight: ${done.join(' ')}`);
    // the acceptance lines
    assert.ok(latency < 3000, `normal request took ${latency.toFixed(0)} ms (limit 3000)`);
    assert.ok(peak < GiB, `peak RSS ${(peak / 2 ** 20).toFixed(0)} MiB (limit 1024)`);
  });

  it('--max-pixels sets the limit', async () => {
    const small = await spawnServe(['--bundle', bundle, '--threads', '1', '--max-pixels', '3000']);
    try {
      const r = await postPng(small.url, png); // 64 x 48 = 3072 pixels
      assert.equal(r.status, 413);
      assert.match(((await r.json()) as { error: string }).error, /64 x 48 = 3072 pixels exceeds the limit of 3000 pixels \(--max-pixels\)/);
    } finally {
      small.kill();
    }
  });

  it('a full queue answers 503 with Retry-After; a request past its deadline answers 504; the server serves on', async () => {
    const busy = await startServer({ bundle, port: 0, threads: 1, maxQueue: 2 });
    try {
      const statuses = await Promise.all([0, 1, 2].map(async () => {
        const r = await postPng(busy.url, NEAR);
        const body = (await r.json()) as { error?: string };
        if (r.status === 503) {
          assert.equal(r.headers.get('retry-after'), '1');
          assert.match(body.error!, /the server is busy: 2 images are waiting or being scored \(--max-queue\)/);
        }
        return r.status;
      }));
      assert.deepEqual(statuses.sort(), [200, 200, 503]);
      assert.equal((await postPng(busy.url, png)).status, 200);
    } finally {
      await busy.close();
    }
    const slow = await startServer({ bundle, port: 0, threads: 1, scoreTimeoutMs: 200 });
    try {
      const r = await postPng(slow.url, NEAR); // about 1 s of decoding
      assert.equal(r.status, 504);
      assert.match(((await r.json()) as { error: string }).error, /no verdict within 0\.2 s of the upload \(--score-timeout\)/);
      assert.equal((await fetch(`${slow.url}/v1/health`)).status, 200);
    } finally {
      await slow.close();
    }
  });
});
