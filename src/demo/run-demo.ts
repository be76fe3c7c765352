import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import sharp from 'sharp';
import { resolveEvalConfig } from '../eval/config.js';
import { runEval } from '../eval/run-eval.js';
import { packageRoot } from '../paths.js';
import { SeededRng } from '../rng.js';
import { resolveSearchConfig } from '../search/config.js';
import { runSearch } from '../search/greedy.js';
import { resolveFinetuneConfig } from '../train/config.js';
import { runFinetune } from '../train/finetune.js';
import { DIGIT_CLASSES, FASHION_CLASSES, splitOf, type Gray28 } from './datasets.js';

/**
 * The demo benchmark on the shipped demo CLIP (trained on all 10 clothes and all 10 digits):
 * - ID: five Fashion-MNIST classes;
 * - near-OOD: the other five clothes — classes the model was trained on, but not ID labels
 *   (shirt and coat look like T-shirt and pullover, ankle boot like sandal);
 * - far-OOD: MNIST digits (seen in training, another domain) and synthetic noise textures
 *   (never seen).
 * Validation (search, fine-tuning) and test images come from index ranges disjoint from the
 * training split.
 */
export const DEMO_ID_CLASSES = ['T-shirt', 'trouser', 'pullover', 'dress', 'sandal'] as const;
const NEAR_CLASSES = ['coat', 'shirt', 'sneaker', 'bag', 'ankle boot'] as const;

/** The shipped demo model. */
export function demoModelDir(): string {
  return join(packageRoot(), 'models', 'setar-demo-clip');
}

async function writeGray(path: string, img: Gray28): Promise<void> {
  if (existsSync(path)) return; // re-runs reuse what an earlier run wrote
  mkdirSync(join(path, '..'), { recursive: true });
  await sharp(Buffer.from(img), { raw: { width: 28, height: 28, channels: 1 } }).png().toFile(path);
}

/**
 * Writes the demo's image folders (PNG) under `root`; returns their paths. `train` images per ID
 * class come from the training split (LoCoOp draws its K shots from them).
 */
export async function writeDemoData(root: string, perClass: { val: number; test: number; digits: number; noise: number; train?: number } = { val: 20, test: 100, digits: 30, noise: 300 }): Promise<{ train: string; val: string; test: string; ood: { name: string; root: string }[] }> {
  const fashionTrain = splitOf('fashion', 'train');
  const fashionVal = splitOf('fashion', 'val');
  const fashionTest = splitOf('fashion', 'test');
  const digitTest = splitOf('digits', 'test');
  const idx = (name: string) => FASHION_CLASSES.indexOf(name as (typeof FASHION_CLASSES)[number]);
  for (const c of DEMO_ID_CLASSES) {
    for (const [i, img] of fashionTrain[idx(c)]!.slice(0, perClass.train ?? 50).entries()) await writeGray(join(root, 'ID_train', c, `${i}.png`), img);
    for (const [i, img] of fashionVal[idx(c)]!.slice(0, perClass.val).entries()) await writeGray(join(root, 'ID_val', c, `${i}.png`), img);
    for (const [i, img] of fashionTest[idx(c)]!.slice(0, perClass.test).entries()) await writeGray(join(root, 'ID_test', c, `${i}.png`), img);
  }
  for (const c of NEAR_CLASSES) for (const [i, img] of fashionTest[idx(c)]!.slice(0, perClass.test).entries()) await writeGray(join(root, 'OOD_clothes', c.replace(' ', '_'), `${i}.png`), img);
  for (let d = 0; d < DIGIT_CLASSES.length; d++) for (const [i, img] of digitTest[d]!.slice(0, perClass.digits).entries()) await writeGray(join(root, 'OOD_digits', String(d), `${i}.png`), img);
  // far-OOD textures: smooth random blobs and stripes, seeded
  const rng = new SeededRng(12345);
  for (let i = 0; i < perClass.noise; i++) {
    const img = new Uint8Array(784);
    const fx = rng.next() * 0.8;
    const fy = rng.next() * 0.8;
    const ph = rng.next() * 6.28;
    const amp = 60 + rng.next() * 120;
    for (let y = 0; y < 28; y++) for (let x = 0; x < 28; x++) img[y * 28 + x] = Math.max(0, Math.min(255, Math.round(amp * (1 + Math.sin(fx * x + fy * y + ph)) / 2 + rng.next() * 40)));
    await writeGray(join(root, 'OOD_noise', `${i}.png`), img);
  }
  return {
    train: join(root, 'ID_train'),
    val: join(root, 'ID_val'),
    test: join(root, 'ID_test'),
    ood: ['OOD_clothes', 'OOD_digits', 'OOD_noise'].map((n) => ({ name: n, root: join(root, n) })),
  };
}

/** One row of the demo table. */
export interface DemoRow {
  readonly method: string;
  readonly FPR95: number;
  readonly AUROC: number;
  readonly AUPR: number;
  readonly acc: number;
}

function avgRow(dir: string, scorer: string): { FPR95: number; AUROC: number; AUPR: number } {
  const lines = readFileSync(join(dir, `metrics_${scorer}_test.csv`), 'utf8').trim().split('\n');
  const avg = lines.find((l) => l.startsWith('Avg,'))!.split(',');
  return { FPR95: Number(avg[1]), AUROC: Number(avg[2]), AUPR: Number(avg[3]) };
}

function accOf(dir: string): number {
  return Object.values(JSON.parse(readFileSync(join(dir, 'metrics_classify_test.json'), 'utf8')) as Record<string, number>)[0]!;
}

/**
 * LoCoOp on the demo: SPEC §9's recipe (16 shots per class, 50 epochs with Dassl's warm-up epoch
 * first, batch 32, SGD lr 0.002, λ 0.25), the context from "a photo of a" (4 vectors: the demo
 * CLIP has only 16 text positions), K 2 of the 5 classes as the demo's searches use.
 */
export const DEMO_LOCOOP = { shots: 16, ctxInit: 'a photo of a', epochs: 50 } as const;

/**
 * The whole method on the demo model: vanilla MCM and GL-MCM, the SeTAR search (ending with the
 * evaluation of its settings), a short SeTAR+FT, LoCoOp (a prompt context trained K-shot on the
 * training split) and SeTAR searched on top of the LoCoOp model. Every stage writes to its own
 * folder under `out` and is skipped when its results exist, so an interrupted demo resumes (the
 * search and the trainers also resume mid-way); each logs its duration.
 */
export async function runDemo(out: string, log: (line: string) => void = () => undefined): Promise<{ rows: DemoRow[]; report: string }> {
  out = resolve(out);
  // the SVD cache too stays inside the demo's folder: the demo writes nowhere else
  process.env.SETAR_CACHE_DIR = join(out, 'cache');
  const model = demoModelDir();
  log(`writing the demo images under ${join(out, 'data')}`);
  const data = await writeDemoData(join(out, 'data'));
  const test = { id: `ID_fashion=${data.test}`, ood: data.ood.map((o) => `${o.name}=${o.root}`) };
  const scorers = ['mcm_score', 'gl_mcm_score'];

  /** Runs a stage unless its folder already holds its test metrics. */
  const stage = async (dir: string, title: string, run: () => Promise<unknown>) => {
    if (existsSync(join(dir, 'metrics_gl_mcm_score_test.csv'))) return;
    log(title);
    const t0 = performance.now();
    await run();
    log(`(${title.split(' ')[0]} took ${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  };
  const vanilla = join(out, 'vanilla');
  await stage(vanilla, '1/5 vanilla MCM and GL-MCM on the test sets', () => runEval(resolveEvalConfig(null, { model, id: test.id, ood: test.ood, scorers, out: vanilla }), { log }));
  const search = join(out, 'search');
  await stage(search, '2/5 SeTAR search on the validation images, then its settings on the test sets', () => runSearch(resolveSearchConfig(null, {
    model, id: `ID_fashion=${data.val}`, locoopTopK: 2, locoopLambda: 0.05, testId: test.id, testOod: test.ood, scorers, out: search,
  }), { log }));
  const finetune = join(out, 'finetune');
  await stage(finetune, '3/5 SeTAR+FT: a short fine-tuning of the searched settings, then the test sets', () => {
    const best = JSON.parse(readFileSync(join(search, 'config_best.json'), 'utf8')) as { lora_settings: unknown };
    return runFinetune(resolveFinetuneConfig(null, {
      model, id: `ID_fashion=${data.val}`, loraSettings: best.lora_settings, locoopTopK: 2, locoopLambda: 0.05, numTrainEpochs: 5, batchSize: 25,
      learningRate: 0.01, testId: test.id, testOod: test.ood, scorers, out: finetune,
    }), { log });
  });
  const locoop = join(out, 'locoop');
  await stage(locoop, `4/5 LoCoOp: a prompt context trained ${DEMO_LOCOOP.shots}-shot on the training split (${DEMO_LOCOOP.epochs} epochs), then the test sets`, () => runFinetune(resolveFinetuneConfig(null, {
    model, method: 'locoop', id: `ID_fashion=${data.train}`, ctxInit: DEMO_LOCOOP.ctxInit, shots: DEMO_LOCOOP.shots, numTrainEpochs: DEMO_LOCOOP.epochs,
    locoopTopK: 2, testId: test.id, testOod: test.ood, scorers, out: locoop,
  }), { log }));
  const locoopCkpt = join(locoop, 'prompt_learner', `model.pth.tar-${DEMO_LOCOOP.epochs}`);
  const searchLocoop = join(out, 'search-locoop');
  await stage(searchLocoop, '5/5 SeTAR search on the LoCoOp model (context fixed), then its settings on the test sets', () => runSearch(resolveSearchConfig(null, {
    model, locoopCkpt, id: `ID_fashion=${data.val}`, locoopTopK: 2, locoopLambda: 0.05, testId: test.id, testOod: test.ood, scorers, out: searchLocoop,
  }), { log }));
  const rows: DemoRow[] = [];
  for (const [label, dir] of [['', vanilla], ['SeTAR ', search], ['SeTAR+FT ', finetune], ['LoCoOp ', locoop], ['SeTAR on LoCoOp ', searchLocoop]] as const) {
    for (const [name, s] of [['MCM', 'mcm_score'], ['GL-MCM', 'gl_mcm_score']] as const) {
      rows.push({ method: label ? `${label}(${name})` : name, ...avgRow(dir, s), acc: accOf(dir) });
    }
  }
  return { rows, report: join(search, 'report_test.html') };
}

/** The demo table as text. */
export function formatDemoTable(rows: readonly DemoRow[]): string {
  const head = `${'method'.padEnd(25)} ${'FPR95'.padStart(7)} ${'AUROC'.padStart(7)} ${'AUPR'.padStart(7)} ${'ID acc'.padStart(7)}`;
  return [head, ...rows.map((r) => `${r.method.padEnd(25)} ${r.FPR95.toFixed(2).padStart(7)} ${r.AUROC.toFixed(2).padStart(7)} ${r.AUPR.toFixed(2).padStart(7)} ${r.acc.toFixed(2).padStart(7)}`)].join('\n');
}
