// `npm run bench:precision:demo`: what each bundle precision does to detection, on the demo
// benchmark (src/demo/run-demo.ts: the shipped demo CLIP, ID = five Fashion-MNIST classes,
// OOD = the other five clothes, MNIST digits, noise textures). Three bundles of the demo model
// (`setar bundle --precision fp32|fp16|int8`, default scorer gl_mcm_score, threshold at TPR 0.95
// of the 100 ID validation images, re-chosen per precision), each scoring the 500 ID and 1,100
// OOD test images. Prints, per precision and scorer: FPR95 / AUROC averaged over the three OOD
// sets and their change from fp32 (points), ID accuracy, and the share of test images whose ID/OOD
// verdict differs from the fp32 bundle's (each bundle with its own threshold).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createBundle, Detector, type Verdict } from '../src/bundle/bundle.js';
import { imageFolder, imageTree } from '../src/data/datasets.js';
import { loadImageBatches } from '../src/data/loader.js';
import { demoModelDir, writeDemoData } from '../src/demo/run-demo.js';
import { oodMetrics } from '../src/ood/metrics.js';
import { PRECISIONS, type Precision } from '../src/onnx/precision.js';

const { values } = parseArgs({ options: { out: { type: 'string' } } });
const dir = values.out ?? mkdtempSync(join(tmpdir(), 'setar-bench-precision-demo-'));
process.env.SETAR_CACHE_DIR = join(dir, 'cache');
const SCORERS = ['gl_mcm_score', 'mcm_score'] as const;
const TPR = 0.95;

async function score(d: Detector, files: readonly string[]): Promise<Verdict[]> {
  const out: Verdict[] = [];
  for await (const b of loadImageBatches(files, { batchSize: 32, preprocess: { size: 28 } })) out.push(...(await d.scoreBatch(b.pixelValues)));
  return out;
}

/** The bundle rule: the ceil(TPR · n)-th smallest ID validation score. */
function thresholdOf(scores: number[]): number {
  const s = [...scores].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(TPR * s.length) - 1)]!;
}

try {
  const data = await writeDemoData(join(dir, 'data'));
  const val = imageFolder('ID_val', data.val).files;
  const idTest = imageFolder('ID_test', data.test);
  const oods = data.ood.map((o) => ({ name: o.name, files: imageTree(o.name, o.root).files }));
  const results = {} as Record<Precision, { val: Verdict[]; id: Verdict[]; ood: Verdict[][] }>;
  for (const precision of PRECISIONS) {
    const out = join(dir, `bundle-${precision}`);
    const m = await createBundle({ model: demoModelDir(), id: { kind: 'folder', name: 'ID_fashion', root: data.val }, out, precision, tpr: TPR });
    const d = await Detector.load(out);
    try {
      results[precision] = { val: await score(d, val), id: await score(d, idTest.files), ood: await Promise.all(oods.map((o) => score(d, o.files))) };
    } finally {
      await d.release();
    }
    if (thresholdOf(results[precision].val.map((v) => v.scores[m.scorer]!)) !== m.threshold) throw new Error(`${precision}: bundle threshold ${m.threshold} is not the validation rule's`);
  }

  const truth = Array.from(idTest.labels!, (l) => idTest.classes![l]!);
  console.log(`setar bundle precisions on the demo benchmark — demo CLIP (vanilla), ${idTest.files.length} ID and ${oods.reduce((a, o) => a + o.files.length, 0)} OOD test images, threshold at TPR ${TPR} of ${val.length} ID validation images per precision`);
  const row = (cells: string[]) => console.log(cells.map((c, i) => (i < 2 ? c.padEnd(i === 0 ? 9 : 13) : c.padStart(9))).join(' '));
  console.log('');
  row(['precision', 'scorer', 'FPR95', 'AUROC', 'dFPR95', 'dAUROC', 'ID acc', 'flips %']);
  const avg = (p: Precision, s: string) => {
    const ms = results[p].ood.map((o) => oodMetrics(results[p].id.map((v) => v.scores[s]!), o.map((v) => v.scores[s]!)));
    return { FPR: ms.reduce((a, x) => a + x.FPR, 0) / ms.length, AUROC: ms.reduce((a, x) => a + x.AUROC, 0) / ms.length };
  };
  for (const s of SCORERS) {
    const ref = avg('fp32', s);
    const refThreshold = thresholdOf(results.fp32.val.map((v) => v.scores[s]!));
    const refTest = [...results.fp32.id, ...results.fp32.ood.flat()];
    for (const p of PRECISIONS) {
      const a = avg(p, s);
      const threshold = thresholdOf(results[p].val.map((v) => v.scores[s]!));
      const test = [...results[p].id, ...results[p].ood.flat()];
      const flips = test.filter((v, i) => (v.scores[s]! > threshold) !== (refTest[i]!.scores[s]! > refThreshold)).length;
      const acc = (100 * results[p].id.filter((v, i) => v.label === truth[i]).length) / truth.length;
      row([p, s, a.FPR.toFixed(2), a.AUROC.toFixed(2), (a.FPR - ref.FPR).toFixed(2), (a.AUROC - ref.AUROC).toFixed(2), acc.toFixed(2), ((100 * flips) / test.length).toFixed(2)]);
    }
  }
} finally {
  if (!values.out) rmSync(dir, { recursive: true, force: true });
}
