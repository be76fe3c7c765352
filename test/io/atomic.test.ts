import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openOutputFolder, removeOrphanTempFiles, writeFileAtomic } from '../../src/io/atomic.js';

/**
 * A process that writes `path` with writeFileAtomic's temporary-file scheme and is SIGKILLed in the
 * middle, leaving `.NAME.PID.STAMP.tmp` behind: what a killed search leaves. Returns that file.
 */
function killedWriter(dir: string, name: string): string {
  const script = `const fs = require('node:fs'); fs.writeFileSync(${JSON.stringify(dir)} + '/.${name}.' + process.pid + '.' + Date.now().toString(36) + '.tmp', 'half'); process.kill(process.pid, 'SIGKILL');`;
  const r = spawnSync(process.execPath, ['-e', script]);
  assert.equal(r.signal, 'SIGKILL');
  const left = readdirSync(dir).filter((f) => f.startsWith(`.${name}.`) && f.endsWith('.tmp'));
  assert.equal(left.length, 1);
  return join(dir, left[0]!);
}

describe('orphan temporary files of atomic writers', () => {
  let dir = '';
  before(() => { dir = mkdtempSync(join(tmpdir(), 'setar-atomic-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('removes those of killed writers (any depth, SVD-cache names too), keeps a live writer\'s and every other file', async () => {
    const out = join(dir, 'out');
    mkdirSync(join(out, 'checkpoint'), { recursive: true });
    const orphan = killedWriter(out, 'search_state.json');
    const nested = killedWriter(join(out, 'checkpoint'), 'adapters.safetensors');
    const pid = Number(orphan.split('.').at(-3));
    const svdStyle = join(out, `abc123.svd.${pid}.0a1b2c.tmp`);
    writeFileSync(svdStyle, 'x');
    // a writer that is alive: another process still writing its temporary file
    const live = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)']);
    try {
      const liveTmp = join(out, `.config_best.json.${live.pid}.lq2x3.tmp`);
      writeFileSync(liveTmp, 'in progress');
      // the same live pid, but untouched for 11 minutes: a reused pid, not a writer
      const staleTmp = join(out, `.old.json.${live.pid}.lq2x3.tmp`);
      writeFileSync(staleTmp, 'x');
      const past = new Date(Date.now() - 11 * 60_000);
      utimesSync(staleTmp, past, past);
      // this process's own (a run reusing the pid of the killed one, as pid 1 in containers)
      const own = join(out, `.eval.log.${process.pid}.zz.tmp`);
      writeFileSync(own, 'x');
      const keep = ['search.log', 'notes.tmp', 'a.1.tmp', '.x.12.tmp.bak'].map((f) => join(out, f));
      for (const f of keep) writeFileSync(f, 'keep');
      writeFileAtomic(join(out, 'search.log'), 'written atomically');

      const removed = openOutputFolder(out).sort();
      assert.deepEqual(removed, [orphan, nested, svdStyle, staleTmp, own].sort());
      for (const f of [liveTmp, ...keep]) assert.ok(existsSync(f), `${f} kept`);
      assert.deepEqual(removeOrphanTempFiles(out), [], 'nothing left to remove');
      assert.deepEqual(removeOrphanTempFiles(join(dir, 'missing')), [], 'a missing folder has nothing to clean');
    } finally {
      live.kill();
    }
  });
});
