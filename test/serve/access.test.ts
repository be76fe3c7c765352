import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, request, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../src/serve/server.js';
import { launchBrowser } from '../helpers/browser.js';
import { spawnServe } from '../helpers/serve-process.js';
import { writeToyBundle } from '../helpers/toy-bundle.js';

const KEY = 'k3y-Of-the-test';

/** A request with exactly these headers (Origin included, which browsers set and fetch clients may not). */
function raw(url: string, o: { method?: string; headers?: Record<string, string>; body?: Uint8Array }): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: o.method ?? 'GET', headers: o.headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

const errorOf = (body: string) => (JSON.parse(body) as { error: string }).error;

/** Page script: appends a plain HTML form (multipart, field "image") posting to `action`. */
const formScript = (action: string) => `(() => {
  const f = document.createElement('form');
  f.id = 'post-form';
  f.method = 'post';
  f.enctype = 'multipart/form-data';
  f.action = ${JSON.stringify(action)};
  f.innerHTML = '<input type="file" name="image" id="form-file">';
  document.body.append(f);
})()`;

describe('setar serve: API key and cross-origin requests', () => {
  let dir = '';
  let bundle = '';
  let pngPath = '';
  let png: Buffer;
  let keyed: Awaited<ReturnType<typeof startServer>>;
  /** A second origin: serves one page that calls the detector from a browser. */
  let other: Server;
  let otherUrl = '';
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-access-'));
    const toy = await writeToyBundle(dir);
    bundle = toy.bundle;
    pngPath = toy.png;
    png = readFileSync(pngPath);
    other = createServer((_req, res) => {
      res.writeHead(200, { 'Content-Type': 'text/html' });
      res.end('<!doctype html><title>another site</title>');
    });
    await new Promise<void>((r) => other.listen(0, '127.0.0.1', r));
    otherUrl = `http://localhost:${(other.address() as { port: number }).port}`;
    keyed = await startServer({ bundle, port: 0, threads: 1, apiKey: KEY, corsOrigins: [otherUrl] });
  });
  after(async () => {
    await keyed?.close();
    await new Promise((r) => other?.close(r));
    rmSync(dir, { recursive: true, force: true });
  });

  const score = (url: string, headers: Record<string, string> = {}) => raw(`${url}/v1/score`, { method: 'POST', headers: { 'Content-Type': 'image/png', ...headers }, body: png });

  it('POST /v1/score and /bundle/* need Authorization: Bearer KEY; health, ready, labels and the page stay open', async () => {
    const none = await score(keyed.url);
    assert.equal(none.status, 401);
    assert.equal(none.headers['www-authenticate'], 'Bearer');
    assert.equal(errorOf(none.body), 'this server needs an API key: send the header Authorization: Bearer KEY');
    for (const wrong of ['Bearer nope', `Bearer ${KEY}x`, `Bearer ${KEY.slice(0, -1)}`, `Basic ${KEY}`, 'Bearer', `Bearer ${'a'.repeat(5000)}`]) {
      const r = await score(keyed.url, { Authorization: wrong });
      assert.equal(r.status, 401, wrong.slice(0, 40));
      assert.equal(errorOf(r.body), 'wrong API key');
    }
    const ok = await score(keyed.url, { Authorization: `Bearer ${KEY}` });
    assert.equal(ok.status, 200);
    assert.match(ok.body, /"label":"(bird|cat|dog)"/);
    assert.equal((await score(keyed.url, { Authorization: `bearer  ${KEY}` })).status, 200, 'the scheme is case-insensitive');
    for (const path of ['/', '/v1/health', '/v1/ready', '/v1/labels', '/client.js']) assert.equal((await raw(keyed.url + path, {})).status, 200, path);
    assert.equal((await raw(`${keyed.url}/bundle/image_encoder.onnx`, {})).status, 401);
    assert.equal((await raw(`${keyed.url}/bundle/image_encoder.onnx`, { headers: { Authorization: `Bearer ${KEY}` } })).status, 200);
  });

  it('a cross-origin POST is refused unless --cors-origin allows its origin; same-origin and non-browser requests pass', async () => {
    const auth = { Authorization: `Bearer ${KEY}` };
    const evil = await score(keyed.url, { ...auth, Origin: 'https://evil.example' });
    assert.equal(evil.status, 403);
    assert.equal(errorOf(evil.body), 'cross-origin request from https://evil.example refused; start the server with --cors-origin https://evil.example to allow that page');
    assert.equal((await score(keyed.url, { ...auth, Origin: 'null' })).status, 403, 'opaque origin');
    // the refusal comes before the body is read: a multipart form from a page never reaches busboy
    const form = await raw(`${keyed.url}/v1/score`, { method: 'POST', headers: { Origin: 'https://evil.example', 'Content-Type': 'multipart/form-data; boundary=x' }, body: Buffer.from('--x\r\n') });
    assert.equal(form.status, 403);
    const same = await score(keyed.url, { ...auth, Origin: keyed.url });
    assert.equal(same.status, 200);
    assert.equal(same.headers['access-control-allow-origin'], undefined);
    const allowed = await score(keyed.url, { ...auth, Origin: otherUrl });
    assert.equal(allowed.status, 200);
    assert.equal(allowed.headers['access-control-allow-origin'], otherUrl);
    // preflight (a page sending Authorization triggers one)
    const pre = await raw(`${keyed.url}/v1/score`, { method: 'OPTIONS', headers: { Origin: otherUrl, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization,content-type' } });
    assert.equal(pre.status, 204);
    assert.equal(pre.headers['access-control-allow-origin'], otherUrl);
    assert.match(String(pre.headers['access-control-allow-headers']), /Authorization/);
    const preEvil = await raw(`${keyed.url}/v1/score`, { method: 'OPTIONS', headers: { Origin: 'https://evil.example', 'Access-Control-Request-Method': 'POST' } });
    assert.equal(preEvil.status, 403);
  });

  it('in a browser: the page asks for the key and scores on the server and in the browser; another origin allowed by --cors-origin reads verdicts', async () => {
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      await page.goto(keyed.url + '/');
      await page.setInputFiles('#file', pngPath);
      await page.waitForFunction("document.getElementById('error').textContent !== ''");
      assert.match(await page.textContent('#error') ?? '', /needs an API key/);
      await page.fill('#api-key', KEY);
      await page.setInputFiles('#file', []);
      await page.setInputFiles('#file', pngPath);
      await page.waitForSelector('#result[data-source="server"]');
      const server = JSON.parse((await page.getAttribute('#result', 'data-verdict'))!) as { label: string };
      await page.check('#in-browser');
      await page.setInputFiles('#file', []);
      await page.setInputFiles('#file', pngPath);
      await page.waitForSelector('#result[data-source="browser"]', { timeout: 60_000 });
      const inBrowser = JSON.parse((await page.getAttribute('#result', 'data-verdict'))!) as { label: string };
      assert.equal(inBrowser.label, server.label);

      const site = await browser.newPage();
      await site.goto(otherUrl + '/');
      const got = await site.evaluate(async ([url, key, bytes]) => {
        const body = new FormData();
        body.append('image', new Blob([new Uint8Array(bytes)], { type: 'image/png' }), 'x.png');
        const r = await fetch(url + '/v1/score', { method: 'POST', body, headers: { Authorization: 'Bearer ' + key } });
        return { status: r.status, label: ((await r.json()) as { label: string }).label };
      }, [keyed.url, KEY, [...png]] as const);
      assert.deepEqual(got, { status: 200, label: server.label });
    } finally {
      await browser.close();
    }
  });

  it("without a key, the page's own form post works and another site's form post is refused", async () => {
    const open = await startServer({ bundle, port: 0, threads: 1 });
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      // a plain HTML form, posted by the browser (multipart, Origin: the page's)
      await page.goto(open.url + '/');
      await page.evaluate(formScript('/v1/score'));
      await page.setInputFiles('#form-file', pngPath);
      await Promise.all([page.waitForNavigation(), page.evaluate("document.getElementById('post-form').submit()")]);
      assert.match(await page.textContent('body') ?? '', /"label":"(bird|cat|dog)"/);

      const site = await browser.newPage();
      await site.goto(otherUrl + '/');
      await site.evaluate(formScript(`${open.url}/v1/score`));
      await site.setInputFiles('#form-file', pngPath);
      await Promise.all([site.waitForNavigation(), site.evaluate("document.getElementById('post-form').submit()")]);
      assert.match(await site.textContent('body') ?? '', /cross-origin request from http:\/\/localhost:\d+ refused/);
    } finally {
      await browser.close();
      await open.close();
    }
  });

  it('a non-loopback address needs --api-key (or SETAR_API_KEY); --insecure-no-auth serves it open with a warning', async () => {
    await assert.rejects(spawnServe(['--bundle', bundle, '--host', '0.0.0.0']), /setar: error: refusing to serve on 0\.0\.0\.0 without authentication: it is reachable from other machines\. Give --api-key KEY \(or set SETAR_API_KEY\), or pass --insecure-no-auth/);
    const viaEnv = await spawnServe(['--bundle', bundle, '--host', '0.0.0.0', '--threads', '1'], { SETAR_API_KEY: KEY });
    try {
      const port = new URL(viaEnv.url).port;
      assert.equal((await score(`http://127.0.0.1:${port}`)).status, 401);
      assert.equal((await score(`http://127.0.0.1:${port}`, { Authorization: `Bearer ${KEY}` })).status, 200);
    } finally {
      viaEnv.kill();
    }
    const open = await spawnServe(['--bundle', bundle, '--host', '0.0.0.0', '--threads', '1', '--insecure-no-auth']);
    try {
      assert.match(open.stderr(), /warning: serving on 0\.0\.0\.0 with no API key \(--insecure-no-auth\)/);
      assert.equal((await score(`http://127.0.0.1:${new URL(open.url).port}`)).status, 200);
    } finally {
      open.kill();
    }
  });
});
