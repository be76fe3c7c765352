import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { fromFloat16Array, toFloat16Array } from '../../src/onnx/float16.js';
import { weightsToFloat16 } from '../../src/onnx/fp16-weights.js';
import { GraphBuilder } from '../../src/onnx/graph-builder.js';
import { decodeModel, encodeModel } from '../../src/onnx/model-proto.js';
import { convertPrecision, parsePrecision } from '../../src/onnx/precision.js';
import { OnnxDataType } from '../../src/onnx/proto.js';
import { mulberry32 } from '../../src/rng.js';
import { Session } from '../../src/runtime/session.js';
import { tensor } from '../../src/tensor.js';

function random(n: number, seed: number): Float32Array {
  const r = mulberry32(seed);
  return Float32Array.from({ length: n }, () => r() * 2 - 1);
}

/** y = LayerNorm(x·W + b)·B: a large weight, a small bias, and B with a value beyond half range. */
function graph(w: Float32Array, big: Float32Array): Uint8Array {
  const g = new GraphBuilder('fp16_test');
  const x = g.input('x', 'FLOAT', ['b', 64]);
  const h = g.op('Add', [g.op('MatMul', [x, g.initializer('w', w, [64, 32])]), g.initializer('b', random(32, 9), [32])]);
  const ln = g.op('LayerNormalization', [h, g.constFloat(Array(32).fill(1), [32]), g.constFloat(Array(32).fill(0), [32])], { axis: -1 });
  g.output(g.op('MatMul', [ln, g.initializer('big', big, [32, 32])]), 'y', 'FLOAT', ['b', 32]);
  return g.toBytes();
}

async function run(bytes: Uint8Array, x: Float32Array): Promise<Float32Array> {
  const s = await Session.create(bytes, 'fp16_test', { threads: 1 });
  try {
    return (await s.run({ x: tensor('float32', x, [x.length / 64, 64]) })).y!.data as Float32Array;
  } finally {
    await s.release();
  }
}

describe('weightsToFloat16: half-precision storage, float32 compute', () => {
  const w = random(64 * 32, 1);
  const big = Float32Array.from(random(32 * 32, 2), (v, i) => (i === 7 ? 1e5 : v)); // one value past 65504

  it('stores large FLOAT initializers as FLOAT16 behind a Cast, keeps small and out-of-range ones', () => {
    const m = weightsToFloat16(decodeModel(graph(w, big)));
    const byName = new Map(m.graph.initializer.map((t) => [t.name, t]));
    assert.equal(byName.get('w_fp16')?.data_type, OnnxDataType.FLOAT16);
    assert.deepEqual(byName.get('w_fp16')?.dims, [64, 32]);
    assert.equal(byName.get('w_fp16')?.raw_data?.byteLength, 64 * 32 * 2);
    assert.ok(!byName.has('w'), 'the float32 copy is gone');
    assert.equal(byName.get('b')?.data_type, OnnxDataType.FLOAT, 'a 32-element bias stays float32');
    assert.equal(byName.get('big')?.data_type, OnnxDataType.FLOAT, '1e5 would overflow half: stays float32');
    const cast = m.graph.node[0]!;
    assert.equal(cast.op_type, 'Cast');
    assert.deepEqual([cast.input, cast.output], [['w_fp16'], ['w']]);
    assert.equal(cast.attribute[0]!.i, OnnxDataType.FLOAT);
  });

  it('runs exactly as the float32 model with its weights rounded to half (ONNX Runtime, CPU)', async () => {
    const x = random(3 * 64, 3);
    const rounded = fromFloat16Array(toFloat16Array(w));
    const got = await run(encodeModel(weightsToFloat16(decodeModel(graph(w, big)))), x);
    const want = await run(graph(rounded, big), x);
    assert.deepEqual([...got], [...want]);
    // and the rounding itself is within half precision of the float32 model
    const exact = await run(graph(w, big), x);
    const worst = Math.max(...exact.map((v, i) => Math.abs(v - got[i]!) / Math.max(1, Math.abs(v))));
    assert.ok(worst < 1e-2, `relative change ${worst}`);
  });
});

describe('convertPrecision', () => {
  it('leaves fp32 bytes untouched and names the valid precisions', () => {
    const bytes = graph(random(64 * 32, 1), random(32 * 32, 2));
    assert.equal(convertPrecision(bytes, 'fp32'), bytes);
    assert.equal(parsePrecision('int8'), 'int8');
    assert.throws(() => parsePrecision('bf16', '--precision'), /--precision must be one of fp32, fp16, int8, got "bf16"/);
  });
});
