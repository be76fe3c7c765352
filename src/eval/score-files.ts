import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parse } from 'csv-parse/sync';
import { benchmarkTable, oodMetrics, type BenchmarkRow } from '../ood/metrics.js';
import { SCORER_NAMES } from '../ood/scores.js';

/** A score file (`scores_{dataset}_{split}.csv`, ours or the reference's), by scorer column. */
export interface ScoreFile {
  readonly file: string;
  /** `{name}` of `scores_{name}_{split}.csv`, else the file's base name without `.csv`. */
  readonly dataset: string;
  /** Scorer columns present (columns that are not scorers, such as `image`, are ignored). */
  readonly columns: Readonly<Record<string, Float64Array>>;
}

/** A problem with a score file; the message names the file, and the row and column where it applies. */
export class ScoreFileError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ScoreFileError';
  }
}

/** The dataset name a score file stands for. */
export function datasetOfScoreFile(file: string): string {
  const b = basename(file).replace(/\.csv$/i, '');
  const m = /^scores_(.+)_([^_]+)$/.exec(b);
  return m ? m[1]! : b;
}

/** Reads a score CSV; every scorer column must hold finite numbers. */
export function readScoreFile(file: string): ScoreFile {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ScoreFileError(`cannot read score file '${file}': ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
  let rows: string[][];
  try {
    rows = parse(text, { relax_column_count: false, skip_empty_lines: true }) as string[][];
  } catch (e) {
    throw new ScoreFileError(`score file '${file}' is not valid CSV: ${(e as Error).message}`);
  }
  if (rows.length < 2) throw new ScoreFileError(`score file '${file}' has no rows of scores`);
  const header = rows[0]!;
  const columns: Record<string, Float64Array> = {};
  header.forEach((h, c) => {
    if (!SCORER_NAMES.includes(h as never)) return;
    const v = new Float64Array(rows.length - 1);
    for (let r = 1; r < rows.length; r++) {
      const x = Number(rows[r]![c]);
      if (rows[r]![c]!.trim() === '' || !Number.isFinite(x)) throw new ScoreFileError(`score file '${file}': row ${r + 1}, column "${h}" is ${JSON.stringify(rows[r]![c])}, expected a finite number`);
      v[r - 1] = x;
    }
    columns[h] = v;
  });
  return { file, dataset: datasetOfScoreFile(file), columns };
}

/** One scorer's metric table, as `setar metrics --json` prints it. */
export interface MetricsTable {
  readonly scorer: string;
  readonly recall_level: number;
  readonly rows: readonly { dataset: string; FPR95: number; AUROC: number; AUPR: number; cutoff?: number }[];
}

/**
 * Recomputes the metric table(s) from score files: one row per OOD file plus `Avg`. Without a
 * scorer, every scorer column present in all files.
 */
export function metricsFromScoreFiles(id: ScoreFile, ood: readonly ScoreFile[], options: { scorer?: string; recallLevel?: number } = {}): MetricsTable[] {
  const recall = options.recallLevel ?? 0.95;
  const all = [id, ...ood];
  let scorers: string[];
  if (options.scorer) {
    if (!SCORER_NAMES.includes(options.scorer as never)) throw new ScoreFileError(`unknown scorer "${options.scorer}"; valid scorers: ${SCORER_NAMES.join(', ')}`);
    const missing = all.filter((f) => !(options.scorer! in f.columns));
    if (missing.length) throw new ScoreFileError(`score file(s) ${missing.map((f) => `'${f.file}'`).join(', ')} have no "${options.scorer}" column`);
    scorers = [options.scorer];
  } else {
    scorers = SCORER_NAMES.filter((s) => all.every((f) => s in f.columns));
    if (scorers.length === 0) throw new ScoreFileError(`no scorer column is present in every score file (scorers: ${SCORER_NAMES.join(', ')})`);
  }
  return scorers.map((s) => {
    const rows: BenchmarkRow[] = ood.map((o) => ({ name: o.dataset, ...oodMetrics(id.columns[s]!, o.columns[s]!, { recallLevel: recall }) }));
    return {
      scorer: s,
      recall_level: recall,
      rows: benchmarkTable(rows).map((r) => ({ dataset: r.name, FPR95: r.FPR, AUROC: r.AUROC, AUPR: r.AUPR, ...(r.cutoff !== undefined ? { cutoff: r.cutoff } : {}) })),
    };
  });
}
