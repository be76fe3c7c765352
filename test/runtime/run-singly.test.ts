import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder } from '../../src/onnx/graph-builder.js';
import { runSingly } from '../../src/runtime/run-singly.js';
import { Session } from '../../src/runtime/session.js';
import { tensor } from '../../src/tensor.js';

describe('runSingly', () => {
  it('runs a one-item-per-run model item by item and concatenates every output', async () => {
    // y = x − mean(x) over the whole input: only one item per run gives each item its own mean
    const g = new GraphBuilder('singly');
    const x = g.input('x', 'FLOAT', [1, 3]);
    const k = g.input('k', 'INT64', [1]);
    g.output(g.op('Sub', [x, g.op('ReduceMean', [x], { keepdims: 1 })]), 'y', 'FLOAT', [1, 3]);
    g.output(g.op('Mul', [k, g.constInt64([2])]), 'k2', 'INT64', [1]);
    const s = await Session.create(g.toBytes(), 'singly', { threads: 1 });
    try {
      assert.deepEqual(s.inputShape('x'), [1, 3]);
      assert.equal(s.inputShape('nope'), undefined);
      const out = await runSingly(s, { x: tensor('float32', Float32Array.of(1, 2, 3, 10, 20, 30), [2, 3]), k: tensor('int64', BigInt64Array.of(4n, 5n), [2]) });
      assert.deepEqual(out.y!.dims, [2, 3]);
      assert.deepEqual([...out.y!.data], [-1, 0, 1, -10, 0, 10]);
      assert.deepEqual([...out.k2!.data], [8n, 10n]);
      await assert.rejects(runSingly(s, { x: tensor('float32', new Float32Array(6), [2, 3]), k: tensor('int64', BigInt64Array.of(1n), [1]) }), /session 'singly': input 'k' has 1 items along its first axis, 'x' has 2/);
    } finally {
      await s.release();
    }
  });
});
