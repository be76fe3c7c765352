import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { startServer } from '../../src/serve/server.js';
import { bombPng } from '../helpers/bombs.js';
import { writeTestImage } from '../helpers/images.js';
import { parsePrometheusText, sampleValue } from '../helpers/prometheus.js';
import { writeToyBundle } from '../helpers/toy-bundle.js';

const KEY = 'metrics-key';

describe('setar serve: GET /metrics (Prometheus text, prom-client)', () => {
  let dir = '';
  let server: Awaited<ReturnType<typeof startServer>>;
  const images: Buffer[] = [];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-metrics-'));
    const { bundle } = await writeToyBundle(dir);
    for (let k = 0; k < 6; k++) {
      const p = join(dir, 'up', `${k}.png`);
      await writeTestImage(p, 500 + 37 * k, { width: 40 + 9 * k, height: 40 });
      images.push(readFileSync(p));
    }
    // unlike the validation images' smooth patterns: black, white and two noise images (OOD verdicts)
    images.push(bombPng(64, 64));
    images.push(await sharp({ create: { width: 48, height: 48, channels: 3, background: '#ffffff' } }).png().toBuffer());
    for (const seed of [1, 2]) {
      const px = Buffer.alloc(48 * 48 * 3);
      let x = seed;
      for (let i = 0; i < px.length; i++) px[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
      images.push(await sharp(px, { raw: { width: 48, height: 48, channels: 3 } }).png().toBuffer());
    }
    server = await startServer({ bundle, port: 0, threads: 1, apiKey: KEY });
  });
  after(async () => {
    await server?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const auth = { Authorization: `Bearer ${KEY}` };
  const post = (body: Uint8Array) => fetch(`${server.url}/v1/score`, { method: 'POST', body, headers: { 'Content-Type': 'image/png', ...auth } });

  it('is protected by the API key', async () => {
    const r = await fetch(`${server.url}/metrics`);
    assert.equal(r.status, 401);
    assert.equal((await r.json() as { error: string }).error, 'this server needs an API key: send the header Authorization: Bearer KEY');
  });

  it('counts requests by route and status, latency, batch sizes, images decoded and refused, and verdicts by label', async (t) => {
    const verdicts: { label: string; ood: boolean }[] = [];
    for (const img of images) {
      const r = await post(img);
      assert.equal(r.status, 200);
      verdicts.push((await r.json()) as { label: string; ood: boolean });
    }
    assert.equal((await post(bombPng(16000, 16000))).status, 413);
    assert.equal((await post(new Uint8Array(300).fill(9))).status, 422);
    assert.equal((await fetch(`${server.url}/nowhere`)).status, 404);
    assert.equal((await fetch(`${server.url}/v1/score`, { method: 'POST', body: images[0], headers: { 'Content-Type': 'image/png' } })).status, 401);
    const res = await fetch(`${server.url}/metrics`, { headers: auth });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const { types, samples } = parsePrometheusText(await res.text());

    for (const [name, type] of [['setar_http_requests_total', 'counter'], ['setar_http_request_duration_seconds', 'histogram'], ['setar_http_requests_in_flight', 'gauge'], ['setar_queue_depth', 'gauge'],
      ['setar_batch_size', 'histogram'], ['setar_images_decoded_total', 'counter'], ['setar_images_refused_total', 'counter'], ['setar_ood_total', 'counter'], ['setar_id_total', 'counter'], ['process_resident_memory_bytes', 'gauge']]) {
      assert.equal(types.get(name), type, name);
    }
    const requests = (labels: Record<string, string>) => sampleValue(samples, 'setar_http_requests_total', labels);
    assert.equal(requests({ route: '/v1/score', method: 'POST', status: '200' }), 10);
    assert.equal(requests({ route: '/v1/score', method: 'POST', status: '413' }), 1);
    assert.equal(requests({ route: '/v1/score', method: 'POST', status: '422' }), 1);
    assert.equal(requests({ route: '/v1/score', method: 'POST', status: '401' }), 1);
    assert.equal(requests({ route: 'other', method: 'GET', status: '404' }), 1);
    assert.equal(requests({ route: '/metrics', method: 'GET', status: '401' }), 1);
    assert.equal(sampleValue(samples, 'setar_http_request_duration_seconds_count', { route: '/v1/score' }), 13);
    assert.equal(sampleValue(samples, 'setar_http_request_duration_seconds_bucket', { route: '/v1/score', le: '+Inf' }), 13);
    assert.equal(sampleValue(samples, 'setar_batch_size_sum'), 10);
    assert.equal(sampleValue(samples, 'setar_images_decoded_total'), 10);
    assert.equal(sampleValue(samples, 'setar_images_refused_total', { reason: 'too_large' }), 1);
    assert.equal(sampleValue(samples, 'setar_images_refused_total', { reason: 'undecodable' }), 1);
    assert.equal(sampleValue(samples, 'setar_http_requests_in_flight'), 1, 'the scrape itself');
    assert.equal(sampleValue(samples, 'setar_queue_depth', { stage: 'decode' }), 0);
    assert.equal(sampleValue(samples, 'setar_queue_depth', { stage: 'model' }), 0);
    t.diagnostic(`verdicts: ${verdicts.filter((v) => v.ood).length} OOD, ${verdicts.filter((v) => !v.ood).length} ID`);
    assert.ok(verdicts.some((v) => v.ood) && verdicts.some((v) => !v.ood), 'both counters are exercised');
    for (const label of ['bird', 'cat', 'dog']) {
      assert.equal(sampleValue(samples, 'setar_ood_total', { label }), verdicts.filter((v) => v.ood && v.label === label).length, `ood ${label}`);
      assert.equal(sampleValue(samples, 'setar_id_total', { label }), verdicts.filter((v) => !v.ood && v.label === label).length, `id ${label}`);
    }
  });
});
