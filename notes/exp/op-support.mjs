// Which provider ORT 1.30's WebGPU EP gives single ops (by dtype) that the project's graphs use or
// could use instead of a CPU fallback. Each op is a one-node graph with its inputs fed (not
// constant-folded); placement read from ORT's profile.
import * as ort from 'onnxruntime-node';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { GraphBuilder } from '../../dist/src/onnx/graph-builder.js';
const DIR = '/tmp/setar-opsupport';
rmSync(DIR, { recursive: true, force: true });
mkdirSync(DIR);
const T = { FLOAT: ['float32', Float32Array], INT64: ['int64', BigInt64Array], INT32: ['int32', Int32Array], BOOL: ['bool', Uint8Array] };
const cases = [
  ['LogSoftmax', [['FLOAT', [4, 7]]], { axis: -1 }],
  ['Softmax', [['FLOAT', [4, 7]]], { axis: -1 }],
  ['Transpose', [['BOOL', [6, 4, 2, 1]]], { perm: [0, 2, 1, 3] }],
  ['Transpose', [['FLOAT', [6, 4, 2, 1]]], { perm: [0, 2, 1, 3] }],
  ['Expand', [['INT64', [5, 1]], ['INT64', [3], [2, 5, 3]]], {}],
  ['Expand', [['INT32', [5, 1]], ['INT64', [3], [2, 5, 3]]], {}],
  ['Expand', [['FLOAT', [5, 1]], ['INT64', [3], [2, 5, 3]]], {}],
  ['ScatterElements', [['FLOAT', [2, 5, 3]], ['INT64', [2, 5, 3], 'perm5'], ['FLOAT', [2, 5, 3]]], { axis: 1, reduction: 'add' }],
  ['ScatterElements', [['FLOAT', [2, 5, 3]], ['INT32', [2, 5, 3], 'perm5'], ['FLOAT', [2, 5, 3]]], { axis: 1, reduction: 'add' }],
  ['ScatterND', [['FLOAT', [5, 3]], ['INT64', [4, 1], 'perm4'], ['FLOAT', [4, 3]]], { reduction: 'add' }],
  ['Gather', [['FLOAT', [2, 5, 3]], ['INT64', [5], 'perm5']], { axis: 1 }],
  ['Gather', [['FLOAT', [2, 5, 3]], ['INT32', [5], 'perm5']], { axis: 1 }],
  ['Equal', [['FLOAT', [4, 7]], ['FLOAT', [4, 7]]], {}],
  ['Cast', [['BOOL', [4, 7]]], { to: 1 }],
  ['Cast', [['INT32', [4, 7]]], { to: 7 }],
  ['Where', [['BOOL', [4, 7]], ['FLOAT', [4, 7]], ['FLOAT', [4, 7]]], {}],
  ['Sign', [['FLOAT', [4, 7]]], {}],
  ['ReduceMax', [['FLOAT', [4, 7]]], { axes: [-1], keepdims: 1 }],
  ['ReduceL2', [['FLOAT', [4, 7]]], { axes: [-1], keepdims: 1 }],
  ['Trilu', [['FLOAT', [4, 4]], ['INT64', [], [1]]], { upper: 1 }],
  ['Compress', [['INT64', [3]], ['BOOL', [3]]], { axis: 0 }],
  ['Erf', [['FLOAT', [4, 7]]], {}],
  ['ReduceLogSumExp', [['FLOAT', [4, 7]]], { axes: [-1], keepdims: 1 }],
  ['Cast', [['INT64', [4, 7]]], { to: 6 }],
  ['Pad', [['FLOAT', [2, 5, 3]], ['INT64', [6], [0, 0, 0, 0, 1, 0]]], {}],
];
const fill = (dt, n, spec) => {
  const [, Ctor] = T[dt];
  if (Array.isArray(spec)) return dt === 'INT64' ? BigInt64Array.from(spec, BigInt) : Ctor.from(spec);
  if (spec === 'perm5' || spec === 'perm4') { const m = spec === 'perm5' ? 5 : 4; const a = Array.from({ length: n }, (_, i) => [3, 1, 4, 0, 2][i % m] % (spec === 'perm5' ? 5 : 5)); return dt === 'INT64' ? BigInt64Array.from(a, BigInt) : Ctor.from(a); }
  if (dt === 'INT64') return BigInt64Array.from({ length: n }, (_, i) => BigInt(i % 3));
  if (dt === 'BOOL') return Uint8Array.from({ length: n }, (_, i) => i % 2);
  return Ctor.from({ length: n }, (_, i) => (i % 5) - 2);
};
const rows = [];
for (let ci = 0; ci < cases.length; ci++) {
  const [op, ins, attrs] = cases[ci];
  const g = new GraphBuilder(`op${ci}`);
  const names = ins.map(([dt, shape], i) => g.input(`in${i}`, dt, shape));
  const outType = { Transpose: ins[0][0], Expand: ins[0][0], Equal: 'BOOL', Cast: { 7: 'INT64', 6: 'INT32', 1: 'FLOAT' }[attrs.to], Compress: ins[0][0] }[op] ?? 'FLOAT';
  g.output(g.op(op, names, attrs), 'y', outType, []);
  let bytes = g.toBytes();
  const feeds = {};
  ins.forEach(([dt, shape, spec], i) => { const n = shape.reduce((a, b) => a * b, 1); feeds[`in${i}`] = new ort.Tensor(T[dt][0], fill(dt, n, spec), shape); });
  const prefix = `${DIR}/c${ci}`;
  let where;
  try {
    // outputs are declared FLOAT [] only for the builder; ORT infers and checks types, so declare loosely via a fresh graph per output type
    const s = await ort.InferenceSession.create(bytes, { executionProviders: ['webgpu'], enableProfiling: true, profileFilePrefix: prefix, logSeverityLevel: 3 });
    await s.run(feeds);
    await s.release();
    const f = readdirSync(DIR).find((x) => x.startsWith(`c${ci}_`));
    const ev = JSON.parse(readFileSync(`${DIR}/${f}`, 'utf8')).filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time'));
    where = [...new Set(ev.map((e) => `${e.args.op_name}@${e.args.provider.replace('ExecutionProvider', '')}`))].join(', ');
  } catch (e) { where = `error: ${e.message.split('\n')[0].slice(0, 120)}`; }
  rows.push(`${op}(${ins.map(([dt]) => dt.toLowerCase()).join(', ')}) → ${where}`);
}
console.log(rows.join('\n'));
