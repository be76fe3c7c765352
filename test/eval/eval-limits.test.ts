import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parse } from 'csv-parse/sync';
import { fixture, REPO_ROOT } from '../helpers/fixtures.js';
import { bombPng } from '../helpers/bombs.js';
import { writeTestImage } from '../helpers/images.js';

/** `setar ARGS` in a child process that reports its peak RSS (maxRSS, whole process) on stderr; `dir` holds the launcher. */
function setarWithPeakRss(dir: string, args: string[], env: NodeJS.ProcessEnv): { code: number; stderr: string; peakRss: number } {
  const main = pathToFileURL(join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js')).href;
  const launcher = join(dir, 'setar-peak-rss.mjs');
  writeFileSync(launcher, `const { main } = await import(${JSON.stringify(main)});\nconst code = await main(process.argv);\nprocess.stderr.write('PEAK_RSS_KB ' + process.resourceUsage().maxRSS + '\\n');\nprocess.exit(code);\n`);
  const r = spawnSync(process.execPath, [launcher, ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  const m = /PEAK_RSS_KB (\d+)/.exec(r.stderr);
  return { code: r.status ?? -1, stderr: r.stderr, peakRss: m ? Number(m[1]) * 1024 : NaN };
}

describe('setar eval on abusive data: decompression bombs, a symlink cycle, a killed run\'s temporary file', () => {
  let dir = '';
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-eval-limits-'));
    let k = 0;
    for (const c of ['bird', 'cat', 'dog']) for (let i = 0; i < 2; i++) await writeTestImage(join(dir, 'id', c, `${i}.png`), k++);
    for (let i = 0; i < 4; i++) await writeTestImage(join(dir, 'ood', 'sub', `n${i}.png`), 50 + i);
    const bomb = bombPng(16000, 16000);
    for (let i = 0; i < 6; i++) writeFileSync(join(dir, 'ood', `bomb${i}.png`), bomb);
    symlinkSync(join(dir, 'ood'), join(dir, 'ood', 'sub', 'loop'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('skips and lists the bombs (from their headers) and the cycle, scores each image once, removes the orphan temporary file', (t) => {
    const out = join(dir, 'out');
    mkdirSync(out);
    // what a killed run leaves: writeFileAtomic's temporary file, its writer gone
    const killed = spawnSync(process.execPath, ['-e', `require('node:fs').writeFileSync(${JSON.stringify(out)} + '/.scores_ood_test.csv.' + process.pid + '.x1.tmp', 'half'); process.kill(process.pid, 'SIGKILL')`]);
    const orphan = join(out, `.scores_ood_test.csv.${killed.pid}.x1.tmp`);
    assert.ok(existsSync(orphan));
    // and one a live process is writing: kept
    const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    const liveTmp = join(out, `.other.json.${live.pid}.x2.tmp`);
    writeFileSync(liveTmp, 'in progress');
    try {
      const r = setarWithPeakRss(dir, ['eval', '--model', fixture('clip-tiny-a'), '--id', `ID_toy=${join(dir, 'id')}`, '--ood', `OOD_bombs=${join(dir, 'ood')}`, '--batch-size', '4', '--threads', '1', '--out', out], { SETAR_CACHE_DIR: join(dir, 'cache') });
      t.diagnostic(`eval with 6 bombs of 16000x16000: peak RSS ${(r.peakRss / 2 ** 20).toFixed(0)} MiB`);
      assert.equal(r.code, 0, r.stderr);
      const skipped = readFileSync(join(out, 'skipped_OOD_bombs_test.txt'), 'utf8').trim().split('\n');
      assert.equal(skipped[0], `sub/loop/\tdirectory symlink cycle: leads back to '${join(dir, 'ood')}'`);
      assert.deepEqual(skipped.slice(1), Array.from({ length: 6 }, (_, i) => `bomb${i}.png\t16000 x 16000 = 256000000 pixels exceeds the limit of 40000000 pixels (--max-pixels)`));
      const rows = parse(readFileSync(join(out, 'scores_OOD_bombs_test.csv'), 'utf8')) as string[][];
      assert.deepEqual(rows.slice(1).map((x) => x[0]), ['sub/n0.png', 'sub/n1.png', 'sub/n2.png', 'sub/n3.png']);
      assert.ok(r.peakRss < 1024 ** 3, `peak RSS ${(r.peakRss / 2 ** 20).toFixed(0)} MiB`);
      assert.ok(!existsSync(orphan), 'the orphan is removed');
      assert.ok(existsSync(liveTmp), 'a live writer\'s file is kept');
      assert.match(readFileSync(join(out, 'eval.log'), 'utf8'), new RegExp(`removed ${orphan.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}, a temporary file left by an interrupted run`));
      assert.match(readFileSync(join(out, 'eval.log'), 'utf8'), /OOD_bombs: not walking .*sub\/loop: directory symlink cycle/);

      // --max-pixels: a higher limit lets a smaller "bomb" through to the decoder, a lower one refuses ordinary images
      const low = setarWithPeakRss(dir, ['eval', '--model', fixture('clip-tiny-a'), '--id', `ID_toy=${join(dir, 'id')}`, '--ood', `OOD_bombs=${join(dir, 'ood')}`, '--max-pixels', '100', '--threads', '1', '--out', join(dir, 'out-low')], { SETAR_CACHE_DIR: join(dir, 'cache') });
      assert.notEqual(low.code, 0);
      assert.match(low.stderr, /setar: error: dataset ID_toy: none of its 6 images could be read/);
      assert.match(readFileSync(join(dir, 'out-low', 'eval.log'), 'utf8'), /pixels exceeds the limit of 100 pixels/);
    } finally {
      live.kill();
    }
  });
});
