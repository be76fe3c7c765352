import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/fixtures.js';

describe('the install stays offline-clean and quiet', () => {
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { allowScripts?: Record<string, boolean> };

  it('every installed package with an install script is approved or denied in allowScripts (npm prints no advisory)', () => {
    const withScripts: string[] = [];
    const walk = (dir: string) => {
      for (const name of readdirSync(dir)) {
        if (name.startsWith('.')) continue;
        if (name.startsWith('@')) { walk(join(dir, name)); continue; }
        const p = join(dir, name, 'package.json');
        if (!existsSync(p)) continue;
        const j = JSON.parse(readFileSync(p, 'utf8')) as { name: string; scripts?: Record<string, string> };
        if (['preinstall', 'install', 'postinstall'].some((s) => j.scripts?.[s])) withScripts.push(j.name);
      }
    };
    walk(join(REPO_ROOT, 'node_modules'));
    assert.ok(withScripts.includes('onnxruntime-node'), 'the scan finds install scripts');
    assert.deepEqual(withScripts.filter((n) => typeof pkg.allowScripts?.[n] !== 'boolean'), []);
    // its script would download CUDA binaries, unreachable offline: the bundled CPU and WebGPU binaries are enough
    assert.equal(pkg.allowScripts!['onnxruntime-node'], false);
  });

  it('npx setar --help prints no npm warning (no non-standard .npmrc key)', () => {
    const r = spawnSync('npx', ['--no', '--', 'setar', '--help'], { cwd: REPO_ROOT, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.match(r.stdout, /Usage: setar/);
  });
});
