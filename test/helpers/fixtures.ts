import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root, found from this file whether it runs from test/ (tsx) or dist/test/ (tsc). */
function findRepoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('package.json not found above ' + fileURLToPath(import.meta.url));
    dir = up;
  }
  return dir;
}

export const REPO_ROOT = findRepoRoot();
/** The shared reference material, read in place (`../shared` beside the repository, as in CI). */
export const SHARED = process.env.SETAR_SHARED ?? resolve(REPO_ROOT, '..', 'shared');
export const FIXTURES = join(SHARED, 'fixtures');

/** Path of a file under shared/fixtures. */
export function fixture(...parts: string[]): string {
  return join(FIXTURES, ...parts);
}
