import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { constOf, gradCheck, type FloatType } from './gradcheck.js';
import { mulberry32 } from '../../src/models/clip/random.js';

/** Elementwise rules: arithmetic with broadcasting, unary functions, Where/Clip/Max/Min. */

const D: FloatType = 'DOUBLE';

/** Uniform values in [lo, hi] whose magnitude stays ≥ gap (away from kinks at 0). */
function awayFromZero(n: number, seed: number, gap = 0.1, hi = 1): number[] {
  const r = mulberry32(seed);
  return Array.from({ length: n }, () => (r() < 0.5 ? -1 : 1) * (gap + (hi - gap) * r()));
}

describe('autodiff: arithmetic with broadcasting (float64)', () => {
  const shapes: Array<[string, number[], number[]]> = [
    ['same shape', [2, 3, 4], [2, 3, 4]],
    ['trailing vector', [2, 3, 4], [4]],
    ['size-1 dims on the right operand', [2, 3, 4], [2, 1, 4]],
    ['both broadcast', [2, 1, 4], [3, 1]],
    ['scalar', [2, 3], []],
  ];
  for (const op of ['Add', 'Sub', 'Mul', 'Div']) {
    for (const [what, sa, sb] of shapes) {
      it(`${op}, ${what}: [${sa}] ${op} [${sb}]`, async () => {
        const nb = sb.reduce((p, q) => p * q, 1);
        // Div: keep the divisor away from 0.
        const b = op === 'Div' ? { data: awayFromZero(nb, 7, 0.5, 1.5) } : {};
        await gradCheck(`${op}_${what}`, {
          dtype: D,
          inputs: [{ name: 'a', shape: sa }, { name: 'b', shape: sb, ...b }],
          build: (g, v) => g.op(op, [v.a!, v.b!]),
        });
      });
    }
  }

  it('Div and Mul with the broadcast operand first ([4] op [2, 3, 4])', async () => {
    await gradCheck('div_first', {
      dtype: D,
      inputs: [{ name: 'a', shape: [4] }, { name: 'b', shape: [2, 3, 4], data: awayFromZero(24, 3, 0.5, 1.5) }],
      build: (g, v) => g.op('Mul', [g.op('Div', [v.a!, v.b!]), v.b!]),
    });
  });

  it('symbolic dims resolved at run time: a [n, 4] + b [m, 4] fed with n = 1, m = 3', async () => {
    await gradCheck('runtime_unbroadcast', {
      dtype: D,
      inputs: [{ name: 'a', shape: [1, 4], declared: ['n', 4] }, { name: 'b', shape: [3, 4], declared: ['m', 4] }],
      build: (g, v) => g.op('Mul', [g.op('Add', [v.a!, v.b!]), v.b!]),
    });
  });

  it('symbolic dims that are not broadcast at run time: a [n, 4] · b [m, 4] fed with n = m = 3', async () => {
    await gradCheck('runtime_no_unbroadcast', {
      dtype: D,
      inputs: [{ name: 'a', shape: [3, 4], declared: ['n', 4] }, { name: 'b', shape: [3, 4], declared: ['m', 4] }],
      build: (g, v) => g.op('Mul', [v.a!, v.b!]),
    });
  });

  it('Sum (variadic) with broadcasting and a repeated operand', async () => {
    await gradCheck('sum', {
      dtype: D,
      inputs: [{ name: 'a', shape: [2, 3] }, { name: 'b', shape: [3] }],
      build: (g, v) => g.op('Sum', [v.a!, v.b!, v.a!]),
    });
  });

  it('Mul of a value by itself (x·x)', async () => {
    await gradCheck('square', { dtype: D, inputs: [{ name: 'x', shape: [2, 3] }], build: (g, v) => g.op('Mul', [v.x!, v.x!]) });
  });

  for (const e of [2, 3, 0.5, -1, 1]) {
    it(`Pow with constant exponent ${e}`, async () => {
      await gradCheck(`pow_${e}`, {
        dtype: D,
        inputs: [{ name: 'x', shape: [2, 3], data: awayFromZero(6, 11, 0.3, 1.5).map(Math.abs) }],
        build: (g, v) => g.op('Pow', [v.x!, constOf(g, D, [e])]),
      });
    });
  }

  it('Pow with a broadcast tensor exponent (fed, not differentiated) and a broadcast base', async () => {
    await gradCheck('pow_tensor', {
      dtype: D,
      inputs: [
        { name: 'x', shape: [3], data: [0.5, 1.2, 2] },
        { name: 'p', shape: [2, 3], data: [1.5, 2, -0.5, 3, 0.7, 2.5], wrt: false },
      ],
      build: (g, v) => g.op('Pow', [v.x!, v.p!]),
    });
  });
});

describe('autodiff: unary functions (float64 unless stated)', () => {
  const cases: Array<[string, number[] | undefined]> = [
    ['Neg', undefined],
    ['Sigmoid', undefined],
    ['Tanh', undefined],
    ['Relu', awayFromZero(12, 5)],
    ['Exp', undefined],
    ['Log', awayFromZero(12, 6, 0.2, 2).map(Math.abs)],
    ['Sqrt', awayFromZero(12, 7, 0.2, 2).map(Math.abs)],
    ['Abs', awayFromZero(12, 8)],
    ['Reciprocal', awayFromZero(12, 9, 0.4, 1.5)],
  ];
  for (const [op, data] of cases) {
    it(op, async () => {
      await gradCheck(op, { dtype: D, inputs: [{ name: 'x', shape: [3, 4], data }], build: (g, v) => g.op(op, [v.x!]) });
    });
  }

  it('Erf (float32: ORT CPU implements Erf for float only)', async () => {
    await gradCheck('Erf', { dtype: 'FLOAT', inputs: [{ name: 'x', shape: [3, 4] }], build: (g, v) => g.op('Erf', [v.x!]) });
  });

  it('GELU (erf form) composed of Mul, Erf, Add (float32)', async () => {
    await gradCheck('gelu', {
      dtype: 'FLOAT',
      inputs: [{ name: 'x', shape: [2, 5] }],
      build: (g, v) => {
        const e = g.op('Erf', [g.op('Mul', [v.x!, constOf(g, 'FLOAT', [Math.SQRT1_2])])]);
        return g.op('Mul', [g.op('Mul', [v.x!, constOf(g, 'FLOAT', [0.5])]), g.op('Add', [e, constOf(g, 'FLOAT', [1])])]);
      },
    });
  });

  it('Relu passes no gradient at exactly 0', async () => {
    const { grads } = await gradCheck('relu0', {
      dtype: D,
      inputs: [{ name: 'x', shape: [3], data: [0, 0.5, -0.5] }],
      build: (g, v) => g.op('Relu', [v.x!]),
      tol: { h: 1e-9, atol: Infinity }, // the finite difference at a kink is meaningless
    });
    assert.equal(grads.x![0], 0);
  });
});

describe('autodiff: selection (float64)', () => {
  it('Where with a constant condition, broadcasting both branches', async () => {
    await gradCheck('where', {
      dtype: D,
      inputs: [{ name: 'x', shape: [2, 3] }, { name: 'y', shape: [3] }],
      build: (g, v) => {
        const c = g.initializer('cond', Uint8Array.from([1, 0, 1, 0, 0, 1]), [2, 3]);
        return g.op('Where', [g.op('Cast', [c], { to: 9 }), v.x!, v.y!]);
      },
    });
  });

  it('Clip with constant min and max, and with max only', async () => {
    const data = [-0.9, -0.5, -0.2, 0.1, 0.35, 0.6, 0.8, -0.05];
    await gradCheck('clip', {
      dtype: D,
      inputs: [{ name: 'x', shape: [8], data }],
      build: (g, v) => g.op('Clip', [v.x!, constOf(g, D, [-0.4]), constOf(g, D, [0.5])]),
    });
    await gradCheck('clip_max', {
      dtype: D,
      inputs: [{ name: 'x', shape: [8], data }],
      build: (g, v) => g.op('Clip', [v.x!, '', constOf(g, D, [0.5])]),
    });
  });

  for (const op of ['Max', 'Min']) {
    it(`${op} (elementwise, broadcasting, three operands)`, async () => {
      // Distinct values ≥ 0.05 apart, so no tie lies within h.
      const all = Array.from({ length: 12 + 4 + 4 }, (_, i) => (i * 0.37) % 1.9 - 0.95);
      await gradCheck(op, {
        dtype: D,
        inputs: [{ name: 'a', shape: [3, 4], data: all.slice(0, 12) }, { name: 'b', shape: [4], data: all.slice(12, 16) }, { name: 'c', shape: [1, 4], data: all.slice(16) }],
        build: (g, v) => g.op(op, [v.a!, v.b!, v.c!]),
      });
    });
  }

  it('Max splits the gradient evenly between tied operands', async () => {
    const { grads } = await gradCheck('max_tie', {
      dtype: D,
      inputs: [{ name: 'a', shape: [2], data: [1, 2] }, { name: 'b', shape: [2], data: [1, 3] }],
      build: (g, v) => g.op('Max', [v.a!, v.b!]),
      tol: { atol: Infinity },
    });
    // Element 0 ties: each gets half of R[0]; element 1: all to b.
    assert.ok(Math.abs(grads.a![0]! - grads.b![0]!) < 1e-15);
    assert.ok(grads.a![1] === 0 && grads.b![1] !== 0);
  });
});
