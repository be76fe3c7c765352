import { appendFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { benchmarkPreset, imageTree, loadIdDataset, type ImageDataset } from '../data/datasets.js';
import { loadImageBatches, type SkippedImage } from '../data/loader.js';
import { openOutputFolder, writeFileAtomic } from '../io/atomic.js';
import { applyLoraSettings } from '../lowrank/apply.js';
import type { Classifier, FamilyModel } from '../models/family.js';
import { loadModel } from '../models/registry.js';
import { oodMetrics, benchmarkTable, fprColumn, type BenchmarkRow } from '../ood/metrics.js';
import { getScorer, computeScores } from '../ood/scores.js';
import { writeEvalReport } from '../report/html-report.js';
import type { EvalConfig } from './config.js';
import { prepareOutDir } from '../io/out-dir.js';
import { locoopLoadOptions } from '../config/run-config.js';
import { openDevice, recordedConfig } from '../config/device.js';

/** Progress of one dataset's pass, for a progress bar. */
export interface EvalProgress {
  readonly dataset: string;
  readonly done: number;
  readonly total: number;
}

/** Hooks of {@link runEval}. */
export interface EvalHooks {
  readonly onDatasetStart?: (dataset: string, total: number) => void;
  readonly onProgress?: (p: EvalProgress) => void;
  /** A dataset's pass ended; `skipped` images could not be read and are listed in `skippedFile` (under the output folder). */
  readonly onDatasetEnd?: (dataset: string, skipped: number, skippedFile: string | null) => void;
  readonly log?: (line: string) => void;
  /** A line the user should see however the progress is shown (`--device auto`'s choice). */
  readonly notice?: (line: string) => void;
}

/** Scores of one dataset: per scorer, one value per image that decoded (dataset order). */
export interface DatasetScores {
  readonly dataset: ImageDataset;
  /** Positions in `dataset.files` of the scored images. */
  readonly indices: Int32Array;
  readonly scores: Readonly<Record<string, Float64Array>>;
  readonly skipped: readonly SkippedImage[];
  /** Top-1 accuracy in % (ID only). */
  readonly accuracy?: number;
}

/** What {@link runEval} computed and wrote. */
export interface EvalResult {
  readonly id: DatasetScores;
  readonly ood: readonly DatasetScores[];
  /** Per scorer: rows per OOD set (in order) plus `Avg`. */
  readonly metrics: Readonly<Record<string, BenchmarkRow[]>>;
  readonly files: readonly string[];
}

/** Decoder messages can span lines; the skipped list keeps one line per file. */
function oneLine(s: string): string {
  return s.split(/\s*\n\s*/).filter((x, i, a) => x && a.indexOf(x) === i).join('; ');
}

function fmt2(x: number): string {
  return x.toFixed(2);
}

/**
 * The paper's evaluation protocol (SPEC §3–4): zero-shot CLIP on the ID data and each OOD set,
 * every configured scorer, AUROC / AUPR / FPR at the recall level, ID accuracy; writes the
 * reference's files (`scores_*`, `metrics_*`, `cutoffs_*`, `metrics_classify_*`), the resolved
 * config, a log and an HTML report into `config.out`, each atomically.
 */
export async function runEval(config: EvalConfig, hooks: EvalHooks = {}): Promise<EvalResult> {
  prepareOutDir(config.out);
  const orphans = openOutputFolder(config.out);
  const logFile = join(config.out, 'eval.log');
  const files: string[] = [logFile];
  const log = (line: string) => {
    appendFileSync(logFile, `${new Date().toISOString()} ${line}\n`);
    hooks.log?.(line);
  };
  for (const f of orphans) log(`removed ${f}, a temporary file left by an interrupted run`);

  // Datasets first: a wrong path fails before the model loads.
  const { dataset: id, labels } = loadIdDataset(config.id, config.split, config.labels);
  const oodSources = config.ood.length || config.id.kind === 'folder' ? config.ood : benchmarkPreset(config.id.benchmark, config.id.dataRoot, config.split).ood;
  const oods = oodSources.map((o) => imageTree(o.name, o.root));
  log(`ID ${id.name}: ${id.files.length} images, ${labels.length} classes; OOD: ${oods.map((o) => `${o.name} (${o.files.length})`).join(', ')}`);

  const { model, classifier } = await openClassifier(config, labels, log, hooks.notice);
  const write = (name: string, data: string) => {
    const p = join(config.out, name);
    writeFileAtomic(p, data);
    files.push(p);
  };
  try {
    const needsLocal = config.scorers.some((s) => getScorer(s).needs.local);

    const scoreDataset = async (ds: ImageDataset): Promise<DatasetScores> => {
      const scores: Record<string, number[]> = Object.fromEntries(config.scorers.map((s) => [s, []]));
      const indices: number[] = [];
      const skipped: SkippedImage[] = [];
      let correct = 0;
      for (const f of ds.skippedFolders ?? []) log(`${ds.name}: not walking ${f.path}: ${f.reason}`);
      hooks.onDatasetStart?.(ds.name, ds.files.length);
      for await (const batch of loadImageBatches(ds.files, {
        batchSize: config.batch_size,
        preprocess: model.preprocess,
        workers: config.workers,
        strict: config.strict,
        maxPixels: config.max_pixels,
        onSkip: (s) => {
          skipped.push(s);
          log(`skipped ${s.file}: ${s.reason}`);
        },
        onProgress: (done, total) => hooks.onProgress?.({ dataset: ds.name, done, total }),
      })) {
        const { global, local } = await classifier.logits(batch.pixelValues, needsLocal);
        for (const s of config.scorers) scores[s]!.push(...computeScores(s, { global, local }, config.temperature));
        indices.push(...batch.indices);
        if (ds.labels) {
          const c = classifier.classes;
          batch.indices.forEach((idx, r) => {
            let arg = 0;
            for (let j = 1; j < c; j++) if (global.data[r * c + j]! > global.data[r * c + arg]!) arg = j;
            if (arg === ds.labels![idx]) correct++;
          });
        }
      }
      const skippedFile = `skipped_${ds.name}_${config.split}.txt`;
      // folders not walked (symlink cycles and aliases) first, each as `path/`, then the unreadable images
      const folders = (ds.skippedFolders ?? []).map((f) => `${relative(ds.root, f.path).split(sep).join('/')}/\t${f.reason}\n`);
      if (skipped.length || folders.length) write(skippedFile, folders.join('') + skipped.map((s) => `${ds.relPaths[s.index]}\t${oneLine(s.reason)}\n`).join(''));
      hooks.onDatasetEnd?.(ds.name, skipped.length, skipped.length || folders.length ? join(config.out, skippedFile) : null);
      if (indices.length === 0) throw new Error(`dataset ${ds.name}: none of its ${ds.files.length} images could be read (see ${join(config.out, skippedFile)})`);
      const result: DatasetScores = {
        dataset: ds,
        indices: Int32Array.from(indices),
        scores: Object.fromEntries(Object.entries(scores).map(([k, v]) => [k, Float64Array.from(v)])),
        skipped,
        ...(ds.labels ? { accuracy: (correct / indices.length) * 100 } : {}),
      };
      const header = ['image', ...config.scorers];
      const rows = indices.map((idx, r) => [ds.relPaths[idx]!, ...config.scorers.map((s) => String(result.scores[s]![r]))]);
      write(`scores_${ds.name}_${config.split}.csv`, stringify([header, ...rows]));
      log(`${ds.name}: scored ${indices.length} images${skipped.length ? `, skipped ${skipped.length}` : ''}`);
      return result;
    };

    const idScores = await scoreDataset(id);
    log(`${id.name} zero-shot top-1 accuracy: ${idScores.accuracy!.toFixed(2)}%`);
    write(`metrics_classify_${config.split}.json`, JSON.stringify({ [id.name]: idScores.accuracy }, null, 2) + '\n');
    const oodScores: DatasetScores[] = [];
    for (const o of oods) oodScores.push(await scoreDataset(o));

    const metrics: Record<string, BenchmarkRow[]> = {};
    for (const s of config.scorers) {
      const rows = oodScores.map((o) => ({ name: o.dataset.name, ...oodMetrics(idScores.scores[s]!, o.scores[s]!, { recallLevel: config.recall_level }) }));
      const table = benchmarkTable(rows);
      metrics[s] = table;
      write(`metrics_${s}_${config.split}.csv`, stringify([['OOD dataset', fprColumn(config.recall_level), 'AUROC', 'AUPR'], ...table.map((r) => [r.name, fmt2(r.FPR), fmt2(r.AUROC), fmt2(r.AUPR)])]));
      write(`cutoffs_${s}_${config.split}.csv`, stringify([['OOD dataset', 'Cutoff'], ...rows.map((r) => [r.name, String(r.cutoff)])]));
      for (const r of table) log(`${s} ${r.name}: ${fprColumn(config.recall_level)} ${fmt2(r.FPR)} AUROC ${fmt2(r.AUROC)} AUPR ${fmt2(r.AUPR)}`);
    }
    const resolved = { ...recordedConfig(config), id_dataset: id.name, labels: undefined, ood: oods.map((o) => ({ name: o.name, root: o.root })) };
    write('config.json', JSON.stringify(resolved, null, 2) + '\n');
    const report = join(config.out, `report_${config.split}.html`);
    writeEvalReport(report, {
      title: `setar eval — ${id.name} (${config.split})`,
      idDataset: id.name,
      split: config.split,
      accuracy: idScores.accuracy,
      recallLevel: config.recall_level,
      config: resolved as unknown as Record<string, unknown>,
      scorers: config.scorers.map((s) => ({
        scorer: s,
        idScores: idScores.scores[s]!,
        ood: oodScores.map((o, k) => ({ dataset: o.dataset.name, scores: o.scores[s]!, FPR: metrics[s]![k]!.FPR, AUROC: metrics[s]![k]!.AUROC, AUPR: metrics[s]![k]!.AUPR, cutoff: metrics[s]![k]!.cutoff! })),
      })),
      skipped: [idScores, ...oodScores].flatMap((d) => d.skipped.map((s) => ({ dataset: d.dataset.name, file: d.dataset.relPaths[s.index]!, reason: s.reason }))),
    });
    files.push(report);
    return { id: idScores, ood: oodScores, metrics, files };
  } finally {
    await classifier.release();
    await model.dispose();
  }
}

/**
 * The model (any family) with its low-rank settings applied, as a classifier over the ID classes:
 * CLIP zero-shot over prompts of `labels`, a Swin V2 classifier over its own outputs.
 */
async function openClassifier(config: EvalConfig, labels: readonly string[], log: (line: string) => void, notice?: (line: string) => void): Promise<{ model: FamilyModel; classifier: Classifier }> {
  const device = await openDevice(config, (line) => {
    log(line);
    notice?.(line);
  });
  if (device.name !== 'cpu') log(`device: ${device.name} (${device.executionProviders.join(', ')})`);
  const model = await loadModel(config.model, { threads: config.threads, clipCkpt: config.clip_ckpt, ...locoopLoadOptions(config), device });
  try {
    model.checkLabels(labels);
    if (model.promptContext) log(`LoCoOp context: ${model.promptContext.source} (n_ctx ${model.promptContext.n}); class prompts ${JSON.stringify(config.template)}`);
    if (config.lora_settings?.length) {
      const changed = await applyLoraSettings(model, config.lora_settings, { mode: config.lora_svd_init_type, seed: config.seed });
      log(`low-rank settings (${config.lora_svd_init_type}): ${changed.length} weights replaced`);
    }
    const classifier = await model.classifier(labels, { template: config.template });
    if (classifier.note) log(classifier.note);
    return { model, classifier };
  } catch (e) {
    await model.dispose();
    throw e;
  }
}
