import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Runs a `setar finetune` command line (node arguments, its --out last) uninterrupted into
 * `<dir>/whole`, then into `<dir>/killed` killed with SIGKILL as soon as its first epoch
 * checkpoint appears (`killed` may look at it then), then resumes it there. The caller compares
 * the two folders.
 */
export async function runKilledAndResumed(args: (out: string) => string[], dir: string, epochs: number, killed?: (dir: string) => void): Promise<void> {
  const run = (out: string, kill?: (p: ReturnType<typeof spawn>) => void) => new Promise<number | null>((resolve) => {
    const p = spawn(process.execPath, args(join(dir, out)), { stdio: 'ignore', env: { ...process.env } });
    kill?.(p);
    p.on('exit', (code) => resolve(code));
  });
  assert.equal(await run('whole'), 0);
  const state = join(dir, 'killed', 'checkpoint', 'state.json');
  let epochAtKill = -1;
  const code = await run('killed', (p) => {
    const poll = setInterval(() => {
      if (!existsSync(state)) return;
      epochAtKill = (JSON.parse(readFileSync(state, 'utf8')) as { epoch: number }).epoch;
      p.kill('SIGKILL');
      clearInterval(poll);
    }, 2);
    p.on('exit', () => clearInterval(poll));
  });
  assert.equal(code, null, 'the second run was killed');
  assert.ok(epochAtKill >= 1 && epochAtKill < epochs, `killed after epoch ${epochAtKill}`);
  killed?.(join(dir, 'killed'));
  assert.equal(await run('killed'), 0);
  assert.match(readFileSync(join(dir, 'killed', 'finetune.log'), 'utf8'), /resuming after epoch/);
}
