// Device-resident tensors in onnxruntime-node 1.30 on the WebGPU EP:
//  1. upload: an Identity session with preferredOutputLocation 'gpu-buffer' turns a host tensor into a device one;
//  2. download: an Identity session with CPU outputs turns it back (Tensor.getData() on a gpu-buffer tensor aborts the process);
//  3. per-output locations: { hidden: 'gpu-buffer' } keeps one output on the device, the others come back to the host;
//  4. cost: one ViT-B/16 encoder layer (weights as graph inputs) run with its 6 weight matrices fed from the host vs pre-uploaded.
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../dist/src/onnx/graph-builder.js';
import { encoderLayersGraph } from '../../dist/src/models/clip/graph.js';

const identity = (dtype) => { const g = new GraphBuilder('id'); g.output(g.op('Identity', [g.input('x', dtype, ['n'])]), 'y', dtype, ['n']); return g.toBytes(); };
const up = await ort.InferenceSession.create(identity('FLOAT'), { executionProviders: ['webgpu'], preferredOutputLocation: 'gpu-buffer' });
const down = await ort.InferenceSession.create(identity('FLOAT'), { executionProviders: ['webgpu'] });
const upload = async (t) => (await up.run({ x: new ort.Tensor('float32', t.data, [t.data.length]) })).y.reshape ? null : null;
// 1 + 2
const host = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i));
const dev = (await up.run({ x: new ort.Tensor('float32', host, [1000]) })).y;
const back = (await down.run({ x: dev })).y;
console.log('1/2 upload→download: location', dev.location, '→', back.location, 'exact:', back.data.every((v, i) => v === host[i]));

// 3
const g3 = new GraphBuilder('two');
const x3 = g3.input('x', 'FLOAT', ['n']);
const h3 = g3.op('Mul', [x3, g3.constFloat([2])]);
g3.output(h3, 'hidden', 'FLOAT', ['n']);
g3.output(g3.op('ReduceSum', [h3], { keepdims: 0 }), 'total', 'FLOAT', []);
const s3 = await ort.InferenceSession.create(g3.toBytes(), { executionProviders: ['webgpu'], preferredOutputLocation: { hidden: 'gpu-buffer' } });
const r3 = await s3.run({ x: dev });
console.log('3 per-output location: hidden', r3.hidden.location, 'total', r3.total.location, r3.total.data[0].toFixed(3), 'expected', (2 * host.reduce((a, b) => a + b, 0)).toFixed(3));

// 4
const D = 768, F = 3072, B = Number(process.env.BATCH ?? 8), T = 197;
const rnd = (n, s) => Float32Array.from({ length: n }, (_, i) => (Math.sin(i * 12.9898 + s) * 43758.5453 % 1) * 0.02);
const lin = (o, i, s) => ({ out: o, in: i, bias: rnd(o, s) });
const ln = () => ({ weight: new Float32Array(D).fill(1), bias: new Float32Array(D) });
const layer = { layer_norm1: ln(), q_proj: lin(D, D, 1), k_proj: lin(D, D, 2), v_proj: lin(D, D, 3), out_proj: lin(D, D, 4), layer_norm2: ln(), fc1: lin(F, D, 5), fc2: lin(D, F, 6) };
const bytes = encoderLayersGraph({ layers: [layer], prefixes: ['vision_model.encoder.layers.0'] }, { heads: 12, eps: 1e-5, act: 'quick_gelu', causal: false }, 'layer');
const s4 = await ort.InferenceSession.create(bytes, { executionProviders: ['webgpu'] });
const s4dev = await ort.InferenceSession.create(bytes, { executionProviders: ['webgpu'], preferredOutputLocation: 'gpu-buffer' });
const feeds = { hidden_states: new ort.Tensor('float32', rnd(B * T * D, 7), [B, T, D]) };
const devFeeds = { hidden_states: (await up.run({ x: new ort.Tensor('float32', feeds.hidden_states.data, [B * T * D]) })).y };
devFeeds.hidden_states = (await (await ort.InferenceSession.create((() => { const g = new GraphBuilder('r'); g.output(g.op('Reshape', [g.input('x', 'FLOAT', ['n']), g.constInt64([B, T, D])]), 'y', 'FLOAT', [B, T, D]); return g.toBytes(); })(), { executionProviders: ['webgpu'], preferredOutputLocation: 'gpu-buffer' })).run({ x: devFeeds.hidden_states })).y;
let weightBytes = 0;
const reshape2 = async (t, i, o) => { const g = new GraphBuilder('r2'); g.output(g.op('Reshape', [g.input('x', 'FLOAT', ['n']), g.constInt64([i, o])]), 'y', 'FLOAT', [i, o]); const s = await ort.InferenceSession.create(g.toBytes(), { executionProviders: ['webgpu'], preferredOutputLocation: 'gpu-buffer' }); return (await s.run({ x: t })).y; };
for (const n of s4.inputNames) {
  if (n === 'hidden_states') continue;
  const [i, o] = n.endsWith('fc1.weight') ? [D, F] : n.endsWith('fc2.weight') ? [F, D] : [D, D];
  const w = rnd(i * o, n.length);
  weightBytes += w.byteLength;
  feeds[n] = new ort.Tensor('float32', w, [i, o]);
  devFeeds[n] = await reshape2((await up.run({ x: new ort.Tensor('float32', w, [i * o]) })).y, i, o);
}
const time = async (f, reps = 5) => { await f(); await f(); const ts = []; for (let k = 0; k < reps; k++) { const t0 = performance.now(); await f(); ts.push(performance.now() - t0); } ts.sort((a, b) => a - b); return ts[Math.floor(reps / 2)]; };
const hostRun = await time(() => s4.run(feeds));
const devRun = await time(() => s4.run({ ...feeds, ...Object.fromEntries(Object.entries(devFeeds).filter(([k]) => k !== 'hidden_states')) }));
// a run whose outputs stay on the device returns once its work is queued: time it with a download of a one-element reduction to wait for it
const gs = new GraphBuilder('sync'); gs.output(gs.op('ReduceSum', [gs.input('x', 'FLOAT', [B, T, D])], { keepdims: 0 }), 'y', 'FLOAT', []);
const sync = await ort.InferenceSession.create(gs.toBytes(), { executionProviders: ['webgpu'] });
const allDev = await time(async () => sync.run({ x: (await s4dev.run(devFeeds)).hidden_states_out }));
const outHost = (await s4.run(feeds)).hidden_states_out.data;
const outDev = (await down.run({ x: await (async () => { const o = (await s4dev.run(devFeeds)).hidden_states_out; const g = new GraphBuilder('f'); g.output(g.op('Reshape', [g.input('x', 'FLOAT', [B, T, D]), g.constInt64([-1])]), 'y', 'FLOAT', ['n']); const s = await ort.InferenceSession.create(g.toBytes(), { executionProviders: ['webgpu'], preferredOutputLocation: 'gpu-buffer' }); return (await s.run({ x: o })).y; })() })).y.data;
let maxd = 0; for (let i = 0; i < outHost.length; i++) maxd = Math.max(maxd, Math.abs(outHost[i] - outDev[i]));
console.log(`4 one ViT-B/16 layer, batch ${B}, webgpu (lavapipe): weights fed from host ${hostRun.toFixed(0)} ms/run (${(weightBytes / 2 ** 20).toFixed(1)} MiB of weights + ${(feeds.hidden_states.data.byteLength / 2 ** 20).toFixed(1)} MiB hidden uploaded, ${(outHost.byteLength / 2 ** 20).toFixed(1)} MiB downloaded); weights pre-uploaded ${devRun.toFixed(0)} ms/run; weights + hidden states on device, output kept there (4 bytes downloaded) ${allDev.toFixed(0)} ms/run; max |host − device path| ${maxd}`);
