import type { Command } from 'commander';
import { formatDemoTable, runDemo } from '../demo/run-demo.js';
import { trainDemoClip } from '../demo/train-clip.js';
import { finiteNumber, positiveInt } from './inputs.js';

/** `setar demo` and `setar train-clip`: the built-in demo model and the whole method on it. */
export function registerDemo(program: Command): void {
  program
    .command('demo')
    .description('the whole method on the shipped demo CLIP: vanilla MCM/GL-MCM, SeTAR search, SeTAR+FT, LoCoOp and SeTAR on LoCoOp, one table (resumable)')
    .option('--out <dir>', 'output folder (nothing is written elsewhere)', 'demo-out')
    .action(async (f: { out: string }) => {
      const t0 = performance.now();
      const { rows, report } = await runDemo(f.out, (line) => process.stderr.write(`${line}\n`));
      process.stdout.write(`\n${formatDemoTable(rows)}\n\nAverages over OOD_clothes, OOD_digits, OOD_noise (percent). HTML report: ${report}\n(${((performance.now() - t0) / 1000).toFixed(0)} s)\n`);
    });
  program
    .command('train-clip')
    .description("train the demo CLIP from scratch on MNIST digits and Fashion-MNIST clothes (the recipe of models/setar-demo-clip)")
    .requiredOption('--out <dir>', 'output model folder (HF layout)')
    // the defaults are the recipe of models/setar-demo-clip (its TRAINING.md)
    .option('--steps <n>', 'optimiser steps', positiveInt('--steps'), 1200)
    .option('--batch-size <n>', 'image/caption pairs per step', positiveInt('--batch-size'), 128)
    .option('--learning-rate <lr>', 'AdamW peak learning rate (cosine schedule)', finiteNumber('--learning-rate'), 1.5e-3)
    .option('--seed <n>', 'seed of initialisation and sampling', finiteNumber('--seed'), 0)
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)', positiveInt('--threads'))
    .action(async (f: { out: string; steps: number; batchSize: number; learningRate: number; seed: number; threads?: number }) => {
      const r = await trainDemoClip({ out: f.out, steps: f.steps, batchSize: f.batchSize, learningRate: f.learningRate, seed: f.seed, threads: f.threads, log: (l) => process.stderr.write(`${l}\n`) });
      process.stdout.write(`final contrastive loss ${r.finalLoss.toFixed(4)}; model written to ${f.out}\n`);
    });
}
