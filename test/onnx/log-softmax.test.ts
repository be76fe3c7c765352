import { describe, it } from 'node:test';
import { GraphBuilder } from '../../src/onnx/graph-builder.js';
import { logSoftmax } from '../../src/onnx/log-softmax.js';
import { Session } from '../../src/runtime/session.js';
import { tensor } from '../../src/tensor.js';
import { gradCheck } from '../autodiff/gradcheck.js';
import { assertClose } from '../helpers/close.js';
import { webgpuOrSkip } from '../helpers/webgpu.js';

// rows of CLIP-sized logits (scale 100) and beyond, where exp() alone overflows float32
const X = Float32Array.of(100, -100, 250, 0, 1000, 999, -1e4, 3, 0.5, 0.25, -0.125, 0);

function graph(): Uint8Array {
  const g = new GraphBuilder('log_softmax');
  const x = g.input('x', 'FLOAT', [3, 4]);
  g.output(logSoftmax(g, x, -1), 'y', 'FLOAT', [3, 4]);
  g.output(g.op('LogSoftmax', [x], { axis: -1 }), 'ref', 'FLOAT', [3, 4]);
  return g.toBytes();
}

describe('logSoftmax (graph helper)', () => {
  it('equals ONNX LogSoftmax on the CPU, for logits up to 1e4 in magnitude', async () => {
    const s = await Session.create(graph(), 'log_softmax');
    const out = await s.run({ x: tensor('float32', X, [3, 4]) });
    await s.release();
    // both are float32 evaluations of the same formula; rows with |x| ~ 1e3 carry float32 spacing 6e-5
    assertClose(out.y!.data as Float32Array, out.ref!.data as Float32Array, { name: 'log_softmax', atol: 1e-6, rtol: 1e-6 });
  });

  it('has the gradient dy − softmax·Σdy (float64 finite differences), axis 1 of [2, 5]', async () => {
    await gradCheck('log_softmax', { dtype: 'DOUBLE', inputs: [{ name: 'x', shape: [2, 5] }], build: (g, v) => logSoftmax(g, v.x!, 1) });
  });

  it('on webgpu, where a Vulkan device exists: the same values as ORT\'s CPU LogSoftmax', async (t) => {
    const eps = await webgpuOrSkip(t);
    if (!eps) return;
    const s = await Session.create(graph(), 'log_softmax', { executionProviders: eps });
    const out = await s.run({ x: tensor('float32', X, [3, 4]) });
    await s.release();
    assertClose(out.y!.data as Float32Array, out.ref!.data as Float32Array, { name: 'log_softmax (webgpu)', atol: 1e-6, rtol: 1e-6 });
  });
});
