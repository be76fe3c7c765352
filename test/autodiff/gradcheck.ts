import assert from 'node:assert/strict';
import { addGradients } from '../../src/autodiff/gradients.js';
import { GraphBuilder, type Dim } from '../../src/onnx/graph-builder.js';
import { mulberry32 } from '../../src/models/clip/random.js';
import { Session } from '../../src/runtime/session.js';
import { tensor, type Tensor } from '../../src/tensor.js';

/**
 * Finite-difference gradient checks for addGradients. A check builds
 * `loss = ReduceSum(op(inputs) · R)` with a fixed random R, gets every analytic gradient from ONE
 * session run, and compares each element with a central difference (L(x+h) − L(x−h)) / (x⁺ − x⁻)
 * computed on the same graph (x± as actually stored, which matters in float32).
 */

export type FloatType = 'DOUBLE' | 'FLOAT';

/**
 * Tolerances, |analytic − numeric| ≤ atol + rtol·|numeric|:
 * - DOUBLE, h = 1e-5: the central difference's truncation (h²/6·f''' ≈ 1e-11) and rounding
 *   (ε·|L|/h ≈ 1e-10) errors are ~1e-10, so 1e-7 + 1e-6·|g| leaves three orders of margin while
 *   any wrong rule (a missing factor, a transposed operand) is off by O(1).
 * - FLOAT, h = 1e-2: rounding in the op itself is ~6e-8·|L|/h ≈ 1e-4 and truncation ≈ 2e-5·f''',
 *   so 2e-3 + 2e-2·|g|.
 */
export const TOL: Record<FloatType, { h: number; atol: number; rtol: number }> = {
  DOUBLE: { h: 1e-5, atol: 1e-7, rtol: 1e-6 },
  FLOAT: { h: 1e-2, atol: 2e-3, rtol: 2e-2 },
};

export interface CheckInput {
  readonly name: string;
  /** Element type; default: the check's float type. INT64 inputs are fed, never differentiated. */
  readonly dtype?: FloatType | 'INT64';
  readonly shape: readonly number[];
  /** Shape declared in the graph (symbolic dims allowed); default `shape`. */
  readonly declared?: readonly Dim[];
  /** Values; default uniform in [−1, 1] (seeded). */
  readonly data?: ArrayLike<number>;
  /** Whether to check its gradient; default true for float inputs. */
  readonly wrt?: boolean;
}

export interface CheckOptions {
  readonly dtype: FloatType;
  readonly inputs: readonly CheckInput[];
  /** Builds op(inputs) on the graph; `v` maps input names to values (the names themselves). */
  readonly build: (g: GraphBuilder, v: Record<string, string>) => string;
  readonly seed?: number;
  readonly tol?: { h?: number; atol?: number; rtol?: number };
  /**
   * Graph inputs that `build` declares itself (e.g. CLIP's weight matrices): fed with seeded
   * uniform values in ±scale(shape) (default ±1/√shape[0]); those listed in `wrt` are checked.
   */
  readonly implicit?: { readonly wrt?: readonly string[]; readonly scale?: (shape: readonly number[]) => number };
  /** Check at most this many evenly spaced elements per input (default: all). */
  readonly maxElements?: number;
}

/** A float constant of the check's type. */
export function constOf(g: GraphBuilder, dtype: FloatType, values: readonly number[], dims: readonly number[] = []): string {
  return g.initializer(g.uniqueName('c'), dtype === 'DOUBLE' ? Float64Array.from(values) : Float32Array.from(values), dims);
}

export function randomValues(n: number, rand: () => number, lo = -1, hi = 1): number[] {
  return Array.from({ length: n }, () => lo + (hi - lo) * rand());
}

function feedOf(inp: CheckInput, dtype: FloatType, values: ArrayLike<number>): Tensor {
  const t = inp.dtype ?? dtype;
  if (t === 'INT64') return tensor('int64', BigInt64Array.from(Array.from(values, (v) => BigInt(v))), inp.shape);
  return t === 'DOUBLE' ? tensor('float64', Float64Array.from(values), inp.shape) : tensor('float32', Float32Array.from(values), inp.shape);
}

function declare(g: GraphBuilder, opts: CheckOptions): Record<string, string> {
  const v: Record<string, string> = {};
  for (const inp of opts.inputs) v[inp.name] = g.input(inp.name, inp.dtype ?? opts.dtype, inp.declared ?? inp.shape);
  return v;
}

export interface CheckResult {
  /** Analytic gradients by input name. */
  readonly grads: Record<string, Float64Array>;
  readonly loss: number;
  /** The graph, for structural assertions. */
  readonly graph: GraphBuilder;
  /** Largest |analytic − numeric| over all checked elements. */
  readonly maxError: number;
}

/** Runs the check; fails the test with the input, element and both values on a mismatch. */
export async function gradCheck(label: string, opts: CheckOptions): Promise<CheckResult> {
  const rand = mulberry32(opts.seed ?? 1);
  const values = new Map<string, number[]>();
  for (const inp of opts.inputs) {
    const n = inp.shape.reduce((a, b) => a * b, 1);
    values.set(inp.name, inp.data ? Array.from(inp.data) : randomValues(n, rand));
  }

  // Stage 1: the op's output shape, for R, and the inputs `build` declares itself.
  const probe = new GraphBuilder(`${label}_probe`);
  probe.output(opts.build(probe, declare(probe, opts)), 'check_y', opts.dtype, []);
  const inputs: CheckInput[] = [...opts.inputs];
  for (const name of probe.inputNames()) {
    if (opts.inputs.some((i) => i.name === name)) continue;
    const spec = probe.inputSpec(name)!;
    if (!spec.shape.every((d) => typeof d === 'number')) throw new Error(`${label}: implicit input '${name}' needs a static shape`);
    const shape = spec.shape as number[];
    const scale = opts.implicit?.scale?.(shape) ?? 1 / Math.sqrt(shape[0] ?? 1);
    values.set(name, randomValues(shape.reduce((a, b) => a * b, 1), rand, -scale, scale));
    inputs.push({ name, dtype: spec.dtype as FloatType, shape, wrt: opts.implicit?.wrt?.includes(name) ?? false });
  }
  const feeds = (): Record<string, Tensor> => Object.fromEntries(inputs.map((i) => [i.name, feedOf(i, opts.dtype, values.get(i.name)!)]));
  const ps = await Session.create(probe.toBytes(), `${label}_probe`, { threads: 1 });
  const yDims = (await ps.run(feeds())).check_y!.dims;
  await ps.release();

  // Stage 2: loss = Σ op(inputs)·R, plus its gradients.
  const g = new GraphBuilder(label);
  const y = opts.build(g, declare(g, opts));
  const rn = yDims.reduce((a, b) => a * b, 1);
  const r = constOf(g, opts.dtype, randomValues(rn, rand), yDims);
  const loss = g.op('ReduceSum', [g.op('Mul', [y, r])], { keepdims: 0 });
  const wrt = inputs.filter((i) => (i.wrt ?? (i.dtype ?? opts.dtype) !== 'INT64'));
  const grads = addGradients(g, loss, wrt.map((i) => i.name));
  g.output(loss, 'check_loss', opts.dtype, []);
  wrt.forEach((inp, k) => g.output(grads[k]!, `check_grad_${inp.name}`, (inp.dtype ?? opts.dtype) as FloatType, inp.declared ?? inp.shape));
  const session = await Session.create(g.toBytes(), label, { threads: 1 });
  try {
    const out = await session.run(feeds());
    const tol = { ...TOL[opts.dtype], ...opts.tol };
    const result: Record<string, Float64Array> = {};
    let maxError = 0;
    for (const inp of wrt) {
      const gt = out[`check_grad_${inp.name}`]!;
      assert.deepEqual([...gt.dims], [...inp.shape], `${label}: shape of the gradient of '${inp.name}'`);
      const analytic = Float64Array.from(gt.data as Float64Array);
      result[inp.name] = analytic;
      const x = values.get(inp.name)!;
      const stride = opts.maxElements && x.length > opts.maxElements ? x.length / opts.maxElements : 1;
      for (let e = 0; e * stride < x.length; e++) {
        const j = Math.floor(e * stride);
        const x0 = x[j]!;
        const store = (v: number) => ((inp.dtype ?? opts.dtype) === 'FLOAT' ? Math.fround(v) : v);
        const xp = store(x0 + tol.h);
        const xm = store(x0 - tol.h);
        x[j] = xp;
        const lp = Number((await session.run(feeds(), ['check_loss'])).check_loss!.data[0]);
        x[j] = xm;
        const lm = Number((await session.run(feeds(), ['check_loss'])).check_loss!.data[0]);
        x[j] = x0;
        const numeric = (lp - lm) / (xp - xm);
        const err = Math.abs(analytic[j]! - numeric);
        maxError = Math.max(maxError, err);
        if (!(err <= tol.atol + tol.rtol * Math.abs(numeric))) {
          assert.fail(`${label}: d loss / d ${inp.name}[${j}]: analytic ${analytic[j]}, finite difference ${numeric} (|error| ${err.toExponential(3)} > ${tol.atol} + ${tol.rtol}·|fd|)`);
        }
      }
    }
    return { grads: result, loss: Number(out.check_loss!.data[0]), graph: g, maxError };
  } finally {
    await session.release();
  }
}
