import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from './fixtures.js';

/** A `setar serve` child process. */
export interface ServeProcess {
  readonly child: ChildProcess;
  readonly url: string;
  /** Its stderr so far. */
  stderr(): string;
  /** Resolves when it exits: the exit code (null if killed) and the signal. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>;
  /** Peak resident memory of the whole process so far (VmHWM, Linux), in bytes. */
  peakRss(): number;
  /** SIGKILL unless it has exited. */
  kill(): void;
}

/**
 * Starts `node bin/setar.js serve ...args --port 0` and resolves with its URL once it listens
 * (from its "setar serve: http://…" line). Rejects with its stderr when it exits first.
 */
export function spawnServe(args: readonly string[], env: NodeJS.ProcessEnv = {}): Promise<ServeProcess> {
  const child = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'setar.js'), 'serve', ...args, '--port', '0'], { env: { ...process.env, ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.setEncoding('utf8');
  child.stderr!.on('data', (c: string) => (err += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, at: performance.now() })));
  return new Promise((resolve, reject) => {
    const onData = () => {
      const m = /setar serve: (http:\/\/\S+)/.exec(err);
      if (!m) return;
      child.stderr!.off('data', onData);
      resolve({
        child,
        url: m[1]!,
        stderr: () => err,
        exited,
        peakRss: () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) * 1024,
        kill: () => { if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL'); },
      });
    };
    child.stderr!.on('data', onData);
    void exited.then(({ code, signal }) => reject(new Error(`setar serve exited (code ${code}, signal ${signal}) before listening:\n${err}`)));
  });
}
