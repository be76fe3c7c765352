// Is the WebGPU EP's ReduceLogSumExp numerically stable (CLIP logits reach ±100 and beyond)?
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../dist/src/onnx/graph-builder.js';
const g = new GraphBuilder('lse');
const x = g.input('x', 'FLOAT', [2, 4]);
g.output(g.op('Sub', [x, g.op('ReduceLogSumExp', [x], { axes: [-1], keepdims: 1 })]), 'y', 'FLOAT', [2, 4]);
g.output(g.op('LogSoftmax', [x], { axis: -1 }), 'ref', 'FLOAT', [2, 4]);
const feeds = { x: new ort.Tensor('float32', Float32Array.from([100, -100, 250, 0, 1000, 999, -1e4, 3]), [2, 4]) };
for (const ep of ['cpu', 'webgpu']) {
  const s = await ort.InferenceSession.create(g.toBytes(), { executionProviders: [ep] });
  const r = await s.run(feeds);
  console.log(ep, 'x − ReduceLogSumExp:', Array.from(r.y.data), 'LogSoftmax:', Array.from(r.ref.data));
}
