import { spawnSync } from 'node:child_process';

/**
 * A Python interpreter with PyTorch, for optional cross-checks of files setar writes or reads
 * against `torch.load` itself. CI need not have one: tests that use it skip when none is found.
 * Looked for: $SETAR_TORCH_PYTHON, then /usr/bin/python3 (Debian's python3-torch), then python3.
 */
let found: string | null | undefined;

export function torchPython(): string | null {
  if (found !== undefined) return found;
  found = null;
  const candidates = [process.env.SETAR_TORCH_PYTHON, '/usr/bin/python3', 'python3'].filter((c): c is string => !!c);
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import torch'], { encoding: 'utf8', timeout: 120_000 });
    if (r.status === 0) {
      found = py;
      break;
    }
  }
  return found;
}

/** Runs a Python script with `args`; returns stdout, or throws with stderr. */
export function runPython(py: string, script: string, args: readonly string[] = []): string {
  const r = spawnSync(py, ['-c', script, ...args], { encoding: 'utf8', timeout: 300_000 });
  if (r.status !== 0) throw new Error(`python exited with ${r.status}: ${r.stderr}`);
  return r.stdout;
}
