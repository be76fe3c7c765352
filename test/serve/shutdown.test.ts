import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RawConnection } from '../helpers/raw-http.js';
import { spawnServe, type ServeProcess } from '../helpers/serve-process.js';
import { writeToyBundle } from '../helpers/toy-bundle.js';

/**
 * A score request in progress: headers sent with `Expect: 100-continue`, the server's
 * "100 Continue" received (so its handler runs), half the body sent.
 */
async function inFlight(url: string, png: Buffer): Promise<RawConnection> {
  const c = await RawConnection.open(url);
  await c.write(`POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: ${png.length}\r\nExpect: 100-continue\r\n\r\n`);
  await c.waitFor(/^HTTP\/1\.1 100 Continue\r\n\r\n/);
  await c.write(png.subarray(0, png.length >> 1));
  return c;
}

/** Resolves once the server refuses new connections (its listener is closed). */
async function refused(url: string): Promise<void> {
  const u = new URL(url);
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(Number(u.port), u.hostname, () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (!ok) return;
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('setar serve: graceful shutdown on SIGTERM and SIGINT (a real process)', () => {
  let dir = '';
  let png: Buffer;
  let bundle = '';
  const running: ServeProcess[] = [];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-shutdown-'));
    const toy = await writeToyBundle(dir);
    bundle = toy.bundle;
    png = readFileSync(toy.png);
  });
  after(() => {
    for (const s of running) s.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal}: stops accepting, health and ready turn 503, the 16 requests in progress are answered, exit 0`, async (t) => {
      const serve = await spawnServe(['--bundle', bundle, '--threads', '1', '--drain-timeout', '20']);
      running.push(serve);
      const requests = await Promise.all(Array.from({ length: 16 }, () => inFlight(serve.url, png)));
      // probes whose headers are still arriving when the signal comes
      const probes = await Promise.all(['/v1/health', '/v1/ready'].map(async (path) => {
        const c = await RawConnection.open(serve.url);
        await c.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n`);
        return c;
      }));
      await new Promise((r) => setTimeout(r, 300)); // let the server parse the partial headers
      const t0 = performance.now();
      serve.child.kill(signal);
      await refused(serve.url);
      for (const p of probes) {
        await p.write('\r\n');
        const r = await p.response();
        assert.equal(r.status, 503);
        assert.equal(r.headers.connection, 'close');
        assert.match(r.body, /"status":"draining"/);
      }
      await Promise.all(requests.map((c) => c.write(png.subarray(png.length >> 1))));
      const answers = await Promise.all(requests.map((c) => c.response()));
      const { code, at } = await serve.exited;
      const seconds = (at - t0) / 1000;
      const answered = answers.filter((a) => a.status === 200 && /"label":"(bird|cat|dog)"/.test(a.body)).length;
      t.diagnostic(`${signal}: ${answered}/16 in-flight requests answered 200, exit code ${code}, ${seconds.toFixed(2)} s from the signal to the exit`);
      assert.equal(answered, 16);
      assert.ok(answers.every((a) => a.headers.connection === 'close'), 'answers during the drain close their connection');
      assert.equal(code, 0);
      assert.match(serve.stderr(), new RegExp(`${signal}: no new connections; draining`));
      assert.match(serve.stderr(), new RegExp(`16 requests in progress at ${signal}, 18 answered during the drain, 0 ended by the drain timeout`));
    });
  }

  it('--drain-timeout ends a stalled upload; the other request is answered; exit 0', async (t) => {
    const serve = await spawnServe(['--bundle', bundle, '--threads', '1', '--drain-timeout', '1']);
    running.push(serve);
    const stalled = await inFlight(serve.url, png);
    const ok = await inFlight(serve.url, png);
    const t0 = performance.now();
    serve.child.kill('SIGTERM');
    await refused(serve.url);
    await ok.write(png.subarray(png.length >> 1));
    assert.equal((await ok.response()).status, 200);
    await stalled.closed; // the server ended it
    const { code, at } = await serve.exited;
    t.diagnostic(`stalled upload ended by --drain-timeout 1: exit code ${code}, ${((at - t0) / 1000).toFixed(2)} s from SIGTERM to the exit`);
    assert.equal(code, 0);
    assert.doesNotMatch(stalled.received, /HTTP\/1\.1 200/);
    assert.match(serve.stderr(), /1 requests in progress at SIGTERM|2 requests in progress at SIGTERM/);
    assert.match(serve.stderr(), /1 answered during the drain, 1 ended by the drain timeout/);
  });
});
