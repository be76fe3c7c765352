import type { Command } from 'commander';
import { resolveEvalConfig, type EvalFlags } from '../eval/config.js';
import { runEval } from '../eval/run-eval.js';
import { fprColumn } from '../ood/metrics.js';
import { CLIP_CKPT_HELP, DEVICE_HELP, deviceFlag, LOCOOP_CKPT_HELP, N_CTX_HELP, TEMPLATE_HELP, configModelName, finiteNumber, positiveInt, PRUNE_MODE_HELP, pruneModeOf, readJson, readStringList, resolveModelFlag, REVISION_HELP, UsageError } from './inputs.js';
import { ProgressBar } from './progress.js';

interface EvalCliFlags {
  config?: string;
  model?: string;
  revision?: string;
  clipCkpt?: string;
  locoopCkpt?: string;
  nCtx?: number;
  id?: string;
  benchmark?: string;
  dataRoot?: string;
  labels?: string;
  ood?: string[];
  scorers?: string;
  temperature?: number;
  recallLevel?: number;
  split?: string;
  loraSettings?: string;
  loraSvdInitType?: string;
  pruneMode?: string;
  batchSize?: number;
  seed?: number;
  template?: string;
  strict?: boolean;
  maxPixels?: number;
  out?: string;
  workers?: number;
  threads?: number;
  device?: string;
}


/** `setar eval`: the OOD benchmark protocol with the reference's output files. */
export function registerEval(program: Command): void {
  program
    .command('eval')
    .description('OOD evaluation: scores, FPR95/AUROC/AUPR, ID accuracy and an HTML report, written as the reference names them')
    .option('--config <file>', 'an official-style JSON config (data_root, id_dataset, split, scorers, lora_settings, …); flags override it')
    .option('--model <dir>', 'CLIP or Swin V2 checkpoint directory (Hugging Face layout), or a hub id ORG/NAME (required unless the config gives model_name)')
    .option('--revision <rev>', REVISION_HELP)
    .option('--clip-ckpt <file>', `${CLIP_CKPT_HELP} (config key clip_ckpt)`)
    .option('--locoop-ckpt <file>', LOCOOP_CKPT_HELP)
    .option('--n-ctx <n>', N_CTX_HELP, positiveInt('--n-ctx'))
    .option('--id <name=dir>', 'ID data: DIR holds one sub-folder per class, sorted names give the labels (required, or --benchmark)')
    .option('--benchmark <name>', 'built-in ID benchmark: imagenet1k | voc | coco (with --data-root)')
    .option('--data-root <dir>', 'benchmark root: DATA_ROOT/ID_ImageNet1K/{val,test}, DATA_ROOT/OOD_iNaturalist/test, …')
    .option('--labels <file>', 'class names (JSON array or one per line) (default: the class folder names)')
    .option('--ood <name=dir>', 'an OOD set: every image under DIR (repeat the flag for several)', (v: string, acc: string[] = []) => [...acc, v])
    .option('--scorers <list>', 'comma-separated: mcm_score, l_mcm_score, gl_mcm_score, energy_score, entropy_score, var_score (default mcm_score)')
    .option('--temperature <t>', 'softmax temperature of the scores (default: 100 for CLIP, 1 for Swin V2)', finiteNumber('--temperature'))
    .option('--recall-level <r>', 'ID recall at which FPR and the cutoff are taken (default 0.95)', finiteNumber('--recall-level'))
    .option('--split <name>', 'split name used in file names (and the benchmark folder) (default test)')
    .option('--lora-settings <file>', 'low-rank settings: [["visual","W_up",11,0.15], …] or a config_best.json')
    .option('--lora-svd-init-type <mode>', PRUNE_MODE_HELP)
    .option('--prune-mode <mode>', 'alias of --lora-svd-init-type')
    .option('--batch-size <n>', 'images per forward pass (default 32)', positiveInt('--batch-size'))
    .option('--seed <n>', "seed of the 'random' prune mode (default 5)", (v) => Number(v))
    .option('--template <text>', TEMPLATE_HELP)
    .option('--strict', 'fail on the first unreadable image instead of skipping it')
    .option('--max-pixels <n>', 'largest image in pixels (width x height), read from its header before decoding; larger ones are skipped and listed (default 40000000)', positiveInt('--max-pixels'))
    .option('--workers <n>', 'image decoding threads (default: one per core)', positiveInt('--workers'))
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)', positiveInt('--threads'))
    .option('--device <name>', `${DEVICE_HELP}; wins over the config's "device" ("cuda" in the official configs)`, deviceFlag)
    .option('--out <dir>', 'output folder (required unless the config gives log_directory)')
    .action(async (f: EvalCliFlags) => {
      const json = f.config ? await readJson(f.config, 'config file') : null;
      if (json !== null && (typeof json !== 'object' || Array.isArray(json))) throw new UsageError(`config file '${f.config}' must hold a JSON object`);
      const flags: EvalFlags = {
        model: await resolveModelFlag(f.model ?? configModelName(json), f.revision), clipCkpt: f.clipCkpt, locoopCkpt: f.locoopCkpt, nCtx: f.nCtx, id: f.id, benchmark: f.benchmark, dataRoot: f.dataRoot, ood: f.ood,
        labels: f.labels ? await readStringList(f.labels, 'labels file', { allowEmptyEntries: false }) : undefined,
        scorers: f.scorers?.split(',').map((s) => s.trim()).filter(Boolean),
        temperature: f.temperature, recallLevel: f.recallLevel, split: f.split,
        loraSettings: f.loraSettings ? await readJson(f.loraSettings, 'lora settings file') : undefined,
        loraSvdInitType: pruneModeOf(f), batchSize: f.batchSize, seed: f.seed, template: f.template, strict: f.strict, maxPixels: f.maxPixels, out: f.out,
        workers: f.workers, threads: f.threads, device: f.device,
      };
      const config = resolveEvalConfig(json as Record<string, unknown> | null, flags, f.config ?? 'config');
      const bar = new ProgressBar();
      const skips: string[] = [];
      const result = await runEval(config, {
        onDatasetStart: (name, total) => bar.begin(name, total),
        onProgress: (p) => bar.update(p.done),
        onDatasetEnd: (name, skipped, file) => {
          bar.end();
          if (!skipped) return;
          // said after the bar (and again in the summary): a bar that reaches N/N hides them
          const line = `${name}: skipped ${skipped} unreadable image${skipped === 1 ? '' : 's'}, listed in ${file}`;
          skips.push(line);
          process.stderr.write(`${line}\n`);
        },
        log: (line) => {
          if (!process.stderr.isTTY) process.stderr.write(`${line}\n`);
        },
        notice: (line) => {
          if (process.stderr.isTTY) process.stderr.write(`${line}\n`);
        },
      });
      for (const [scorer, rows] of Object.entries(result.metrics)) {
        process.stdout.write(`\n${scorer} (${config.split})\n${'OOD dataset'.padEnd(20)} ${fprColumn(config.recall_level).padStart(6)}   AUROC    AUPR\n`);
        for (const r of rows) process.stdout.write(`${r.name.padEnd(20)} ${r.FPR.toFixed(2).padStart(6)}  ${r.AUROC.toFixed(2).padStart(6)}  ${r.AUPR.toFixed(2).padStart(6)}\n`);
      }
      process.stdout.write(`\n${result.id.dataset.name} top-1 accuracy: ${result.id.accuracy!.toFixed(2)}%\n`);
      for (const s of skips) process.stdout.write(`${s}\n`);
      process.stdout.write(`wrote ${result.files.length} files to ${config.out}\n`);
    });
}
