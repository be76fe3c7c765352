import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { addGradients } from '../../src/autodiff/gradients.js';
import { GRADIENT_RULES } from '../../src/autodiff/rules.js';
import { GraphBuilder } from '../../src/onnx/graph-builder.js';
import { Session } from '../../src/runtime/session.js';
import { tensor } from '../../src/tensor.js';
import { constOf, gradCheck } from './gradcheck.js';

/** addGradients as a whole: which nodes it differentiates, accumulation, errors. */

function i64(g: GraphBuilder, values: readonly number[], dims?: readonly number[]): string {
  return g.initializer(g.uniqueName('i'), BigInt64Array.from(values.map((v) => BigInt(v))), dims ?? [values.length]);
}

// Distinct values away from 0, so masks computed from x do not change within ±h.
const X12 = [0.31, -0.72, 0.55, -0.18, 0.93, -0.47, 0.12, 0.66, -0.89, 0.24, -0.35, 0.78];

describe('autodiff: the graph transform', () => {
  it('accumulates the gradient of a value used several times', async () => {
    await gradCheck('reuse', {
      dtype: 'DOUBLE',
      inputs: [{ name: 'x', shape: [3, 4] }],
      build: (g, v) => {
        // x feeds Tanh, Mul (twice), MatMul (as both operands, one transposed) and ReduceSum.
        const t = g.op('Mul', [g.op('Tanh', [v.x!]), v.x!]);
        const gram = g.op('MatMul', [v.x!, g.op('Transpose', [v.x!], { perm: [1, 0] })]); // [3, 3]
        const sq = g.op('ReduceSum', [g.op('Mul', [v.x!, v.x!]), i64(g, [1])], { keepdims: 1 }); // [3, 1]
        return g.op('Add', [g.op('Add', [t, g.op('MatMul', [gram, v.x!])]), sq]);
      },
    });
  });

  it('ignores non-differentiable helpers off the path: Shape, ConstantOfShape, Trilu on constants, Equal, Less, Not, ArgMax, TopK indices, OneHot, Range', async () => {
    await gradCheck('helpers', {
      dtype: 'DOUBLE',
      inputs: [{ name: 'x', shape: [3, 4], data: X12 }],
      build: (g, v) => {
        const x = v.x!;
        const dbl = (t: string) => g.op('Cast', [t], { to: 11 });
        // masks computed from x itself carry no gradient
        const positive = dbl(g.op('Not', [g.op('Less', [x, constOf(g, 'DOUBLE', [0])])]));
        const isMax = dbl(g.op('Equal', [x, g.op('ReduceMax', [x], { axes: [1], keepdims: 1 })]));
        const argmax = g.op('ArgMax', [x], { axis: 1, keepdims: 0 });
        // (ORT's OneHot has no double variant)
        const onehot = dbl(g.op('OneHot', [argmax, i64(g, [4], []), g.constFloat([0, 2], [2])], { axis: -1 }));
        const [, top] = g.opN('TopK', [x, i64(g, [2])], { axis: 1 }, { outputs: 2 });
        const picked = g.op('GatherElements', [x, top!], { axis: 1 });
        const ramp = dbl(g.op('Range', [i64(g, [0], []), i64(g, [4], []), i64(g, [1], [])]));
        const zeros = dbl(g.op('ConstantOfShape', [g.op('Shape', [x])]));
        const tri = g.op('Trilu', [g.op('Expand', [constOf(g, 'DOUBLE', [1]), i64(g, [3, 4])])], { upper: 1 });
        const y = g.op('Mul', [g.op('Mul', [g.op('Add', [g.op('Add', [positive, isMax]), onehot]), x]), g.op('Add', [ramp, tri])]);
        return g.op('Concat', [g.op('Add', [y, zeros]), g.op('Mul', [picked, picked])], { axis: 1 });
      },
    });
  });

  it('treats Floor, Round, Sign outputs as constants', async () => {
    const { grads } = await gradCheck('stop', {
      dtype: 'DOUBLE',
      inputs: [{ name: 'x', shape: [12], data: X12.map((v) => v * 3) }],
      build: (g, v) => g.op('Add', [g.op('Mul', [g.op('Floor', [v.x!]), g.op('Sign', [v.x!])]), g.op('Round', [v.x!])]),
    });
    assert.ok(grads.x!.every((d) => d === 0));
  });

  it('gives a wrt value the loss does not depend on zeros, also when it reaches the loss only through a shape', async () => {
    const g = new GraphBuilder('unused');
    const x = g.input('x', 'DOUBLE', [2, 3]);
    const y = g.input('y', 'DOUBLE', [2, 'n']);
    const z = g.input('z', 'DOUBLE', [3]);
    const size = g.op('Cast', [g.op('Size', [y])], { to: 11 });
    const loss = g.op('ReduceSum', [g.op('Mul', [x, size])], { keepdims: 0 });
    const [dx, dy, dz] = addGradients(g, loss, [x, y, z]);
    g.output(dx!, 'dx', 'DOUBLE', [2, 3]);
    g.output(dy!, 'dy', 'DOUBLE', [2, 'n']);
    g.output(dz!, 'dz', 'DOUBLE', [3]);
    const s = await Session.create(g.toBytes(), 'unused');
    const out = await s.run({ x: tensor('float64', new Float64Array(6), [2, 3]), y: tensor('float64', new Float64Array(8), [2, 4]), z: tensor('float64', new Float64Array(3), [3]) });
    assert.deepEqual([...out.dx!.data], [8, 8, 8, 8, 8, 8]);
    assert.deepEqual([...out.dy!.dims], [2, 4]);
    assert.ok([...out.dy!.data].every((v) => v === 0));
    assert.deepEqual([...out.dz!.data], [0, 0, 0]);
    await s.release();
  });

  it('differentiates with respect to an intermediate value (total derivative through all its uses)', async () => {
    const g = new GraphBuilder('mid');
    const x = g.input('x', 'DOUBLE', [3]);
    const h = g.op('Mul', [x, constOf(g, 'DOUBLE', [2])]);
    const loss = g.op('ReduceSum', [g.op('Mul', [h, g.op('Add', [h, x])])], { keepdims: 0 }); // Σ h² + h·x
    const [dh, dx] = addGradients(g, loss, [h, x]);
    g.output(dh!, 'dh', 'DOUBLE', [3]);
    g.output(dx!, 'dx', 'DOUBLE', [3]);
    const s = await Session.create(g.toBytes(), 'mid');
    const out = await s.run({ x: tensor('float64', Float64Array.from([1, 2, 3]), [3]) });
    assert.deepEqual([...out.dh!.data], [5, 10, 15]); // 2h + x
    assert.deepEqual([...out.dx!.data], [12, 24, 36]); // d/dx (4x² + 2x²): (2h + x)·2 through h, + h directly
    await s.release();
  });

  it('seeds a loss of shape [1] and the gradient of the loss itself is 1', async () => {
    const g = new GraphBuilder('seed');
    const x = g.input('x', 'FLOAT', [1]);
    const loss = g.op('Mul', [x, x]);
    const [dl, dx] = addGradients(g, loss, [loss, x]);
    g.output(dl!, 'dl', 'FLOAT', [1]);
    g.output(dx!, 'dx', 'FLOAT', [1]);
    const s = await Session.create(g.toBytes(), 'seed');
    const out = await s.run({ x: tensor('float32', Float32Array.from([3]), [1]) });
    assert.deepEqual([...out.dl!.data, ...out.dx!.data], [1, 6]);
    await s.release();
  });

  it('adds no backward node for branches that do not depend on the wrt values', () => {
    const build = (withBranch: boolean) => {
      const g = new GraphBuilder('branch');
      const x = g.input('x', 'FLOAT', [4, 8]);
      const w = g.input('w', 'FLOAT', [8, 8]);
      const c = g.input('c', 'FLOAT', [4, 8]);
      let y = g.op('MatMul', [x, w]);
      if (withBranch) y = g.op('Add', [y, g.op('Softmax', [g.op('MatMul', [c, g.op('LayerNormalization', [c, g.constFloat(Array(8).fill(1), [8]), g.constFloat(Array(8).fill(0), [8])])])], { axis: -1 })]);
      const loss = g.op('ReduceSum', [y], { keepdims: 0 });
      const before = g.nodeViews().length;
      addGradients(g, loss, [w]);
      return g.nodeViews().length - before;
    };
    assert.equal(build(true), build(false));
  });

  it('names the op type, the node and the value when a rule is missing', () => {
    const g = new GraphBuilder('missing');
    const x = g.input('x', 'FLOAT', [3]);
    const s = g.op('Sin', [x]);
    const loss = g.op('ReduceSum', [s], { keepdims: 0 });
    assert.throws(() => addGradients(g, loss, [x]), /no gradient rule for op 'Sin' \(node 'n_Sin_\d+', value 'x' → 'sin_\d+'/);
    assert.ok(!('Sin' in GRADIENT_RULES));
  });

  it("rejects TopK's values on the path, a non-scalar loss, an int wrt value and unknown names", () => {
    const g = new GraphBuilder('errors');
    const x = g.input('x', 'FLOAT', [2, 3]);
    const idx = g.input('idx', 'INT64', [2]);
    const [vals] = g.opN('TopK', [x, g.constInt64([1])], { axis: 1 }, { outputs: 2 });
    const loss = g.op('ReduceSum', [vals!], { keepdims: 0 });
    assert.throws(() => addGradients(g, loss, [x]), /op 'TopK' \(node 'n_TopK_\d+', value 'x'/);
    assert.throws(() => addGradients(g, x, [x]), /loss 'x' must be a scalar.*\[2, 3\]/);
    assert.throws(() => addGradients(g, loss, [idx]), /wrt value 'idx' must be a float value/);
    assert.throws(() => addGradients(g, 'nope', [x]), /no value 'nope'/);
  });

  it('refuses opsets below 13', () => {
    const g = new GraphBuilder('old', 12);
    const x = g.input('x', 'FLOAT', []);
    assert.throws(() => addGradients(g, x, [x]), /opset 12/);
  });
});
