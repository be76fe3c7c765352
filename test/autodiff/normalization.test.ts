import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { float } from '../../src/onnx/graph-builder.js';
import { gradCheck } from './gradcheck.js';

/** LayerNormalization, Softmax, LogSoftmax and the reductions: float64 except GlobalAveragePool. */

describe('autodiff: normalisation (float64)', () => {
  it('LayerNormalization over the last axis: x, scale and bias', async () => {
    await gradCheck('ln', {
      dtype: 'DOUBLE',
      inputs: [{ name: 'x', shape: [2, 3, 5] }, { name: 'scale', shape: [5] }, { name: 'bias', shape: [5] }],
      build: (g, v) => g.op('LayerNormalization', [v.x!, v.scale!, v.bias!], { axis: -1, epsilon: float(1e-5) }),
    });
  });

  it('LayerNormalization over the last two axes (axis 1 of 3), x with symbolic batch', async () => {
    await gradCheck('ln_axis1', {
      dtype: 'DOUBLE',
      inputs: [{ name: 'x', shape: [2, 3, 4], declared: ['b', 3, 4] }, { name: 'scale', shape: [3, 4] }, { name: 'bias', shape: [3, 4], wrt: false }],
      build: (g, v) => g.op('LayerNormalization', [v.x!, v.scale!, v.bias!], { axis: 1, epsilon: float(1e-3) }),
    });
  });

  it('LayerNormalization without bias, gradient for x only', async () => {
    await gradCheck('ln_nobias', {
      dtype: 'DOUBLE',
      inputs: [{ name: 'x', shape: [4, 6] }, { name: 'scale', shape: [6], wrt: false }],
      build: (g, v) => g.op('LayerNormalization', [v.x!, v.scale!], { epsilon: float(1e-5) }),
    });
  });

  for (const axis of [-1, 1]) {
    it(`Softmax, axis ${axis}`, async () => {
      await gradCheck(`softmax_${axis}`, { dtype: 'DOUBLE', inputs: [{ name: 'x', shape: [2, 3, 4] }], build: (g, v) => g.op('Softmax', [v.x!], { axis }) });
    });
    it(`LogSoftmax, axis ${axis}`, async () => {
      await gradCheck(`logsoftmax_${axis}`, { dtype: 'DOUBLE', inputs: [{ name: 'x', shape: [2, 3, 4] }], build: (g, v) => g.op('LogSoftmax', [v.x!], { axis }) });
    });
  }
});

describe('autodiff: reductions (float64 unless stated)', () => {
  const variants: Array<[string, (g: import('../../src/onnx/graph-builder.js').GraphBuilder, x: string, op: string) => string]> = [
    ['axes [1], keepdims 1', (g, x, op) => reduce(g, op, x, [1], 1)],
    ['axes [0, -1], keepdims 0', (g, x, op) => reduce(g, op, x, [0, -1], 0)],
    ['all axes, keepdims 0', (g, x, op) => reduce(g, op, x, undefined, 0)],
    ['all axes, keepdims 1', (g, x, op) => reduce(g, op, x, undefined, 1)],
  ];
  /** ReduceSum takes axes as an input from opset 13, the others from opset 18 (attribute at 17). */
  function reduce(g: import('../../src/onnx/graph-builder.js').GraphBuilder, op: string, x: string, axes: number[] | undefined, keepdims: number): string {
    if (op === 'ReduceSum') return g.op(op, axes ? [x, g.constInt64(axes)] : [x], { keepdims });
    return g.op(op, [x], axes ? { axes, keepdims } : { keepdims });
  }
  // Distinct values (no ties within h) for Max/Min.
  const distinct = Array.from({ length: 24 }, (_, i) => ((i * 7) % 24) / 12 - 1 + 0.01 * i);
  for (const op of ['ReduceSum', 'ReduceMean', 'ReduceMax', 'ReduceMin', 'ReduceL2', 'ReduceSumSquare', 'ReduceLogSumExp']) {
    for (const [what, build] of variants) {
      it(`${op}, ${what}`, async () => {
        await gradCheck(`${op}_${what}`, { dtype: 'DOUBLE', inputs: [{ name: 'x', shape: [2, 3, 4], data: distinct }], build: (g, v) => build(g, v.x!, op) });
      });
    }
  }

  it('ReduceMean over symbolic dims (count computed at run time)', async () => {
    await gradCheck('reducemean_symbolic', {
      dtype: 'DOUBLE',
      inputs: [{ name: 'x', shape: [2, 3, 4], declared: ['a', 'b', 4] }],
      build: (g, v) => g.op('ReduceMean', [v.x!], { axes: [1], keepdims: 0 }),
    });
  });

  it('ReduceSum with axes fed at run time', async () => {
    await gradCheck('reducesum_fed_axes', {
      dtype: 'DOUBLE',
      inputs: [{ name: 'x', shape: [2, 3, 4] }, { name: 'axes', dtype: 'INT64', shape: [1], data: [1] }],
      build: (g, v) => g.op('ReduceSum', [v.x!, v.axes!], { keepdims: 0 }),
    });
  });

  it('GlobalAveragePool, static and symbolic spatial dims (float32: ORT CPU has no double kernel)', async () => {
    await gradCheck('gap', { dtype: 'FLOAT', inputs: [{ name: 'x', shape: [2, 3, 2, 4] }], build: (g, v) => g.op('GlobalAveragePool', [v.x!]) });
    await gradCheck('gap_sym', { dtype: 'FLOAT', inputs: [{ name: 'x', shape: [2, 3, 4], declared: [2, 3, 'len'] }], build: (g, v) => g.op('GlobalAveragePool', [v.x!]) });
  });

  it('ReduceMax splits the gradient evenly among tied maxima', async () => {
    const { grads } = await gradCheck('reducemax_ties', {
      dtype: 'DOUBLE',
      inputs: [{ name: 'x', shape: [2, 4], data: [1, 3, 3, 3, 2, 5, 0, 1] }],
      build: (g, v) => g.op('ReduceMax', [v.x!], { axes: [1], keepdims: 0 }),
      tol: { atol: Infinity }, // finite differences are meaningless at ties
    });
    const gx = grads.x!;
    assert.ok(gx[0] === 0);
    assert.ok(Math.abs(gx[1]! - gx[2]!) < 1e-15 && Math.abs(gx[2]! - gx[3]!) < 1e-15 && gx[1] !== 0);
    assert.ok(gx[4] === 0 && gx[6] === 0 && gx[7] === 0 && gx[5] !== 0);
  });
});
