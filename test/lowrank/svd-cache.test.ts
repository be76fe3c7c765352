import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { clearSvdMemoryCache, defaultSvdCacheDir, getSvd, svdCacheKey } from '../../src/lowrank/svd-cache.js';
import { svd, type SvdFactors } from '../../src/lowrank/svd.js';
import { gaussian } from './helpers.js';

/** An svd that counts its calls: the "did it recompute?" spy, free of timing. */
function countingSvd(): { calls: number; compute: (a: Float32Array, rows: number, cols: number) => SvdFactors } {
  const spy = {
    calls: 0,
    compute: (a: Float32Array, rows: number, cols: number) => {
      spy.calls++;
      return svd(a, rows, cols);
    },
  };
  return spy;
}

/** Runs `fn`, collecting the SETAR_SVD_CACHE warnings it emits. */
async function collectWarnings<T>(fn: () => Promise<T>): Promise<{ value: T; warnings: string[] }> {
  const warnings: string[] = [];
  const listener = (w: Error & { code?: string }) => {
    if (w.code === 'SETAR_SVD_CACHE') warnings.push(w.message);
  };
  process.on('warning', listener);
  try {
    const value = await fn();
    // 'warning' events are emitted on the next tick.
    await new Promise((resolve) => setImmediate(resolve));
    return { value, warnings };
  } finally {
    process.off('warning', listener);
  }
}

function assertSameFactors(a: SvdFactors, b: SvdFactors): void {
  assert.deepEqual([a.rows, a.cols, a.k], [b.rows, b.cols, b.k]);
  assert.deepEqual(a.u, b.u);
  assert.deepEqual(a.s, b.s);
  assert.deepEqual(a.vh, b.vh);
}

describe('getSvd (disk + memory cache)', () => {
  let dir: string;
  const weight = Float32Array.from(gaussian(24, 16, 42));
  const shape = [24, 16] as const;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'setar-svd-cache-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  beforeEach(async () => {
    clearSvdMemoryCache();
    for (const f of await readdir(dir)) await rm(join(dir, f), { force: true });
  });

  it('computes once, writes <key>.svd, then reads identical factors back without recomputing', async () => {
    const spy = countingSvd();
    const first = await getSvd(weight, shape, { cacheDir: dir, compute: spy.compute });
    assert.equal(spy.calls, 1);
    assertSameFactors(first, svd(weight, 24, 16));
    assert.deepEqual(await readdir(dir), [`${svdCacheKey(weight, shape)}.svd`], 'one file, no temporary left over');

    // Same object from memory.
    assert.equal(await getSvd(weight, shape, { cacheDir: dir, compute: spy.compute }), first);
    // From disk after the memory cache is gone, also for a copy of the weight (keyed by content).
    clearSvdMemoryCache();
    const fromDisk = await getSvd(weight.slice(), shape, { cacheDir: dir, compute: spy.compute });
    assert.equal(spy.calls, 1, 'no recomputation');
    assert.notEqual(fromDisk, first);
    assertSameFactors(fromDisk, first);
  });

  it('keys on the shape and the exact bytes', () => {
    const other = weight.slice();
    other[5] = Math.fround(other[5] + 1e-6);
    assert.notEqual(svdCacheKey(other, shape), svdCacheKey(weight, shape));
    assert.notEqual(svdCacheKey(weight, [16, 24]), svdCacheKey(weight, shape));
    assert.match(svdCacheKey(weight, shape), /^[0-9a-f]{64}$/);
  });

  for (const [label, corrupt] of [
    ['truncated', (b: Buffer) => b.subarray(0, b.length - 8)],
    ['a flipped payload byte', (b: Buffer) => (b[b.length - 3] ^= 0x40, b)],
    ['a bad magic', (b: Buffer) => (b.write('XXXX', 0, 'latin1'), b)],
    ['empty', () => Buffer.alloc(0)],
  ] as const) {
    it(`a cache file with ${label} is ignored with a warning, recomputed and rewritten`, async () => {
      const spy = countingSvd();
      const good = await getSvd(weight, shape, { cacheDir: dir, compute: spy.compute });
      const file = join(dir, `${svdCacheKey(weight, shape)}.svd`);
      const original = await readFile(file);
      await writeFile(file, corrupt(Buffer.from(original)));
      clearSvdMemoryCache();
      const { value, warnings } = await collectWarnings(() => getSvd(weight, shape, { cacheDir: dir, compute: spy.compute }));
      assert.equal(spy.calls, 2, 'recomputed');
      assertSameFactors(value, good);
      assert.equal(warnings.length, 1, `one warning, got ${JSON.stringify(warnings)}`);
      assert.match(warnings[0], new RegExp(`ignoring corrupt SVD cache file .*${svdCacheKey(weight, shape)}\\.svd: .*; recomputing`));
      assert.deepEqual(await readFile(file), original, 'rewritten');
    });
  }

  it('noCache computes without touching the disk', async () => {
    const spy = countingSvd();
    await getSvd(weight, shape, { cacheDir: dir, noCache: true, compute: spy.compute });
    assert.equal(spy.calls, 1);
    assert.deepEqual(await readdir(dir), []);
  });

  it('concurrent requests for one weight share one computation', async () => {
    const spy = countingSvd();
    const [a, b] = await Promise.all([
      getSvd(weight, shape, { cacheDir: dir, compute: spy.compute }),
      getSvd(weight.slice(), shape, { cacheDir: dir, compute: spy.compute }),
    ]);
    assert.equal(spy.calls, 1);
    assert.equal(a, b);
  });

  it('an unwritable cache directory only warns', async () => {
    const blocker = join(dir, 'not-a-dir');
    await writeFile(blocker, 'x');
    const spy = countingSvd();
    const { value, warnings } = await collectWarnings(() => getSvd(weight, shape, { cacheDir: join(blocker, 'svd'), compute: spy.compute }));
    assert.equal(value.k, 16);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0], /cannot write SVD cache file .*; continuing without it/);
  });

  it('rejects a weight that does not match the shape', async () => {
    await assert.rejects(getSvd(weight, [24, 15], { cacheDir: dir }), {
      name: 'RangeError',
      message: /'weight' passed to 'getSvd' must have 24\*15 = 360 elements, got 384/,
    });
  });

  it('the default directory is $SETAR_CACHE_DIR/svd, else ~/.cache/setar/svd', () => {
    const saved = process.env.SETAR_CACHE_DIR;
    try {
      process.env.SETAR_CACHE_DIR = '/tmp/setar-cache-root';
      assert.equal(defaultSvdCacheDir(), join('/tmp/setar-cache-root', 'svd'));
      delete process.env.SETAR_CACHE_DIR;
      assert.match(defaultSvdCacheDir(), /[/\\]\.cache[/\\]setar[/\\]svd$/);
    } finally {
      if (saved === undefined) delete process.env.SETAR_CACHE_DIR;
      else process.env.SETAR_CACHE_DIR = saved;
    }
  });
});
