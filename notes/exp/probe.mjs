// What happens when a device is unavailable: session creation errors for webgpu (no Vulkan ICD) and cuda (no provider binaries).
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../../dist/src/onnx/graph-builder.js';
const g = new GraphBuilder('probe');
const x = g.input('x', 'FLOAT', [1]);
g.output(g.op('Relu', [x]), 'y', 'FLOAT', [1]);
const bytes = g.toBytes();
for (const ep of process.argv.slice(2)) {
  const t0 = performance.now();
  try {
    const s = await ort.InferenceSession.create(bytes, { executionProviders: [ep], logSeverityLevel: 3 });
    const r = await s.run({ x: new ort.Tensor('float32', new Float32Array([-1]), [1]) });
    console.log(ep, 'ok', r.y.data, (performance.now() - t0).toFixed(0), 'ms');
  } catch (e) {
    console.log(ep, 'FAILED:', JSON.stringify(e.message), (performance.now() - t0).toFixed(0), 'ms');
  }
}
