import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../../src/serve/server.js';
import { writeTestImage } from '../helpers/images.js';
import { parsePrometheusText, sampleValue } from '../helpers/prometheus.js';
import { writeToyBundle } from '../helpers/toy-bundle.js';

describe('setar serve: dynamic batching gives every image the answer it gets alone', () => {
  let dir = '';
  let bundle = '';
  const images: Buffer[] = [];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-batching-'));
    bundle = (await writeToyBundle(dir)).bundle;
    // 16 distinct images of different sizes, PNG and JPEG
    for (let k = 0; k < 16; k++) {
      const p = join(dir, 'up', `${k}.${k % 2 ? 'png' : 'jpg'}`);
      await writeTestImage(p, 300 + k, { width: 30 + 7 * k, height: 90 - 3 * k });
      images.push(readFileSync(p));
    }
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const score = (url: string, body: Buffer) => fetch(`${url}/v1/score`, { method: 'POST', body, headers: { 'Content-Type': body[0] === 0x89 ? 'image/png' : 'image/jpeg' } }).then(async (r) => {
    assert.equal(r.status, 200);
    return r.text();
  });

  it('16 concurrent requests run in batches; each JSON answer is byte-identical to the unbatched one', async (t) => {
    const single = await startServer({ bundle, port: 0, threads: 1, maxBatch: 1 });
    const alone: string[] = [];
    try {
      for (const img of images) alone.push(await score(single.url, img));
    } finally {
      await single.close();
    }
    // a long delay so that batches form whatever the machine's load
    const batched = await startServer({ bundle, port: 0, threads: 1, maxBatch: 16, maxDelayMs: 250 });
    try {
      const together = await Promise.all(images.map((img) => score(batched.url, img)));
      const { samples } = parsePrometheusText(await (await fetch(`${batched.url}/metrics`)).text());
      const runs = sampleValue(samples, 'setar_batch_size_count');
      const singles = sampleValue(samples, 'setar_batch_size_bucket', { le: '1' });
      t.diagnostic(`16 requests in ${runs} model runs (${singles} of a single image)`);
      assert.equal(sampleValue(samples, 'setar_batch_size_sum'), 16);
      assert.ok(runs < 16, `no batch formed: ${runs} runs`);
      together.forEach((json, i) => assert.equal(json, alone[i], `image ${i}: batched answer differs from the unbatched one`));
      assert.equal(new Set(alone).size, 16, 'the images are distinct');
    } finally {
      await batched.close();
    }
  });
});
