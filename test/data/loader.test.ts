import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import sharp from 'sharp';
import { activeWorkerCount, loadImageBatches, type ImageBatch, type LoaderOptions, type LoaderState, type SkippedImage } from '../../src/data/loader.js';
import { ImageDecodeError } from '../../src/image/decode.js';
import { loadAndPreprocess } from '../../src/image/preprocess.js';

/** Deterministic noise bytes, so resampling has real work and every image differs. */
function noise(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

// Mixed sizes and orientations (sizes differ a lot so workers finish out of order), JPEG and PNG.
const SIZES: readonly [number, number][] = [[60, 45], [200, 150], [45, 60], [33, 90], [150, 200], [64, 64], [90, 33], [120, 80], [48, 40], [250, 100], [40, 48]];

let tmp: string;
let good: string[] = [];
let corrupt: string;
let truncated: string;
let missing: string;

const PRE = { size: 32 } as const;

async function collect(files: readonly string[], options: LoaderOptions): Promise<ImageBatch[]> {
  const out: ImageBatch[] = [];
  for await (const b of loadImageBatches(files, options)) out.push(b);
  return out;
}

function sameFloats(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** n copies of the good images, cycled (the loader does not care that paths repeat). */
function many(n: number): string[] {
  return Array.from({ length: n }, (_, i) => good[i % good.length]!);
}

describe('loadImageBatches', () => {
  before(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'setar-loader-'));
    good = [];
    for (const [i, [w, h]] of SIZES.entries()) {
      const img = sharp(noise(w * h * 3, i + 1), { raw: { width: w, height: h, channels: 3 } });
      const file = join(tmp, `img${i}.${i % 3 === 2 ? 'png' : 'jpg'}`);
      await (i % 3 === 2 ? img.png() : img.jpeg({ quality: 90 })).toFile(file);
      good.push(file);
    }
    corrupt = join(tmp, 'corrupt.jpg');
    await writeFile(corrupt, noise(1000, 99));
    truncated = join(tmp, 'truncated.jpg');
    const full = await sharp(noise(64 * 64 * 3, 98), { raw: { width: 64, height: 64, channels: 3 } }).jpeg({ quality: 90 }).toBuffer();
    await writeFile(truncated, full.subarray(0, full.length >> 1));
    missing = join(tmp, 'missing.png');
  });

  after(async () => {
    await rm(tmp, { recursive: true, force: true });
  });

  it('keeps dataset order across batches with several workers; the last batch is short', async () => {
    const batches = await collect(good, { batchSize: 4, preprocess: PRE, workers: 3 });
    assert.deepEqual(batches.map((b) => [...b.pixelValues.dims]), [[4, 3, 32, 32], [4, 3, 32, 32], [3, 3, 32, 32]]);
    assert.deepEqual(batches.flatMap((b) => [...b.indices]), good.map((_, i) => i));
    assert.equal(activeWorkerCount(), 0);
  });

  it('pixel values equal loadAndPreprocess of each file exactly (options passed through)', async () => {
    const pre = { resizeTo: 40, cropSize: 36, mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3] } as const;
    const batches = await collect(good, { batchSize: 5, preprocess: pre, workers: 2 });
    const row = 3 * 36 * 36;
    let rows = 0;
    for (const b of batches) {
      assert.deepEqual(b.pixelValues.dims.slice(1), [3, 36, 36]);
      for (let r = 0; r < b.indices.length; r++) {
        const file = good[b.indices[r]!]!;
        const expected = await loadAndPreprocess(file, pre);
        assert.ok(sameFloats(b.pixelValues.data.subarray(r * row, (r + 1) * row), expected), `row ${r} of a batch (${file}) differs from loadAndPreprocess`);
        rows++;
      }
    }
    assert.equal(rows, good.length);
  });

  it('skips unreadable images, reporting each via onSkip with its index and file', async () => {
    const files = [good[0]!, good[1]!, corrupt, good[2]!, good[3]!, missing, good[4]!, truncated];
    const skipped: SkippedImage[] = [];
    const progress: number[] = [];
    const batches = await collect(files, {
      batchSize: 2,
      preprocess: PRE,
      workers: 2,
      onSkip: (s) => skipped.push(s),
      onProgress: (done, total) => {
        assert.equal(total, files.length);
        progress.push(done);
      },
    });
    assert.deepEqual(batches.map((b) => [...b.indices]), [[0, 1], [3, 4], [6]]);
    assert.deepEqual(skipped.map((s) => [s.index, s.file]), [[2, corrupt], [5, missing], [7, truncated]]);
    assert.match(skipped[0]!.reason, /unsupported image format/);
    assert.match(skipped[1]!.reason, /file not found/);
    assert.match(skipped[2]!.reason, /premature end|truncated/i);
    assert.ok(progress.every((d, i) => i === 0 || d > progress[i - 1]!), `progress not increasing: ${progress}`);
    assert.equal(progress.at(-1), files.length);
    // Each pixel row still belongs to its own file.
    const row = 3 * 32 * 32;
    for (const b of batches) {
      for (let r = 0; r < b.indices.length; r++) {
        assert.ok(sameFloats(b.pixelValues.data.subarray(r * row, (r + 1) * row), await loadAndPreprocess(files[b.indices[r]!]!, PRE)));
      }
    }
  });

  it('strict: delivers the batches before the first unreadable image, then rejects naming it', async () => {
    const files = [...good.slice(0, 5), corrupt, good[5]!, missing, good[6]!];
    const seen: number[][] = [];
    await assert.rejects(
      (async () => {
        for await (const b of loadImageBatches(files, { batchSize: 2, preprocess: PRE, workers: 2, strict: true })) seen.push([...b.indices]);
      })(),
      (err: unknown) => {
        assert.ok(err instanceof ImageDecodeError, String(err));
        assert.equal(err.file, corrupt);
        assert.ok(err.message.includes(corrupt), err.message);
        return true;
      },
    );
    assert.deepEqual(seen, [[0, 1], [2, 3]]);
    assert.equal(activeWorkerCount(), 0, 'workers still running after the rejection');
  });

  it('break (and a throw in the loop body) stop every worker before the loop statement completes', async () => {
    const files = many(40);
    const loader = loadImageBatches(files, { batchSize: 2, preprocess: PRE, workers: 3 });
    let count = 0;
    for await (const b of loader) {
      assert.ok(activeWorkerCount() > 0);
      assert.deepEqual([...b.indices], [0, 1]);
      if (++count === 1) break;
    }
    assert.equal(activeWorkerCount(), 0, 'workers still running after break');

    await assert.rejects(
      (async () => {
        for await (const b of loader) if (b.indices[0] === 4) throw new Error('consumer failed');
      })(),
      /consumer failed/,
    );
    assert.equal(activeWorkerCount(), 0, 'workers still running after a throw');

    // The iterable is reusable: each for-await is a fresh run from the start.
    const again = await collect(files.slice(0, 3), { batchSize: 2, preprocess: PRE, workers: 3 });
    assert.deepEqual(again.map((b) => [...b.indices]), [[0, 1], [2]]);
  });

  it('bounded prefetch: with a slow consumer at most prefetchBatches finished batches wait', async () => {
    const batchSize = 2;
    const prefetch = 2;
    const files = many(24);
    const total = files.length / batchSize;
    let last: LoaderState = { ready: 0, held: 0, inFlight: 0, delivered: 0 };
    let maxReady = 0;
    let maxHeld = 0;
    let quiet: (() => void) | null = null;
    const probe = {
      onState: (s: LoaderState) => {
        last = s;
        maxReady = Math.max(maxReady, s.ready);
        maxHeld = Math.max(maxHeld, s.held);
        if (s.inFlight === 0 && quiet) quiet();
      },
    };
    // The slow consumer: after each batch it waits until the loader has stopped on its own (no
    // image in flight), i.e. the pipeline is as full as it will get. No timers involved.
    const stalled = () => new Promise<void>((resolve) => (last.inFlight === 0 ? resolve() : (quiet = resolve)));
    let consumedRows = 0;
    let progressDone = 0;
    const options: LoaderOptions = {
      batchSize,
      prefetchBatches: prefetch,
      preprocess: PRE,
      workers: 3,
      onProgress: (done) => (progressDone = done),
    };
    let k = 0;
    for await (const b of loadImageBatches(files, options, probe)) {
      k++;
      consumedRows += b.indices.length;
      assert.equal(progressDone, consumedRows, 'progress counts the rows handed over');
      await stalled();
      quiet = null;
      // Produced but not consumed: exactly what the bound allows, never more.
      assert.equal(last.ready, Math.min(prefetch, total - k), `after batch ${k}`);
      assert.ok(last.held <= (prefetch + 1) * batchSize - 1, `held ${last.held}`);
    }
    assert.equal(k, total);
    assert.equal(maxReady, prefetch);
    assert.ok(maxReady <= prefetch + 1);
    assert.ok(maxHeld <= (prefetch + 1) * batchSize - 1, `max held ${maxHeld}`);
    assert.equal(activeWorkerCount(), 0);
  });

  it('an empty file list yields nothing and starts no worker', async () => {
    assert.deepEqual(await collect([], { batchSize: 4, preprocess: PRE }), []);
    assert.equal(activeWorkerCount(), 0);
  });

  it('rejects invalid options at once', () => {
    assert.throws(() => loadImageBatches(good, { batchSize: 0, preprocess: PRE }), /batchSize must be a positive integer/);
    assert.throws(() => loadImageBatches(good, { batchSize: 2, workers: 1.5, preprocess: PRE }), /workers must be a positive integer/);
    assert.throws(() => loadImageBatches(good, { batchSize: 2, prefetchBatches: 0, preprocess: PRE }), /prefetchBatches must be a positive integer/);
  });
});
