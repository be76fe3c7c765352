// Does the WebGPU EP run here at all; what does a run return; IO binding with gpu-buffer outputs.
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../dist/src/onnx/graph-builder.js';

const g = new GraphBuilder('mm');
const x = g.input('x', 'FLOAT', ['b', 4]);
const w = g.input('w', 'FLOAT', [4, 3]);
g.output(g.op('MatMul', [x, w]), 'y', 'FLOAT', ['b', 3]);
const bytes = g.toBytes();
const t0 = performance.now();
const s = await ort.InferenceSession.create(bytes, { executionProviders: ['webgpu'], logSeverityLevel: 2 });
console.log('create ms', (performance.now() - t0).toFixed(0));
const xv = new ort.Tensor('float32', Float32Array.from({ length: 8 }, (_, i) => i), [2, 4]);
const wv = new ort.Tensor('float32', Float32Array.from({ length: 12 }, (_, i) => i / 10), [4, 3]);
const r = await s.run({ x: xv, w: wv });
console.log('cpu out', r.y.location, Array.from(r.y.data));
// gpu-buffer output
const s2 = await ort.InferenceSession.create(bytes, { executionProviders: ['webgpu'], preferredOutputLocation: 'gpu-buffer' });
const r2 = await s2.run({ x: xv, w: wv });
console.log('gpu out location', r2.y.location, r2.y.dims, typeof r2.y.gpuBuffer);
// r2.y.getData() aborts the process: the binding's download() throws a C string (terminate called after throwing 'char const*')
// feed the device tensor back in as w of another run: y2 = x2 · y  needs [?,2]x[2,3]; use a graph y2 = MatMul(x, w) with w = device [4,3]? make a device [4,3] first
const s3 = await ort.InferenceSession.create(bytes, { executionProviders: ['webgpu'], preferredOutputLocation: 'gpu-buffer' });
const eye = new ort.Tensor('float32', Float32Array.from({ length: 16 }, (_, i) => (i % 5 === 0 ? 1 : 0)), [4, 4]);
const dev = (await s3.run({ x: eye, w: wv })).y; // device copy of w
console.log('dev w', dev.location, dev.dims);
const r3 = await s.run({ x: xv, w: dev });
console.log('fed device w -> cpu out', Array.from(r3.y.data));
dev.dispose();
try { await s.run({ x: xv, w: dev }); console.log('run after dispose: ok??'); } catch (e) { console.log('run after dispose:', e.message); }
