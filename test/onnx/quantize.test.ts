import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder } from '../../src/onnx/graph-builder.js';
import { setBatchSize } from '../../src/onnx/batch-size.js';
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

/** The quantised MatMul in JS: x [M, K] quantised as one tensor, W [K, N] per column. */
function quantizedMatMul(x: Float32Array, m: number, w: Float32Array, k: number, n: number): Float32Array {
  const { q: xq, scale, zp } = dynamicQuantizeLinear(x);
  const { q: wq, scale: ws } = quantizeWeightPerColumn(w, k, n);
  const y = new Float32Array(m * n);
  for (let r = 0; r < m; r++) {
    for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let i = 0; i < k; i++) acc += (xq[r * k + i]! - zp) * wq[i * n + j]!;
      y[r * n + j] = f(acc * f(scale * ws[j]!));
    }
  }
  return y;
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

describe('quantizeMatMuls', () => {
  const w = random(K * N, 1);
  const bias = [0.5, -0.5, 0, 1, 2];
  const model = quantizeMatMuls(decodeModel(testGraph(w)));

  it('replaces every MatMul by a weight initializer, once per weight, and nothing else', () => {
    const ops = model.graph.node.map((n) => n.op_type);
    assert.equal(ops.filter((o) => o === 'MatMulInteger').length, 2);
    assert.equal(ops.filter((o) => o === 'DynamicQuantizeLinear').length, 2, 'one per MatMul: the pattern ORT fuses');
    assert.equal(ops.filter((o) => o === 'MatMul').length, 1, 'the activation × activation MatMul stays float');
    const inits = new Map(model.graph.initializer.map((t) => [t.name, t]));
    assert.ok(!inits.has('w'), 'the float weight is dropped once nothing reads it');
    assert.equal(inits.get('w_quantized')?.data_type, OnnxDataType.INT8);
    assert.deepEqual(inits.get('w_quantized')?.dims, [K, N]);
    assert.deepEqual(inits.get('w_scale')?.dims, [N]);
    assert.equal(inits.get('bias')?.data_type, OnnxDataType.FLOAT);
    for (const n of model.graph.node.filter((x) => x.op_type === 'MatMulInteger')) {
      // A's zero point from DynamicQuantizeLinear; B's is 0, MatMulInteger's default: not given
      assert.equal(n.input.length, 3);
      assert.equal(model.graph.node.find((d) => d.output.includes(n.input[2]!))?.op_type, 'DynamicQuantizeLinear');
    }
  });

  it('computes DynamicQuantizeLinear + MatMulInteger + rescale as the JS reference (ONNX Runtime, CPU)', async () => {
    const b = 2, s = 3;
    const x = random(b * s * K, 2, -1.5, 3);
    const x2 = random(b * K, 3);
    const out = await run(model, { x: tensor('float32', x, [b, s, K]), x2: tensor('float32', x2, [b, K]) });
    // The int32 sums are exact; ORT then applies acc · (s_A · s_W) (+ bias) in float32, where a
    // fused multiply-add may round once instead of twice: 1 ulp.
    assertClose(out.y!, quantizedMatMul(x, b * s, w, K, N).map((v, i) => f(v + bias[i % N]!)), { name: 'y', rtol: 2 ** -23, atol: 1e-7 });
    assertClose(out.pooled!, quantizedMatMul(x2, b, w, K, N), { name: 'pooled', rtol: 2 ** -23, atol: 1e-7 });
  });

  it('stays within the rounding bound of the float MatMul: |Δy| ≤ (s_W/2)·Σ|x| + (s_A/2)·Σ|ŵ|', async () => {
    const b = 2, s = 4, n = 16, k = 64;
    const w2 = random(k * n, 4);
    const g = new GraphBuilder('bound');
    const x = g.input('x', 'FLOAT', ['b', s, k]);
    g.output(g.op('MatMul', [x, g.initializer('w', w2, [k, n])]), 'y', 'FLOAT', ['b', s, n]);
    const xs = random(b * s * k, 5, -2, 1);
    const out = await run(quantizeMatMuls(decodeModel(g.toBytes())), { x: tensor('float32', xs, [b, s, k]) });
    const exact = matMul(xs, b * s, w2, k, n);
    const { q: wq, scale: ws } = quantizeWeightPerColumn(w2, k, n);
    const step = dynamicQuantizeLinear(xs).scale;
    for (let r = 0; r < b * s; r++) {
      for (let j = 0; j < n; j++) {
        let sx = 0;
        let sw = 0;
        for (let i = 0; i < k; i++) {
          sx += Math.abs(xs[r * k + i]!);
          sw += Math.abs(wq[i * n + j]! * ws[j]!);
        }
        // each x is off by at most s_A/2 and each w by s_W/2; + 1e-5 for float32 sums of 64 products ≤ 2
        const bound = (ws[j]! / 2) * sx + (step / 2) * sw + 1e-5;
        const err = Math.abs(out.y![r * n + j]! - exact[r * n + j]!);
        assert.ok(err <= bound, `y[${r}, ${j}]: |Δ| ${err} > bound ${bound}`);
      }
    }
  });

  it('zero point and ties: −2.5 and 252.5 give scale 1 and zero point round_half_even(2.5) = 2', async () => {
    // W = I: q_W = 127, s_W = 1/127, so each output is (x_q − zp) · s_A ≈ round_half_even(x)
    const k = 6;
    const eye = new Float32Array(k * k);
    for (let i = 0; i < k; i++) eye[i * k + i] = 1;
    const g = new GraphBuilder('ties');
    const x = g.input('x', 'FLOAT', [1, 1, k]);
    g.output(g.op('MatMul', [x, g.initializer('w', eye, [k, k])]), 'y', 'FLOAT', [1, 1, k]);
    const xs = Float32Array.of(-2.5, 252.5, 0.5, 1.5, 2.5, -1.5);
    const out = await run(quantizeMatMuls(decodeModel(g.toBytes())), { x: tensor('float32', xs, [1, 1, k]) });
    // half-away-from-zero rounding would give zero point 3 and −3, 253, 1, 2, 3, −2
    assertClose(out.y!, [-2, 252, 0, 2, 2, -2], { name: 'y', rtol: 1e-6 });
  });

  it('an all-zero input quantises with scale 1 and gives exactly zero (then the bias)', async () => {
    const out = await run(model, { x: tensor('float32', new Float32Array(2 * K), [1, 2, K]), x2: tensor('float32', new Float32Array(K), [1, K]) });
    assert.deepEqual([...out.y!], [...bias, ...bias]);
    assert.deepEqual([...out.pooled!], [0, 0, 0, 0, 0]);
  });

  it('zero rows stay exactly zero beside non-zero ones (zp is subtracted in int32)', async () => {
    const x = random(2 * K, 8);
    x.fill(0, K);
    const out = await run(model, { x: tensor('float32', x, [1, 2, K]), x2: tensor('float32', x.subarray(0, K), [1, K]) });
    assert.deepEqual([...out.y!.subarray(N)], bias);
  });

  it('shares one activation scale across a batch: a loud image changes a quiet one\'s result', async () => {
    const quiet = random(3 * K, 6);
    const loud = random(3 * K, 7, -1000, 1000);
    const alone = await run(model, { x: tensor('float32', quiet, [1, 3, K]), x2: tensor('float32', quiet.subarray(0, K), [1, K]) });
    const both = new Float32Array([...quiet, ...loud]);
    const batched = await run(model, { x: tensor('float32', both, [2, 3, K]), x2: tensor('float32', both.subarray(0, 2 * K), [2, K]) });
    assert.ok(alone.y!.some((v, i) => v !== batched.y![i]));
  });
});

describe('quantizeMatMuls: what it refuses and what it leaves alone', () => {
  it('needs DynamicQuantizeLinear\'s opset', () => {
    const m = decodeModel(testGraph(random(K * N, 1)));
    m.opset_import = [{ domain: '', version: 10 }];
    assert.throws(() => quantizeMatMuls(m), /imports opset 10, DynamicQuantizeLinear needs >= 11/);
  });

  it('leaves a MatMul whose weight is a graph input (fed at run time) in float', () => {
    const g = new GraphBuilder('fed');
    const x = g.input('x', 'FLOAT', [2, K]);
    g.output(g.op('MatMul', [x, g.input('w', 'FLOAT', [K, N])]), 'y', 'FLOAT', [2, N]);
    const m = quantizeMatMuls(decodeModel(g.toBytes()));
    assert.deepEqual(m.graph.node.map((n) => n.op_type), ['MatMul', 'Identity']);
  });
});

describe('setBatchSize', () => {
  it('fixes the first dimension of inputs and outputs: ONNX Runtime then refuses another batch', async () => {
    const m = setBatchSize(quantizeMatMuls(decodeModel(testGraph(random(K * N, 1)))), 1);
    const one = await run(m, { x: tensor('float32', random(3 * K, 2), [1, 3, K]), x2: tensor('float32', random(K, 3), [1, K]) });
    assert.equal(one.y!.length, 3 * N);
    await assert.rejects(run(m, { x: tensor('float32', random(6 * K, 2), [2, 3, K]), x2: tensor('float32', random(2 * K, 3), [2, K]) }), /index: 0 Got: 2 Expected: 1/);
  });

  it('names an input whose first dimension is fixed to something else', () => {
    const g = new GraphBuilder('fixed');
    g.output(g.input('x', 'FLOAT', [4, K]), 'y', 'FLOAT', [4, K]);
    assert.throws(() => setBatchSize(decodeModel(g.toBytes()), 1), /graph input 'x' has a fixed first dimension 4, not 1/);
  });
});
