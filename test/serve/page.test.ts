import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBundle } from '../../src/bundle/bundle.js';
import { startServer } from '../../src/serve/server.js';
import { launchBrowser } from '../helpers/browser.js';
import { fixture, REPO_ROOT } from '../helpers/fixtures.js';
import { writeTestImage } from '../helpers/images.js';

/**
 * The page tells the truth (issue 11, items 5–8): the bundle's own scorer by name, the class
 * probabilities `setar classify` reports, an absolute patch-map legend, no stale verdict beside
 * an error, no overlapping layout, a favicon; and `setar serve` fails in words on a busy or bad port.
 */
const MODEL = fixture('clip-tiny-a');

function setar(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'setar.js'), ...args], { encoding: 'utf8', env: { ...process.env, SETAR_CACHE_DIR: join(dir, 'cache') } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

let dir = '';

describe('setar serve: the page tells the truth', () => {
  let server: Awaited<ReturnType<typeof startServer>>;
  let png = '';
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-page-'));
    process.env.SETAR_CACHE_DIR = join(dir, 'cache');
    let k = 0;
    for (const c of ['bird', 'cat', 'dog']) for (let i = 0; i < 3; i++) await writeTestImage(join(dir, 'val', c, `${i}.png`), k++);
    // a bundle whose scorer is mcm_score: the page must not show another scorer's value
    await createBundle({ model: MODEL, id: { kind: 'folder', name: 'toy', root: join(dir, 'val') }, out: join(dir, 'bundle'), scorer: 'mcm_score', threads: 1 });
    server = await startServer({ bundle: join(dir, 'bundle'), port: 0, threads: 1 });
    png = join(dir, 'upload.png');
    await writeTestImage(png, 7, { width: 60, height: 50 });
  });
  after(async () => {
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('5, 7. /v1/score and the page name the bundle\'s scorer; probabilities are classify\'s; a favicon is served', async () => {
    const res = await fetch(`${server.url}/v1/score`, { method: 'POST', headers: { 'Content-Type': 'image/png' }, body: new Uint8Array((await import('node:fs')).readFileSync(png)) });
    const v = (await res.json()) as { scorer: string; score: number; scores: Record<string, number>; top: { label: string; prob: number }[]; patch_probability: number[][] };
    assert.equal(v.scorer, 'mcm_score');
    assert.equal(v.score, v.scores.mcm_score);
    // the classification probabilities are setar classify's (softmax of the logits), not the tempered score softmax
    const labels = join(dir, 'labels.txt');
    writeFileSync(labels, 'bird\ncat\ndog\n');
    const c = setar('classify', '--model', MODEL, '--labels', labels, '--json', png);
    assert.equal(c.code, 0, c.stderr);
    const classify = (JSON.parse(c.stdout) as { top: { label: string; probability: number }[] }[])[0]!.top;
    assert.deepEqual(v.top.map((t) => t.label), classify.map((t) => t.label));
    // float32 server logits vs classify's float64 logits: equal to 1e-5
    v.top.forEach((t, i) => assert.ok(Math.abs(t.prob - classify[i]!.probability) < 1e-5, `${t.label}: ${t.prob} vs ${classify[i]!.probability}`));
    for (const row of v.patch_probability) for (const p of row) assert.ok(p >= 1 / 3 - 1e-9 && p <= 1, `patch probability ${p}`);
    const icon = await fetch(`${server.url}/favicon.ico`);
    assert.equal(icon.status, 200);
    assert.match(icon.headers.get('content-type') ?? '', /^image\/svg\+xml/);
    assert.match(await icon.text(), /^<svg /);

    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      const favicons: string[] = [];
      page.on('response', (r) => { if (/favicon/.test(r.url())) favicons.push(`${r.status()}`); });
      await page.goto(server.url + '/');
      await page.setInputFiles('#file', png);
      await page.waitForSelector('#result[data-verdict]');
      const score = await page.textContent('#score') ?? '';
      assert.match(score, /^mcm_score -?\d\.\d{4} \(lower = more in-distribution\); threshold for mcm_score \(set on ID validation images\): -?\d\.\d{4}/);
      assert.ok(!/gl_mcm/.test(score));
      const shown = await page.$$eval('#top tr', (rows) => rows.map((r) => (r as unknown as { textContent: string }).textContent));
      assert.equal(shown[0], `${classify[0]!.label}${(100 * classify[0]!.probability).toFixed(1)}%`);
      assert.match(await page.textContent('#top caption') ?? '', /softmax of the logits, as setar classify/);
      assert.match(await page.textContent('#legend') ?? '', /like one class \(100%\).*like none of them \(1\/3\)/);
      assert.ok(favicons.every((s) => s === '200'));
    } finally {
      await browser.close();
    }
  });

  it('6. no empty box on first load; an undecodable upload after a good one shows the error only; no overlap', async () => {
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      await page.goto(server.url + '/');
      assert.equal(await page.isVisible('#result'), false, 'nothing to show before an upload');
      await page.setInputFiles('#file', png);
      await page.waitForSelector('#result[data-verdict]');
      assert.equal(await page.isVisible('#result'), true);
      const bad = join(dir, 'bad.png');
      writeFileSync(bad, 'not a png at all');
      await page.setInputFiles('#file', bad);
      await page.waitForFunction("(document.getElementById('error')?.textContent ?? '') !== ''");
      assert.equal(await page.isVisible('#result'), false, 'the previous verdict is gone');
      assert.match(await page.textContent('#error') ?? '', /.+/);
      // the drop zone, the intro text and the checkbox's line do not overlap
      const boxes = await page.$$eval(['h1 + p', '#drop', '#in-browser'].join(','), (els) => els.map((e) => { const r = (e as unknown as { getBoundingClientRect(): { top: number; bottom: number } }).getBoundingClientRect(); return [r.top, r.bottom]; }));
      const [intro, drop, box] = boxes as [number, number][];
      assert.ok(intro![1] <= drop![0] && drop![1] <= box![0], `intro ${intro}, drop zone ${drop}, checkbox ${box}`);
    } finally {
      await browser.close();
    }
  });

  it('8. a busy port is one line naming the port; --port out of range names --port', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    try {
      const r = setar('serve', '--bundle', join(dir, 'bundle'), '--port', String(port));
      assert.equal(r.code, 1);
      assert.equal(r.stderr, `setar: error: port ${port} on 127.0.0.1 is already in use (another setar serve?); choose another with --port\n`);
    } finally {
      blocker.close();
    }
    assert.equal(setar('serve', '--bundle', join(dir, 'bundle'), '--port', '70000').stderr, "setar: error: --port must be an integer in [0, 65535], got '70000'\n");
  });
});
