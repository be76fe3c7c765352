import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder } from '../../src/onnx/graph-builder.js';
import { OnnxDataType } from '../../src/onnx/proto.js';
import { addGradients } from '../../src/autodiff/gradients.js';
import { constOf, gradCheck } from './gradcheck.js';

/** Layout, slicing and indexing rules, all float64. */

const D = 'DOUBLE' as const;

function i64(g: GraphBuilder, values: readonly number[], dims?: readonly number[]): string {
  return g.initializer(g.uniqueName('i'), BigInt64Array.from(values.map((v) => BigInt(v))), dims ?? [values.length]);
}

describe('autodiff: layout (float64)', () => {
  const cases: Array<[string, number[], (g: GraphBuilder, x: string) => string]> = [
    ['Transpose with perm', [2, 3, 4], (g, x) => g.op('Transpose', [x], { perm: [1, 2, 0] })],
    ['Transpose, default perm', [2, 3, 4], (g, x) => g.op('Transpose', [x])],
    ['Reshape with 0 and -1', [2, 3, 4], (g, x) => g.op('Reshape', [x, i64(g, [0, -1, 2])])],
    ['Flatten, axis 2', [2, 3, 4], (g, x) => g.op('Flatten', [x], { axis: 2 })],
    ['Squeeze', [2, 1, 4, 1], (g, x) => g.op('Squeeze', [x, i64(g, [1, 3])])],
    ['Unsqueeze', [2, 3], (g, x) => g.op('Unsqueeze', [x, i64(g, [0, -1])])],
    ['Identity', [2, 3], (g, x) => g.op('Identity', [x])],
    ['Expand [3, 1] → [2, 3, 4]', [3, 1], (g, x) => g.op('Expand', [x, i64(g, [2, 3, 4])])],
    ['Expand to a shape from Shape ops ([1, 4] → [3, 4])', [1, 4], (g, x) => g.op('Expand', [x, g.op('Shape', [constOf(g, D, Array(12).fill(0), [3, 4])])])],
    ['Trilu, upper, k = 1', [3, 4], (g, x) => g.op('Trilu', [x, i64(g, [1], [])], { upper: 1 })],
    ['Trilu, lower', [2, 3, 3], (g, x) => g.op('Trilu', [x], { upper: 0 })],
  ];
  for (const [what, shape, build] of cases) {
    it(what, async () => {
      await gradCheck(what, { dtype: D, inputs: [{ name: 'x', shape }], build: (g, v) => build(g, v.x!) });
    });
  }

  it('Cast float32 → float64 (the gradient is cast back)', async () => {
    await gradCheck('cast', {
      dtype: D,
      inputs: [{ name: 'x', dtype: 'FLOAT', shape: [2, 3], data: [0.5, -0.25, 1, 2, -1.5, 0.125] }],
      build: (g, v) => g.op('Mul', [g.op('Cast', [v.x!], { to: 11 }), g.op('Cast', [v.x!], { to: 11 })]),
      // x is float32, so x ± h is perturbed in float32 (h = 2⁻¹⁰ is exact); the function is
      // quadratic, so the central difference is exact up to float64 rounding.
      tol: { h: 2 ** -10 },
    });
  });
});

describe('autodiff: Slice (float64)', () => {
  const cases: Array<[string, number[], number[], number[], number[] | undefined, number[] | undefined]> = [
    // [what, shape, starts, ends, axes, steps]
    ['one axis, step 1', [4, 5], [1], [3], [1], undefined],
    ['all axes implied, negative start', [4, 5], [-3, 0], [4, 2], undefined, undefined],
    ['end beyond the dim (INT64_MAX)', [4, 5], [2], [Number.MAX_SAFE_INTEGER], [0], [1]],
    ['step 2 from 0 (Swin patch merging x[:, 0::2, 1::2])', [2, 6, 4, 3], [0, 1], [6, 4], [1, 2], [2, 2]],
    ['step 3 with a remainder, negative axis', [7, 3], [1], [7], [-2], [3]],
    ['steps on two axes and an empty-range-free crop', [5, 6], [0, -5], [5, 6], [0, 1], [2, 2]],
  ];
  for (const [what, shape, starts, ends, axes, steps] of cases) {
    it(what, async () => {
      await gradCheck(`slice_${what}`, {
        dtype: D,
        inputs: [{ name: 'x', shape }],
        build: (g, v) => {
          const ins = [v.x!, i64(g, starts), i64(g, ends)];
          if (axes) ins.push(i64(g, axes));
          if (steps) ins.push(i64(g, steps));
          return g.op('Slice', ins);
        },
      });
    });
  }

  it('symbolic dims: pads computed at run time', async () => {
    await gradCheck('slice_symbolic', {
      dtype: D,
      inputs: [{ name: 'x', shape: [2, 7, 3], declared: ['b', 'tokens', 3] }],
      build: (g, v) => g.op('Slice', [v.x!, i64(g, [1, -4]), i64(g, [10, -1]), i64(g, [1, 0]), i64(g, [2, 1])]),
    });
  });

  it('a step of 2 on a symbolic dim', async () => {
    await gradCheck('slice_symbolic_step', {
      dtype: D,
      inputs: [{ name: 'x', shape: [6, 2], declared: ['n', 2] }],
      build: (g, v) => g.op('Slice', [v.x!, i64(g, [1]), i64(g, [6]), i64(g, [0]), i64(g, [2])]),
    });
  });

  it('negative steps are an error', () => {
    return assert.rejects(
      gradCheck('slice_neg', { dtype: D, inputs: [{ name: 'x', shape: [4] }], build: (g, v) => g.op('Slice', [v.x!, i64(g, [3]), i64(g, [0]), i64(g, [0]), i64(g, [-1])]) }),
      /Slice node .*positive steps/,
    );
  });
});

describe('autodiff: Pad, Concat, Split (float64)', () => {
  it('Pad, constant mode, positive pads', async () => {
    await gradCheck('pad', { dtype: D, inputs: [{ name: 'x', shape: [2, 3] }], build: (g, v) => g.op('Pad', [v.x!, i64(g, [1, 0, 2, 3])]) });
  });
  it('Pad with negative pads (crops) and a constant value', async () => {
    await gradCheck('pad_neg', { dtype: D, inputs: [{ name: 'x', shape: [3, 4] }], build: (g, v) => g.op('Pad', [v.x!, i64(g, [-1, 1, 0, -2]), constOf(g, D, [0.5])]) });
  });
  it('Pad with fed pads', async () => {
    await gradCheck('pad_fed', {
      dtype: D,
      inputs: [{ name: 'x', shape: [2, 3] }, { name: 'pads', dtype: 'INT64', shape: [4], data: [0, 1, 1, 0] }],
      build: (g, v) => g.op('Pad', [v.x!, v.pads!]),
    });
  });
  it('Concat along axis 1, every input differentiated (one Split)', async () => {
    const { graph } = await gradCheck('concat', {
      dtype: D,
      inputs: [{ name: 'a', shape: [2, 1, 3] }, { name: 'b', shape: [2, 4, 3] }, { name: 'c', shape: [2, 2, 3] }],
      build: (g, v) => g.op('Concat', [v.a!, v.b!, v.c!], { axis: 1 }),
    });
    assert.ok(graph.nodeViews().some((n) => n.opType === 'Split'));
  });
  it('Concat with a constant operand and a symbolic dim (Slices at run-time offsets)', async () => {
    await gradCheck('concat_const', {
      dtype: D,
      inputs: [{ name: 'a', shape: [2, 3], declared: ['n', 3] }, { name: 'b', shape: [1, 3] }],
      build: (g, v) => g.op('Concat', [constOf(g, D, [1, 2, 3, 4, 5, 6], [2, 3]), v.a!, v.b!, v.a!], { axis: -2 }),
    });
  });
  it('Split with sizes, one output unused', async () => {
    await gradCheck('split', {
      dtype: D,
      inputs: [{ name: 'x', shape: [2, 6] }],
      build: (g, v) => {
        const [p, , r] = g.opN('Split', [v.x!, i64(g, [1, 2, 3])], { axis: 1 }, { outputs: 3 });
        return g.op('Concat', [g.op('Mul', [p!, p!]), r!], { axis: 1 });
      },
    });
  });
  it('Split into equal parts (no sizes)', async () => {
    await gradCheck('split_equal', {
      dtype: D,
      inputs: [{ name: 'x', shape: [4, 3] }],
      build: (g, v) => {
        const [p, q] = g.opN('Split', [v.x!], { axis: 0 }, { outputs: 2 });
        return g.op('Mul', [p!, q!]);
      },
    });
  });
});

describe('autodiff: Gather, GatherElements (float64)', () => {
  it('Gather axis 0, repeated and negative constant indices', async () => {
    await gradCheck('gather0', { dtype: D, inputs: [{ name: 'x', shape: [5, 3] }], build: (g, v) => g.op('Gather', [v.x!, i64(g, [1, 3, 1, -1, 0, 1], [2, 3])], { axis: 0 }) });
  });
  it('Gather axis 0, fed indices (a text tower pooling rows)', async () => {
    await gradCheck('gather_fed', {
      dtype: D,
      inputs: [{ name: 'x', shape: [2, 4, 3] }, { name: 'idx', dtype: 'INT64', shape: [2], declared: ['batch'], data: [3, 6] }],
      build: (g, v) => g.op('Gather', [g.op('Reshape', [v.x!, i64(g, [-1, 3])]), v.idx!], { axis: 0 }),
    });
  });
  it('Gather axis 1, scalar index (the CLS token)', async () => {
    await gradCheck('gather_cls', { dtype: D, inputs: [{ name: 'x', shape: [2, 4, 3] }], build: (g, v) => g.op('Gather', [v.x!, i64(g, [0], [])], { axis: 1 }) });
  });
  it('Gather axis 1, [1] index, symbolic dims', async () => {
    await gradCheck('gather_cls_sym', {
      dtype: D,
      inputs: [{ name: 'x', shape: [2, 4, 3], declared: ['b', 't', 3] }],
      build: (g, v) => g.op('Gather', [v.x!, i64(g, [0])], { axis: 1 }),
    });
  });
  it('Gather axis 2, 2-D repeated indices', async () => {
    await gradCheck('gather2', { dtype: D, inputs: [{ name: 'x', shape: [2, 3, 4] }], build: (g, v) => g.op('Gather', [v.x!, i64(g, [3, 0, 3, -2], [2, 2])], { axis: 2 }) });
  });
  it('Gather axis -1 with fed 2-D indices of symbolic shape', async () => {
    await gradCheck('gather_fed2', {
      dtype: D,
      inputs: [{ name: 'x', shape: [3, 4] }, { name: 'idx', dtype: 'INT64', shape: [2, 2], declared: ['p', 'q'], data: [1, 1, 0, 3] }],
      build: (g, v) => g.op('Gather', [v.x!, v.idx!], { axis: -1 }),
    });
  });
  it('Gather axis ≠ 0 scatters its gradient with int32 indices (no int64 Expand, which ORT\'s WebGPU provider runs on the CPU)', () => {
    for (const fed of [false, true]) {
      const g = new GraphBuilder('gather_index_dtype');
      const x = g.input('x', 'FLOAT', ['b', 4, 3]);
      const idx = fed ? g.input('idx', 'INT64', [2]) : i64(g, [2, -1]);
      const loss = g.op('ReduceSum', [g.op('Gather', [x, idx], { axis: 1 })], { keepdims: 0 });
      addGradients(g, loss, ['x']);
      const nodes = g.nodeViews();
      const scatter = nodes.find((n) => n.opType === 'ScatterElements')!;
      const expand = g.producer(scatter.inputs[1]!)!;
      assert.equal(expand.opType, 'Expand');
      const index = expand.inputs[0]!;
      if (fed) {
        const cast = g.producer(g.producer(index)!.inputs[0]!)!;
        assert.deepEqual([cast.opType, cast.attrs.to], ['Cast', OnnxDataType.INT32]);
      } else {
        const init = g.initializerView(index)!;
        assert.equal(init.dtype, 'INT32');
        assert.deepEqual([...init.data].map(Number), [2, 3]); // -1 counted from the end of the static axis of size 4
        assert.deepEqual(init.dims, [2, 1]);
      }
    }
  });
  it('GatherElements, axis 0 and axis 1, repeated indices', async () => {
    for (const axis of [0, 1]) {
      await gradCheck(`gatherelements${axis}`, {
        dtype: D,
        inputs: [{ name: 'x', shape: [3, 4] }],
        build: (g, v) => g.op('GatherElements', [v.x!, i64(g, [0, 2, 2, 1, 1, 1, 0, -1], [2, 4])], { axis }),
      });
    }
  });
});
