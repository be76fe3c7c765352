import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let root: string | null = null;

/**
 * The package's root folder (the one holding package.json), found by walking up from this
 * module, so it is right both from the compiled `dist/src/` and from the sources under tsx.
 */
export function packageRoot(): string {
  if (root) return root;
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error(`package.json not found above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
  root = dir;
  return dir;
}

/** A file shipped in the package's `data/` folder (benchmark class names and split lists). */
export function dataFile(name: string): string {
  return join(packageRoot(), 'data', name);
}
