import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder } from '../../src/onnx/graph-builder.js';
import { decodeModel, encodeModel, type OnnxModel } from '../../src/onnx/model-proto.js';
import { OnnxDataType } from '../../src/onnx/proto.js';
import { quantizeMatMuls } from '../../src/onnx/quantize.js';
import { quantizeWeightPerColumn, roundHalfEven } from '../../src/onnx/quantize-weights.js';
import { mulberry32 } from '../../src/rng.js';
import { Session } from '../../src/runtime/session.js';
import { tensor } from '../../src/tensor.js';
import { assertClose } from '../helpers/close.js';

const f = Math.fround;

/**
 * DynamicQuantizeLinear as the ONNX spec and ORT define it, in float32 steps:
 * scale = (max(0, max x) − min(0, min x)) / 255 (1 if that is 0), zero point =
 * saturate(round_half_even(−min(0, min x) / scale)), q = saturate(round_half_even(x / scale) + zp).
 */
function dynamicQuantizeLinear(x: ArrayLike<number>): { q: Uint8Array; scale: number; zp: number } {
  let hi = 0;
  let lo = 0;
  for (let i = 0; i < x.length; i++) {
    hi = Math.max(hi, x[i]!);
    lo = Math.min(lo, x[i]!);
  }
  const scale = hi === lo ? 1 : f(f(hi - lo) / 255);
  const zp = Math.max(0, Math.min(255, roundHalfEven(f(-lo / scale))));
  const q = Uint8Array.from(x, (v) => Math.max(0, Math.min(255, roundHalfEven(f(v / scale)) + zp)));
  return { q, scale, zp };
}

/**
 * The quantised MatMul in JS: rows of x [M, K] quantised together, W [K, N] per column. Also
 * returns, per output, the magnitude of the per-image graph's two float32 terms
 * (Σ A_q·W_q)·scale·scale_W and zp·scale·Σ W_q·scale_W, whose difference it computes.
 */
function quantizedMatMul(x: Float32Array, m: number, w: Float32Array, k: number, n: number): { y: Float32Array; terms: Float64Array } {
  const { q: xq, scale, zp } = dynamicQuantizeLinear(x);
  const { q: wq, scale: ws } = quantizeWeightPerColumn(w, k, n);
  const y = new Float32Array(m * n);
  const terms = new Float64Array(m * n);
  for (let r = 0; r < m; r++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      let raw = 0;
      let col = 0;
      for (let i = 0; i < k; i++) {
        acc += (xq[r * k + i]! - zp) * wq[i * n + j]!;
        raw += xq[r * k + i]! * wq[i * n + j]!;
        col += wq[i * n + j]!;
      }
      y[r * n + j] = f(acc * f(scale * ws[j]!));
      terms[r * n + j] = (Math.abs(raw) + zp * Math.abs(col)) * scale * ws[j]!;
    }
  }
  return { y, terms };
}

function matMul(x: Float32Array, m: number, w: Float32Array, k: number, n: number): Float64Array {
  const y = new Float64Array(m * n);
  for (let r = 0; r < m; r++) for (let j = 0; j < n; j++) for (let i = 0; i < k; i++) y[r * n + j] = y[r * n + j]! + x[r * k + i]! * w[i * n + j]!;
  return y;
}

function random(n: number, seed: number, lo = -1, hi = 1): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * r());
}

async function run(model: OnnxModel | Uint8Array, feeds: Record<string, ReturnType<typeof tensor<'float32'>>>): Promise<Record<string, Float32Array>> {
  const s = await Session.create(model instanceof Uint8Array ? model : encodeModel(model), 'quantize_test', { threads: 1 });
  try {
    const out = await s.run(feeds);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
  } finally {
    await s.release();
  }
}

const K = 8;
const N = 5;
/**
 * y = x·W + b (x [B, S, K]), pooled = x2·W (the same W, x2 [B, K]), att = x·xᵀ (activation ×
 * activation, must stay float).
 */
function testGraph(w: Float32Array): Uint8Array {
  const g = new GraphBuilder('quantize_test');
  const x = g.input('x', 'FLOAT', ['b', 's', K]);
  const x2 = g.input('x2', 'FLOAT', ['b', K]);
  const wi = g.initializer('w', w, [K, N]);
  g.output(g.op('Add', [g.op('MatMul', [x, wi]), g.initializer('bias', Float32Array.of(0.5, -0.5, 0, 1, 2), [N])]), 'y', 'FLOAT', ['b', 's', N]);
  g.output(g.op('MatMul', [x2, wi]), 'pooled', 'FLOAT', ['b', N]);
  g.output(g.op('MatMul', [x, g.op('Transpose', [x], { perm: [0, 2, 1] })]), 'att', 'FLOAT', ['b', 's', 's']);
  return g.toBytes();
}

describe('roundHalfEven and per-column weight quantisation', () => {
  it('rounds ties to even, others to nearest', () => {
    const cases: [number, number][] = [[0.5, 0], [1.5, 2], [2.5, 2], [-0.5, 0], [-1.5, -2], [-2.5, -2], [2.4, 2], [-2.6, -3], [3, 3], [126.5, 126], [127.5, 128]];
    for (const [x, r] of cases) assert.equal(roundHalfEven(x), r, `${x}`);
  });

  it('stores w ≈ q · scale per output column, q in [−127, 127], zero point 0', () => {
    // W [4, 4] in MatMul layout, one column per case: max 127 (scale 1, ties 2.5 → 2 and
    // −3.5 → −4), max 254 (scale 2), all zeros (scale 1), max 300 (scale 300/127)
    const w = Float32Array.of(
      127, -254, 0, 300,
      2.5, 1.5, 0, -300,
      -3.5, 0.5, 0, 1,
      0.49, 100.25, 0, 0,
    );
    const { q, scale } = quantizeWeightPerColumn(w, 4, 4);
    assert.deepEqual([...scale], [1, 2, 1, f(300 / 127)]);
    assert.deepEqual([...q], [127, -127, 0, 127, 2, 1, 0, -127, -4, 0, 0, 0, 0, 50, 0, 0]);
  });
});

for (const activations of ['per-tensor', 'per-image'] as const) {
  describe(`quantizeMatMuls (activations ${activations})`, () => {
    const w = random(K * N, 1);
    const model = quantizeMatMuls(decodeModel(testGraph(w)), { activations });

    it('replaces every MatMul by a weight initializer, once per weight, and nothing else', () => {
      const ops = model.graph.node.map((n) => n.op_type);
      assert.equal(ops.filter((o) => o === 'MatMulInteger').length, 2);
      assert.equal(ops.filter((o) => o === 'MatMul').length, 1, 'the activation × activation MatMul stays float');
      assert.equal(ops.filter((o) => o === 'DynamicQuantizeLinear').length, activations === 'per-tensor' ? 2 : 0);
      assert.equal(ops.filter((o) => o === 'QuantizeLinear').length, activations === 'per-image' ? 2 : 0);
      const inits = new Map(model.graph.initializer.map((t) => [t.name, t]));
      assert.ok(!inits.has('w'), 'the float weight is dropped once nothing reads it');
      assert.equal(inits.get('w_quantized')?.data_type, OnnxDataType.INT8);
      assert.deepEqual(inits.get('w_quantized')?.dims, [K, N]);
      assert.deepEqual(inits.get('w_scale')?.dims, [N]);
      assert.equal(inits.get('bias')?.data_type, OnnxDataType.FLOAT);
      for (const n of model.graph.node.filter((x) => x.op_type === 'MatMulInteger')) assert.equal(n.input.length, activations === 'per-tensor' ? 3 : 2, 'A zero point only as MatMulInteger takes it (a scalar)');
    });

    it('computes DynamicQuantizeLinear + MatMulInteger + rescale exactly as the JS reference (ONNX Runtime, CPU)', async () => {
      const b = 2, s = 3;
      const x = random(b * s * K, 2, -1.5, 3);
      const x2 = random(b * K, 3);
      const out = await run(model, { x: tensor('float32', x, [b, s, K]), x2: tensor('float32', x2, [b, K]) });
      const bias = [0.5, -0.5, 0, 1, 2];
      // per tensor, all rows share the activation's scale; per image, each image's rows
      const parts = (t: Float32Array, rows: number) => (activations === 'per-tensor' ? [t] : [t.subarray(0, rows * K), t.subarray(rows * K)]);
      const reference = (t: Float32Array, rows: number, withBias: boolean) => {
        const ys = parts(t, rows).map((p) => quantizedMatMul(p, p.length / K, w, K, N));
        const y = Float32Array.from(ys.flatMap((r) => [...r.y]), (v, i) => (withBias ? f(v + bias[i % N]!) : v));
        return { y, terms: ys.flatMap((r) => [...r.terms]) };
      };
      // The int32 sums are exact; what remains is float32 rounding. Per tensor ORT applies
      // acc · (scale · scale_W) (+ bias) as the reference does, a fused multiply-add rounding once
      // instead of twice: 1 ulp. Per image the graph subtracts two float32 products (see
      // quantize.ts) and adds the bias to the second: a few ulps of the larger term.
      for (const [name, input, rows, withBias] of [['y', x, s, true], ['pooled', x2, 1, false]] as const) {
        const want = reference(input, rows, withBias);
        const atol = activations === 'per-tensor' ? 1e-7 : 4 * 2 ** -24 * (Math.max(...want.terms) + 2);
        assertClose(out[name]!, want.y, { name, rtol: 2 ** -23, atol });
      }
    });

    it('stays within the rounding bound of the float MatMul: |Δy| ≤ (s_w/2)·Σ|x| + (s_x/2)·Σ|ŵ|', async () => {
      const b = 2, s = 4, n = 16, k = 64;
      const w2 = random(k * n, 4);
      const g = new GraphBuilder('bound');
      const x = g.input('x', 'FLOAT', ['b', s, k]);
      g.output(g.op('MatMul', [x, g.initializer('w', w2, [k, n])]), 'y', 'FLOAT', ['b', s, n]);
      const xs = random(b * s * k, 5, -2, 1);
      const out = await run(quantizeMatMuls(decodeModel(g.toBytes()), { activations }), { x: tensor('float32', xs, [b, s, k]) });
      const exact = matMul(xs, b * s, w2, k, n);
      const { q: wq, scale: ws } = quantizeWeightPerColumn(w2, k, n);
      // the activation step: the whole tensor's range, or each image's
      const step = (img: number) => dynamicQuantizeLinear(activations === 'per-tensor' ? xs : xs.subarray(img * s * k, (img + 1) * s * k)).scale;
      // + 1e-5: float32 rounding of sums of 64 products of magnitude ≤ 2
      for (let r = 0; r < b * s; r++) {
        for (let j = 0; j < n; j++) {
          let sx = 0;
          let sw = 0;
          for (let i = 0; i < k; i++) {
            sx += Math.abs(xs[r * k + i]!);
            sw += Math.abs(wq[i * n + j]! * ws[j]!);
          }
          const bound = (ws[j]! / 2) * sx + (step(Math.floor(r / s)) / 2) * sw + 1e-5;
          const err = Math.abs(out.y![r * n + j]! - exact[r * n + j]!);
          assert.ok(err <= bound, `y[${r}, ${j}]: |Δ| ${err} > bound ${bound}`);
        }
      }
    });

    it('zero point and ties: −2.5 and 252.5 give scale 1 and zero point round_half_even(2.5) = 2', async () => {
      // W = 127·I/127: each output is (x_q − zp) · scale_x, i.e. round_half_even(x) itself
      const k = 6;
      const eye = new Float32Array(k * k);
      for (let i = 0; i < k; i++) eye[i * k + i] = 1;
      const g = new GraphBuilder('ties');
      const x = g.input('x', 'FLOAT', [1, 1, k]);
      g.output(g.op('MatMul', [x, g.initializer('w', eye, [k, k])]), 'y', 'FLOAT', [1, 1, k]);
      const xs = Float32Array.of(-2.5, 252.5, 0.5, 1.5, 2.5, -1.5);
      const out = await run(quantizeMatMuls(decodeModel(g.toBytes()), { activations }), { x: tensor('float32', xs, [1, 1, k]) });
      // half-away-from-zero rounding would give zero point 3 and −3, 253, 1, 2, 3, −2
      assertClose(out.y!, [-2, 252, 0, 2, 2, -2], { name: 'y', rtol: 1e-6 });
    });

    it('an all-zero input quantises with scale 1 and gives zeros', async () => {
      const out = await run(model, { x: tensor('float32', new Float32Array(2 * K), [1, 2, K]), x2: tensor('float32', new Float32Array(K), [1, K]) });
      assertClose(out.y!, [0.5, -0.5, 0, 1, 2, 0.5, -0.5, 0, 1, 2], { name: 'y' });
      assertClose(out.pooled!, new Float32Array(N), { name: 'pooled' });
    });

    it(activations === 'per-image' ? 'gives each image the result it has alone, whatever its batch' : 'shares one scale across the batch', async () => {
      const quiet = random(3 * K, 6);
      const loud = random(3 * K, 7, -1000, 1000);
      const both = new Float32Array([...quiet, ...loud]);
      const alone = await run(model, { x: tensor('float32', quiet, [1, 3, K]), x2: tensor('float32', quiet.subarray(0, K), [1, K]) });
      const batched = await run(model, { x: tensor('float32', both, [2, 3, K]), x2: tensor('float32', both.subarray(0, 2 * K), [2, K]) });
      const same = alone.y!.every((v, i) => v === batched.y![i]);
      assert.equal(same, activations === 'per-image');
    });
  });
}

describe('quantizeMatMuls: what it refuses and what it leaves alone', () => {
  it('needs DynamicQuantizeLinear\'s opset', () => {
    const m = decodeModel(testGraph(random(K * N, 1)));
    m.opset_import = [{ domain: '', version: 10 }];
    assert.throws(() => quantizeMatMuls(m, { activations: 'per-tensor' }), /imports opset 10, 'per-tensor' int8 quantisation needs >= 11/);
    m.opset_import = [{ domain: '', version: 12 }];
    assert.throws(() => quantizeMatMuls(m), /imports opset 12, 'per-image' int8 quantisation needs >= 13/);
  });

  it('leaves a MatMul whose weight is a graph input (fed at run time) in float', () => {
    const g = new GraphBuilder('fed');
    const x = g.input('x', 'FLOAT', [2, K]);
    g.output(g.op('MatMul', [x, g.input('w', 'FLOAT', [K, N])]), 'y', 'FLOAT', [2, N]);
    const m = quantizeMatMuls(decodeModel(g.toBytes()));
    assert.deepEqual(m.graph.node.map((n) => n.op_type), ['MatMul', 'Identity']);
  });
});
