// Lifetime of device tensors in onnxruntime-node 1.30: (a) are gpu-buffer outputs freed by garbage
// collection or only by dispose()? (RSS on lavapipe, where device memory is host memory)
// (b) what happens to a device tensor whose producing session was released?
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../dist/src/onnx/graph-builder.js';
const g = new GraphBuilder('id'); g.output(g.op('Mul', [g.input('x', 'FLOAT', ['n']), g.constFloat([1])]), 'y', 'FLOAT', ['n']);
const mode = process.argv[2];
const s = await ort.InferenceSession.create(g.toBytes(), { executionProviders: ['webgpu'], preferredOutputLocation: 'gpu-buffer' });
const x = new ort.Tensor('float32', new Float32Array(4 << 20), [4 << 20]); // 16 MiB
const rss = () => (process.memoryUsage().rss / 2 ** 20).toFixed(0);
if (mode === 'gc' || mode === 'dispose') {
  console.log('start rss MiB', rss());
  for (let i = 0; i < 40; i++) {
    const y = (await s.run({ x })).y;
    if (mode === 'dispose') y.dispose();
    if (i % 10 === 9) { global.gc?.(); console.log(mode, 'after', i + 1, 'runs of 16 MiB outputs: rss MiB', rss()); }
  }
}
if (mode === 'release') {
  const y = (await s.run({ x })).y;
  await s.release(); console.log('released the producing session');
  const d = await ort.InferenceSession.create(g.toBytes(), { executionProviders: ['webgpu'] });
  console.log('created another session');
  try { const r = await d.run({ x: y }); console.log('device tensor of a released session fed to another: ran, first value', r.y.data[0]); } catch (e) { console.log('fed after release:', e.message); }
  y.dispose();
  console.log('disposed after release: no crash');
}
if (mode === 'release-then-dispose') {
  const y = (await s.run({ x })).y;
  await s.release();
  console.log('released the producing session');
  y.dispose();
  console.log('disposed its output afterwards: no crash');
}
