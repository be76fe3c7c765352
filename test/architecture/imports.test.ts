import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { REPO_ROOT } from '../helpers/fixtures.js';

/**
 * The dependency rule of the project (DEVELOPERS guide): imports point one way,
 * `io|onnx|tensor → autodiff|lowrank|ood|image|data → models → eval|search|train → bundle|demo|serve → cli`.
 * A module may import from its own layer or a layer to its left, never to its right, and no
 * chain of imports may come back to where it started.
 */
const LAYERS: readonly (readonly string[])[] = [
  ['io', 'onnx', 'tensor.ts', 'runtime', 'rng.ts', 'paths.ts', 'hub'],
  ['autodiff', 'lowrank', 'ood', 'image', 'data', 'report'],
  ['models'],
  ['config', 'eval', 'search', 'train'],
  ['bundle', 'demo', 'serve'],
  ['cli', 'web', 'index.ts'],
];

const SRC = join(REPO_ROOT, 'src');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** The layer of a source file, by its top folder (or its own name at the top). */
function layerOf(file: string): number {
  const top = relative(SRC, file).split('/')[0]!;
  return LAYERS.findIndex((l) => l.includes(top));
}

/** Relative imports of a file: static `from '…'`, side-effect `import '…'` and dynamic `import('…')`, resolved to .ts paths. */
function importsOf(file: string): string[] {
  // comments out first: doc examples show imports too
  const text = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
  const specs = [...text.matchAll(/(?:from\s+|import\s*\(\s*|^import\s+)['"](\.{1,2}\/[^'"]+)['"]/gm)].map((m) => m[1]!);
  return specs.map((s) => resolve(dirname(file), s).replace(/\.js$/, '.ts'));
}

/** `file (layer) imports dep (layer)` for each import against the order. */
function violations(graph: ReadonlyMap<string, readonly string[]>): string[] {
  const bad: string[] = [];
  for (const [f, deps] of graph) {
    for (const d of deps) {
      if (layerOf(d) > layerOf(f)) bad.push(`${relative(SRC, f)} (layer ${layerOf(f)}) imports ${relative(SRC, d)} (layer ${layerOf(d)})`);
    }
  }
  return bad;
}

/** Each import cycle found by a depth-first walk, as `a → b → a`. */
function cycles(graph: ReadonlyMap<string, readonly string[]>): string[] {
  const state = new Map<string, 'open' | 'done'>();
  const found: string[] = [];
  const visit = (f: string, path: string[]): void => {
    if (state.get(f) === 'done') return;
    if (state.get(f) === 'open') {
      found.push([...path.slice(path.indexOf(f)), f].map((p) => relative(SRC, p)).join(' → '));
      return;
    }
    state.set(f, 'open');
    for (const d of graph.get(f) ?? []) visit(d, [...path, f]);
    state.set(f, 'done');
  };
  for (const f of graph.keys()) visit(f, []);
  return found;
}

describe('imports point one way', () => {
  const files = sources(SRC);
  const graph = new Map(files.map((f) => [f, importsOf(f)]));

  it('every folder of src/ has a layer', () => {
    const unknown = [...new Set(files.map((f) => relative(SRC, f).split('/')[0]!))].filter((t) => !LAYERS.some((l) => l.includes(t)));
    assert.deepEqual(unknown, [], `add these to LAYERS: ${unknown.join(', ')}`);
  });

  it('no module imports from a layer to its right', () => {
    assert.deepEqual(violations(graph), []);
  });

  it('every relative import names a file that exists', () => {
    const missing = [...graph].flatMap(([f, deps]) => deps.filter((d) => !graph.has(d)).map((d) => `${relative(SRC, f)} → ${relative(SRC, d)}`));
    assert.deepEqual(missing, []);
  });

  it('there is no import cycle', () => {
    assert.deepEqual(cycles(graph), []);
  });

  it('the checks catch a backwards import and a cycle (on a made-up graph)', () => {
    const f = (p: string) => join(SRC, p);
    assert.ok(graph.get(f('cli/main.ts'))!.length > 5, 'the import parser reads main.ts');
    const made = new Map([
      [f('models/a.ts'), [f('search/b.ts')]],
      [f('search/b.ts'), [f('eval/c.ts')]],
      [f('eval/c.ts'), [f('search/b.ts')]],
    ]);
    assert.deepEqual(violations(made), ['models/a.ts (layer 2) imports search/b.ts (layer 3)']);
    assert.deepEqual(cycles(made), ['search/b.ts → eval/c.ts → search/b.ts']);
  });
});
