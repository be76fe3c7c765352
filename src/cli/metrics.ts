import type { Command } from 'commander';
import { metricsFromScoreFiles, readScoreFile, type MetricsTable } from '../eval/score-files.js';
import { fprColumn } from '../ood/metrics.js';
import { finiteNumber, UsageError } from './inputs.js';

interface MetricsFlags { id: string; ood?: string[]; scorers?: string; scorer?: string; recallLevel?: number; recall?: number; json?: boolean }

/** A table's rows as JSON, the FPR key named by the recall level (`FPR95`, `FPR90`, …). */
function jsonOf(t: MetricsTable): object {
  const fpr = fprColumn(t.recall_level);
  return { ...t, rows: t.rows.map(({ FPR95, ...r }) => ({ dataset: r.dataset, [fpr]: FPR95, AUROC: r.AUROC, AUPR: r.AUPR, ...(r.cutoff !== undefined ? { cutoff: r.cutoff } : {}) })) };
}

/** `setar metrics`: the metric table recomputed from score files (ours or the reference's). */
export function registerMetrics(program: Command): void {
  program
    .command('metrics')
    .description('recompute FPR95/AUROC/AUPR and cutoffs from score CSV files (scores_{dataset}_{split}.csv of setar eval or the reference)')
    .requiredOption('--id <file>', 'ID scores: scores_{dataset}_{split}.csv (required)')
    .option('--ood <file>', 'OOD scores (repeat the flag for several; at least one)', (v: string, acc: string[] = []) => [...acc, v])
    .option('--scorers <list>', 'comma-separated score columns to use (default: every scorer column present in all files)')
    .option('--scorer <name>', 'alias of --scorers with one name')
    .option('--recall-level <r>', 'ID recall at which FPR and the cutoff are taken', finiteNumber('--recall-level'), 0.95)
    .option('--recall <r>', 'alias of --recall-level', finiteNumber('--recall'))
    .option('--json', 'print JSON: one object for a single scorer, else an array with one object per scorer')
    .action((f: MetricsFlags) => {
      if (!f.ood?.length) throw new UsageError('give at least one --ood FILE');
      const recallFlag = f.recall !== undefined ? '--recall' : '--recall-level';
      const recall = f.recall ?? f.recallLevel!;
      if (!(recall > 0 && recall < 1)) throw new UsageError(`${recallFlag} must be in (0, 1), got ${recall}`);
      if (f.scorer && f.scorers) throw new UsageError('give --scorers or --scorer, not both');
      const names = (f.scorers ?? f.scorer)?.split(',').map((s) => s.trim()).filter(Boolean);
      const idFile = readScoreFile(f.id);
      const oodFiles = f.ood.map(readScoreFile);
      const tables = names?.length
        ? names.flatMap((scorer) => metricsFromScoreFiles(idFile, oodFiles, { scorer, recallLevel: recall }))
        : metricsFromScoreFiles(idFile, oodFiles, { recallLevel: recall });
      if (f.json) {
        process.stdout.write(JSON.stringify(names?.length === 1 ? jsonOf(tables[0]!) : tables.map(jsonOf)) + '\n');
        return;
      }
      const fpr = fprColumn(recall);
      for (const t of tables) {
        process.stdout.write(`${t.scorer} (recall ${t.recall_level})\n${'OOD dataset'.padEnd(20)} ${fpr.padStart(6)}   AUROC    AUPR  cutoff\n`);
        for (const r of t.rows) {
          // the cutoff to 4 significant digits here; cutoffs_*.csv of setar eval keeps every digit
          process.stdout.write(`${r.dataset.padEnd(20)} ${r.FPR95.toFixed(2).padStart(6)}  ${r.AUROC.toFixed(2).padStart(6)}  ${r.AUPR.toFixed(2).padStart(6)}  ${r.cutoff === undefined ? '' : r.cutoff.toPrecision(4)}\n`);
        }
      }
    });
}
