import ort from 'onnxruntime-node';
const path = process.argv[2];
const s = await ort.InferenceSession.create(path, { intraOpNumThreads: 2, enableCpuMemArena: true });
for (const b of [1, 8]) {
  const x = new ort.Tensor('float32', new Float32Array(b*3*224*224).fill(0.1), [b,3,224,224]);
  await s.run({ [s.inputNames[0]]: x });
  const t0 = performance.now(); let n = 0;
  while (performance.now() - t0 < 8000) { await s.run({ [s.inputNames[0]]: x }); n += b; }
  console.log(b, (n / ((performance.now()-t0)/1000)).toFixed(2), 'img/s', s.outputNames);
}
