// `npm run bench:locoop`: LoCoOp training speed (`setar finetune --method locoop`) on the demo CLIP
// (models/setar-demo-clip): the demo's 5 ID classes, 16 shots each from the training split, batch
// 32, context from "a photo of a" (n 4). Steps/s of whole training steps — augmentation, one ONNX
// run for forward, loss and the context's gradient through the frozen text tower, the SGD update —
// timed from the second step on (the first compiles the session), and the whole run.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoModelDir, writeDemoData } from '../src/demo/run-demo.js';
import { defaultThreads } from '../src/runtime/session.js';
import { resolveFinetuneConfig } from '../src/train/config.js';
import { runFinetune } from '../src/train/finetune.js';

const dir = mkdtempSync(join(tmpdir(), 'setar-bench-locoop-'));
try {
  const data = await writeDemoData(join(dir, 'data'), { val: 1, test: 1, digits: 1, noise: 1, train: 16 });
  const epochs = Number(process.env.EPOCHS ?? 20);
  console.log(`setar LoCoOp training benchmark — demo CLIP, 5 classes × 16 shots, batch 32, n_ctx 4, ${epochs} epochs, ${defaultThreads()} threads`);
  const times: number[] = [];
  const t0 = performance.now();
  const r = await runFinetune(resolveFinetuneConfig(null, {
    model: demoModelDir(), method: 'locoop', id: `ID=${data.train}`, ctxInit: 'a photo of a', shots: 16, numTrainEpochs: epochs, locoopTopK: 2, out: join(dir, 'out'),
  }), { onStep: () => times.push(performance.now()) });
  const total = (performance.now() - t0) / 1000;
  const steady = (times.length - 1) / ((times.at(-1)! - times[0]!) / 1000);
  console.log(`${r.steps} steps; ${steady.toFixed(1)} steps/s (${(steady * 32).toFixed(0)} images/s) after the first step; whole run (loading, decoding, session compile, ${r.steps} steps, writing the context) ${total.toFixed(1)} s`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
