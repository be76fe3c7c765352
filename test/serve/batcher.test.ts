import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DynamicBatcher } from '../../src/serve/batcher.js';

/** A model stub whose runs finish when the test says so, recording each batch. */
function gatedModel() {
  const batches: number[][] = [];
  const gates: (() => void)[] = [];
  const run = async (items: number[]) => {
    batches.push(items);
    await new Promise<void>((r) => gates.push(r));
    return items.map((x) => x * 10);
  };
  const release = async () => {
    while (gates.length === 0) await new Promise((r) => setTimeout(r, 1));
    gates.shift()!();
  };
  return { batches, run, release };
}

describe('DynamicBatcher (Triton-style dynamic batching)', () => {
  it('a full batch runs at once, without waiting for the delay', { timeout: 5000 }, async () => {
    const b = new DynamicBatcher(async (xs: number[]) => xs.map((x) => x + 1), { maxBatch: 4, maxDelayMs: 1e9 });
    assert.deepEqual(await Promise.all([1, 2, 3, 4].map((x) => b.submit(x))), [2, 3, 4, 5]);
  });

  it('requests arriving while the model runs form the next batch, split at maxBatch; results go back in order', { timeout: 5000 }, async () => {
    const m = gatedModel();
    const sizes: number[] = [];
    const b = new DynamicBatcher(m.run, { maxBatch: 3, maxDelayMs: 0, onBatch: (n) => sizes.push(n) });
    const first = b.submit(1);
    await new Promise((r) => setTimeout(r, 5)); // the first batch [1] is running
    const rest = [2, 3, 4, 5, 6, 7, 8].map((x) => b.submit(x));
    assert.equal(b.depth, 7);
    for (let i = 0; i < 4; i++) await m.release();
    assert.deepEqual(await Promise.all([first, ...rest]), [10, 20, 30, 40, 50, 60, 70, 80]);
    assert.deepEqual(m.batches, [[1], [2, 3, 4], [5, 6, 7], [8]]);
    assert.deepEqual(sizes, [1, 3, 3, 1]);
  });

  it('maxDelayMs lets the oldest request wait for company', { timeout: 5000 }, async () => {
    const seen: number[][] = [];
    const b = new DynamicBatcher(async (xs: number[]) => { seen.push(xs); return xs; }, { maxBatch: 16, maxDelayMs: 200 });
    const a = b.submit(1);
    await new Promise((r) => setTimeout(r, 20));
    const c = b.submit(2);
    await Promise.all([a, c]);
    assert.deepEqual(seen, [[1, 2]]);
  });

  it('with nothing on its way (upstream 0) a request does not wait for company; a poke re-examines the wait', { timeout: 5000 }, async () => {
    let upstream = 0;
    const seen: number[][] = [];
    const b = new DynamicBatcher(async (xs: number[]) => { seen.push(xs); return xs; }, { maxBatch: 16, maxDelayMs: 1e9, upstream: () => upstream });
    assert.equal(await b.submit(1), 1);
    upstream = 1; // another request is being decoded: wait for it
    const two = b.submit(2);
    await new Promise((r) => setTimeout(r, 20));
    assert.deepEqual(seen, [[1]]);
    upstream = 0; // it failed before reaching the batcher
    b.poke();
    assert.equal(await two, 2);
    assert.deepEqual(seen, [[1], [2]]);
  });

  it('maxBatch 1 is no batching', { timeout: 5000 }, async () => {
    const seen: number[][] = [];
    const b = new DynamicBatcher(async (xs: number[]) => { seen.push(xs); return xs; }, { maxBatch: 1, maxDelayMs: 50 });
    await Promise.all([1, 2, 3].map((x) => b.submit(x)));
    assert.deepEqual(seen, [[1], [2], [3]]);
  });

  it('an aborted request leaves the queue before its batch runs; a failed run rejects its whole batch', { timeout: 5000 }, async () => {
    const m = gatedModel();
    const b = new DynamicBatcher(m.run, { maxBatch: 8, maxDelayMs: 0 });
    const first = b.submit(1);
    await new Promise((r) => setTimeout(r, 5));
    const ac = new AbortController();
    const dropped = b.submit(2, ac.signal);
    const kept = b.submit(3);
    ac.abort(new Error('deadline'));
    await assert.rejects(dropped, /deadline/);
    await m.release();
    await m.release();
    assert.deepEqual(await Promise.all([first, kept]), [10, 30]);
    assert.deepEqual(m.batches, [[1], [3]]);

    const failing = new DynamicBatcher(async (_xs: number[]): Promise<number[]> => { throw new Error('model failed'); }, { maxBatch: 4, maxDelayMs: 10 });
    const all = await Promise.allSettled([1, 2].map((x) => failing.submit(x)));
    assert.deepEqual(all.map((r) => r.status), ['rejected', 'rejected']);
  });

  it('bad options name the flag', () => {
    const run = async (xs: number[]) => xs;
    assert.throws(() => new DynamicBatcher(run, { maxBatch: 0 }), /--max-batch must be an integer >= 1, got 0/);
    assert.throws(() => new DynamicBatcher(run, { maxDelayMs: -1 }), /--max-delay-ms must be a number >= 0, got -1/);
  });
});
