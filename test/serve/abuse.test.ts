import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../src/serve/server.js';
import { RawConnection } from '../helpers/raw-http.js';
import { spawnServe, type ServeProcess } from '../helpers/serve-process.js';
import { writeToyBundle } from '../helpers/toy-bundle.js';

/** How one abusive upload ends, as the client sees it: a status and error text, or a closed connection. */
type Outcome = { status: number; error: string } | 'closed';

const MAX = 1024 * 1024; // --max-mb 1
const CAP = MAX + 64 * 1024; // multipart: the image and 64 KiB of form

function multipartHead(boundary: string, field = 'image', filename = 'a.png'): string {
  return `--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="${filename}"\r\nContent-Type: image/png\r\n\r\n`;
}

describe('setar serve under abusive uploads (a real `setar serve` process, raw TCP on loopback)', () => {
  let dir = '';
  let png: Buffer;
  let serve: ServeProcess;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-abuse-'));
    const toy = await writeToyBundle(dir);
    png = readFileSync(toy.png);
    serve = await spawnServe(['--bundle', toy.bundle, '--max-mb', '1', '--threads', '1']);
  });
  after(async () => {
    serve?.kill();
    rmSync(dir, { recursive: true, force: true });
  });

  /** Sends `steps` on a fresh connection: strings/bytes are written, 'end' half-closes, 'destroy' drops it, a number waits (ms). */
  async function attempt(steps: (string | Uint8Array | 'end' | 'destroy' | number)[]): Promise<Outcome> {
    const c = await RawConnection.open(serve.url);
    for (const s of steps) {
      if (s === 'end') c.end();
      else if (s === 'destroy') c.destroy();
      else if (typeof s === 'number') await new Promise((r) => setTimeout(r, s));
      else await c.write(s);
    }
    if (c.socket.destroyed) {
      await c.closed;
      return 'closed';
    }
    try {
      const r = await c.response();
      c.destroy();
      return { status: r.status, error: r.body.startsWith('{') ? ((JSON.parse(r.body) as { error?: string }).error ?? '') : r.body };
    } catch {
      return 'closed';
    }
  }

  const post = (headers: string, type = 'image/png') => `POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: ${type}\r\n${headers}\r\n`;

  async function assertHealthy(what: string): Promise<void> {
    assert.equal(serve.child.exitCode, null, `${what}: the server exited:\n${serve.stderr()}`);
    const h = await fetch(`${serve.url}/v1/health`);
    assert.equal(h.status, 200, `${what}: health`);
  }

  it('every cut, malformed and aborted upload, raw or multipart, gets an error or a closed connection, and the server stays healthy', async () => {
    const b = 'XyZ';
    const ct = `multipart/form-data; boundary=${b}`;
    const body = Buffer.concat([Buffer.from(multipartHead(b)), png, Buffer.from(`\r\n--${b}--\r\n`)]);
    const cases: [string, (string | Uint8Array | 'end' | 'destroy' | number)[], (o: Outcome) => boolean | RegExp][] = [
      // raw bodies
      ['raw: cut (half of the declared length, then FIN)', [post('Content-Length: 5000\r\n'), png.subarray(0, 100), 'end'], () => true],
      ['raw: aborted mid-body (connection dropped)', [post('Content-Length: 5000\r\n'), png.subarray(0, 100), 50, 'destroy'], () => true],
      ['raw: aborted after 100-continue', [post('Content-Length: 5000\r\nExpect: 100-continue\r\n'), 100, 'destroy'], () => true],
      ['raw: malformed chunked encoding', [post('Transfer-Encoding: chunked\r\n'), 'zz\r\nhello\r\n0\r\n\r\n'], (o) => o === 'closed' || o.status === 400],
      ['raw: chunked body over the limit', [post('Transfer-Encoding: chunked\r\n'), ...Array.from({ length: 20 }, () => `10000\r\n${'a'.repeat(0x10000)}\r\n`), '0\r\n\r\n'], (o) => o !== 'closed' && o.status === 413 && /upload larger than 1048576 bytes/.test(o.error)],
      ['raw: declared length over the limit', [post(`Content-Length: ${MAX + 1}\r\n`)], (o) => o !== 'closed' && o.status === 413],
      ['raw: truncated PNG', [post(`Content-Length: 200\r\n`), png.subarray(0, 200)], (o) => o !== 'closed' && o.status === 422 && /cannot decode image upload/.test(o.error)],
      ['garbage request line', ['HELLO\r\n\r\n'], (o) => o === 'closed' || o.status === 400],
      ['a request target that is no URL', ['GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n'], (o) => o === 'closed' || o.status === 400],
      ['oversized header', [`GET /v1/health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`], (o) => o === 'closed' || o.status === 431],
      // multipart
      ['multipart: closing boundary never comes (the 76-byte crash)', [post(`Content-Length: ${multipartHead(b).length + 3}\r\n`, ct), multipartHead(b) + 'abc'], (o) => o !== 'closed' && o.status === 400 && /bad multipart request: Unexpected end of form/.test(o.error)],
      ['multipart: cut mid-file, then FIN', [post('Content-Length: 5000\r\n', ct), multipartHead(b), png.subarray(0, 50), 'end'], () => true],
      ['multipart: aborted mid-file', [post('Content-Length: 5000\r\n', ct), multipartHead(b), png.subarray(0, 50), 50, 'destroy'], () => true],
      ['multipart: cut inside the part headers', [post('Content-Length: 5000\r\n', ct), `--${b}\r\nContent-Disposition: form-da`, 50, 'destroy'], () => true],
      ['multipart: no boundary', [post('Content-Length: 10\r\n', 'multipart/form-data'), '0123456789'], (o) => o !== 'closed' && o.status === 400 && /bad multipart request: Multipart: Boundary not found/.test(o.error)],
      ['multipart: malformed part header', [post('Content-Length: 40\r\n', ct), `--${b}\r\nno colon here\r\n\r\nabc\r\n--${b}--\r\n`.padEnd(40, ' ')], (o) => o !== 'closed' && o.status === 400],
      ['multipart: preamble only', [post('Content-Length: 11\r\n', ct), 'hello world'], (o) => o !== 'closed' && o.status === 400],
      ['multipart: image field over the limit', [post(`Content-Length: ${MAX + 1000}\r\n`, ct), multipartHead(b), Buffer.alloc(MAX + 1000 - multipartHead(b).length)], (o) => o !== 'closed' && o.status === 413 && /upload larger than 1048576 bytes/.test(o.error)],
      ['multipart: total body over the cap (chunked, other fields)', [post('Transfer-Encoding: chunked\r\n', ct), ...Array.from({ length: 12 }, (_, i) => { const part = `--${b}\r\nContent-Disposition: form-data; name="f${i}"; filename="x"\r\n\r\n${'a'.repeat(100_000)}\r\n`; return `${part.length.toString(16)}\r\n${part}\r\n`; }), '0\r\n\r\n'], (o) => o !== 'closed' && o.status === 413 && o.error === `multipart body larger than ${CAP} bytes (an image of at most ${MAX} bytes and 65536 bytes of form)`],
      ['multipart: too many parts', [post('Content-Length: 2000\r\n', ct), Array.from({ length: 20 }, (_, i) => `--${b}\r\nContent-Disposition: form-data; name="f${i}"\r\n\r\nv\r\n`).join('').padEnd(2000, '-')], (o) => o !== 'closed' && o.status === 413 && /more than 16 parts/.test(o.error)],
      ['multipart: the image part cut before the closing boundary of a complete body', [post(`Content-Length: ${body.length - 8}\r\n`, ct), body.subarray(0, body.length - 8)], (o) => o !== 'closed' && o.status === 400],
    ];
    for (const [what, steps, ok] of cases) {
      const outcome = await attempt(steps);
      const verdict = ok(outcome);
      assert.ok(verdict === true || (verdict instanceof RegExp && outcome !== 'closed' && verdict.test(outcome.error)), `${what}: unexpected outcome ${JSON.stringify(outcome)}`);
      await assertHealthy(what);
    }
    // and it still scores, raw and multipart
    const raw = await fetch(`${serve.url}/v1/score`, { method: 'POST', body: png, headers: { 'Content-Type': 'image/png' } });
    assert.equal(raw.status, 200);
    const multi = await fetch(`${serve.url}/v1/score`, { method: 'POST', body: body, headers: { 'Content-Type': ct } });
    assert.equal(multi.status, 200);
    assert.deepEqual(await multi.json(), await raw.json());
    assert.doesNotMatch(serve.stderr(), /Unhandled|uncaught|error on/i);
  });

  it('HEAD where GET exists, 405 with Allow elsewhere, OPTIONS lists the methods', async () => {
    for (const path of ['/', '/v1/health', '/v1/ready', '/v1/labels', '/bundle/bundle.json', '/client.js']) {
      const get = await fetch(serve.url + path);
      const head = await fetch(serve.url + path, { method: 'HEAD' });
      assert.equal(head.status, get.status, `HEAD ${path}`);
      assert.equal(head.headers.get('content-length'), get.headers.get('content-length'), `HEAD ${path}: Content-Length of the GET body`);
      assert.equal((await head.arrayBuffer()).byteLength, 0, `HEAD ${path}: no body`);
    }
    const cases: [string, string, string][] = [
      ['GET', '/v1/score', 'POST, OPTIONS'],
      ['HEAD', '/v1/score', 'POST, OPTIONS'],
      ['PUT', '/v1/score', 'POST, OPTIONS'],
      ['POST', '/v1/health', 'GET, HEAD, OPTIONS'],
      ['DELETE', '/', 'GET, HEAD, OPTIONS'],
      ['POST', '/bundle/bundle.json', 'GET, HEAD, OPTIONS'],
    ];
    for (const [method, path, allow] of cases) {
      const r = await fetch(serve.url + path, { method, ...(method === 'POST' || method === 'PUT' ? { body: 'x' } : {}) });
      assert.equal(r.status, 405, `${method} ${path}`);
      assert.equal(r.headers.get('allow'), allow, `${method} ${path}: Allow`);
      if (method !== 'HEAD') assert.match(((await r.json()) as { error: string }).error, new RegExp(`${method} is not allowed on ${path.replace(/\//g, '\\/')}`));
    }
    const opt = await fetch(`${serve.url}/v1/score`, { method: 'OPTIONS' });
    assert.equal(opt.status, 204);
    assert.equal(opt.headers.get('allow'), 'POST, OPTIONS');
    assert.equal((await fetch(`${serve.url}/nope`, { method: 'HEAD' })).status, 404);
  });
});

describe("setar serve: Node's timeouts end stalled requests (in-process server, short timeouts)", () => {
  let dir = '';
  let server: Awaited<ReturnType<typeof startServer>>;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-timeouts-'));
    const toy = await writeToyBundle(dir);
    server = await startServer({ bundle: toy.bundle, port: 0, threads: 1, timeouts: { headersMs: 400, requestMs: 800, checkIntervalMs: 100 } });
  });
  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('headers that never end and an upload that stalls get 408 and their connection closed; the server serves on', async () => {
    const headers = await RawConnection.open(server.url);
    await headers.write('GET /v1/health HTTP/1.1\r\nHost: x\r\n');
    const body = await RawConnection.open(server.url);
    await body.write('POST /v1/score HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000\r\n\r\nabc');
    for (const [what, c] of [['headers', headers], ['body', body]] as const) {
      await c.waitFor(/^HTTP\/1\.1 408 /, `408 for stalled ${what}`);
      await c.closed;
    }
    assert.equal((await fetch(`${server.url}/v1/health`)).status, 200);
  });
});
