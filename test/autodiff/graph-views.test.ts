import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder, float, floats } from '../../src/onnx/graph-builder.js';

/** The read-only views GraphBuilder offers graph transforms such as addGradients. */

describe('GraphBuilder views', () => {
  it('decodes nodes, attributes of every kind, inputs, outputs and initializers', () => {
    const g = new GraphBuilder('views');
    const x = g.input('x', 'FLOAT', ['batch', 4]);
    const w = g.initializer('w', Float64Array.from([1, 2, 3, 4]), [2, 2]);
    const k = g.constInt64([3, -1]);
    const y = g.op('Foo', [x, w, k], { i: 0, ints: [1, -2], f: float(0.5), fs: floats([1.5, 2]), s: 'add' });
    g.output(y, 'out', 'FLOAT', ['batch', 2]);

    const nodes = g.nodeViews();
    assert.equal(nodes.length, 2);
    assert.deepEqual({ ...nodes[0]!, name: '' }, {
      opType: 'Foo', domain: '', name: '', inputs: [x, w, k], outputs: [y],
      attrs: { i: 0, ints: [1, -2], f: float(0.5), fs: floats([1.5, 2]), s: 'add' },
    });
    assert.equal(nodes[1]!.opType, 'Identity');
    assert.equal(g.producer(y)?.name, nodes[0]!.name);
    assert.equal(g.producer('out')?.opType, 'Identity');
    assert.equal(g.producer(x), undefined);

    assert.deepEqual(g.inputNames(), ['x']);
    assert.deepEqual(g.inputSpec('x'), { dtype: 'FLOAT', shape: ['batch', 4] });
    assert.equal(g.inputSpec('w'), undefined);
    assert.deepEqual(g.outputSpec('out'), { dtype: 'FLOAT', shape: ['batch', 2] });

    const wi = g.initializerView('w')!;
    assert.equal(wi.dtype, 'DOUBLE');
    assert.deepEqual(wi.dims, [2, 2]);
    assert.ok(wi.data instanceof Float64Array);
    assert.deepEqual([...wi.data], [1, 2, 3, 4]);
    assert.deepEqual([...g.initializerView(k)!.data], [3n, -1n]);
    assert.equal(g.initializerView('x'), undefined);

    const n = g.uniqueName('x');
    assert.ok(!g.has(n));
    // Views do not change what is serialised.
    assert.ok(g.toBytes().length > 0);
  });
});
