// What else onnxruntime-node 1.30 accepts for device data: preferredOutputLocation 'ml-tensor',
// a JS-made Tensor.fromGpuBuffer, the session config key session.use_device_allocator_for_initializers,
// WebGPU provider options (validationMode, storageBufferCacheMode), and an unknown provider option.
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../dist/src/onnx/graph-builder.js';
const g = new GraphBuilder('mm');
g.output(g.op('Relu', [g.input('x', 'FLOAT', [2])]), 'y', 'FLOAT', [2]);
const bytes = g.toBytes();
const x = new ort.Tensor('float32', Float32Array.of(-1, 2), [2]);
const tryIt = async (what, f) => { try { console.log(what, '→', await f()); } catch (e) { console.log(what, '→ error:', e.message.split('\n')[0]); } };
await tryIt("preferredOutputLocation 'ml-tensor'", async () => { const s = await ort.InferenceSession.create(bytes, { executionProviders: ['webgpu'], preferredOutputLocation: 'ml-tensor' }); const r = await s.run({ x }); return `location ${r.y.location}`; });
await tryIt("preferredOutputLocation 'gpu-buffer' on the CPU provider", async () => { const s = await ort.InferenceSession.create(bytes, { executionProviders: ['cpu'], preferredOutputLocation: 'gpu-buffer' }); const r = await s.run({ x }); return `location ${r.y.location}`; });
await tryIt('Tensor.fromGpuBuffer with a JS object fed to a run', async () => { const t = ort.Tensor.fromGpuBuffer({ size: 8 }, { dataType: 'float32', dims: [2] }); const s = await ort.InferenceSession.create(bytes, { executionProviders: ['webgpu'] }); const r = await s.run({ x: t }); return r.y.data; });
await tryIt('extra session.use_device_allocator_for_initializers = 1', async () => { const s = await ort.InferenceSession.create(bytes, { executionProviders: ['webgpu'], extra: { session: { use_device_allocator_for_initializers: '1' } } }); return Array.from((await s.run({ x })).y.data); });
await tryIt('webgpu options validationMode disabled, storageBufferCacheMode bucket', async () => { const s = await ort.InferenceSession.create(bytes, { executionProviders: [{ name: 'webgpu', validationMode: 'disabled', storageBufferCacheMode: 'bucket' }] }); return Array.from((await s.run({ x })).y.data); });
await tryIt('webgpu option enableGraphCapture', async () => { const s = await ort.InferenceSession.create(bytes, { executionProviders: [{ name: 'webgpu', enableGraphCapture: true }] }); return Array.from((await s.run({ x })).y.data); });
await tryIt("extra session.disable_cpu_ep_fallback = 1, a graph with LogSoftmax", async () => { const h = new GraphBuilder('ls'); h.output(h.op('LogSoftmax', [h.input('x', 'FLOAT', [2])], { axis: -1 }), 'y', 'FLOAT', [2]); const s = await ort.InferenceSession.create(h.toBytes(), { executionProviders: ['webgpu'], extra: { session: { disable_cpu_ep_fallback: '1' } } }); return Array.from((await s.run({ x })).y.data); });
