import type { Command } from 'commander';
import { metricsFromScoreFiles, readScoreFile } from '../eval/score-files.js';
import { UsageError } from './inputs.js';

interface MetricsFlags { id: string; ood?: string[]; scorer?: string; recall: number; json?: boolean }

/** `setar metrics`: the metric table recomputed from score files (ours or the reference's). */
export function registerMetrics(program: Command): void {
  program
    .command('metrics')
    .description('recompute FPR95/AUROC/AUPR and cutoffs from score CSV files')
    .requiredOption('--id <file>', 'ID scores: scores_{dataset}_{split}.csv')
    .option('--ood <file>', 'OOD scores (repeat the flag for several)', (v: string, acc: string[] = []) => [...acc, v])
    .option('--scorer <name>', 'the score column to use (default: every scorer column present in all files)')
    .option('--recall <r>', 'recall level of the FPR', (v) => Number(v), 0.95)
    .option('--json', 'print JSON: one object for --scorer, else an array with one object per scorer')
    .action((f: MetricsFlags) => {
      if (!f.ood?.length) throw new UsageError('give at least one --ood FILE');
      if (!(f.recall > 0 && f.recall < 1)) throw new UsageError(`--recall must be in (0, 1), got ${f.recall}`);
      const tables = metricsFromScoreFiles(readScoreFile(f.id), f.ood.map(readScoreFile), { scorer: f.scorer, recallLevel: f.recall });
      if (f.json) {
        process.stdout.write(JSON.stringify(f.scorer ? tables[0] : tables) + '\n');
        return;
      }
      for (const t of tables) {
        process.stdout.write(`${t.scorer} (recall ${t.recall_level})\n${'OOD dataset'.padEnd(20)}  FPR95   AUROC    AUPR  cutoff\n`);
        for (const r of t.rows) {
          process.stdout.write(`${r.dataset.padEnd(20)} ${r.FPR95.toFixed(2).padStart(6)}  ${r.AUROC.toFixed(2).padStart(6)}  ${r.AUPR.toFixed(2).padStart(6)}  ${r.cutoff === undefined ? '' : String(r.cutoff)}\n`);
        }
      }
    });
}
