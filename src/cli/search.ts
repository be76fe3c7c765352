import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { join } from 'node:path';
import { resolveSearchConfig, type SearchConfig, type SearchFlags } from '../search/config.js';
import { runSearch } from '../search/greedy.js';
import { CLIP_CKPT_HELP, DEVICE_HELP, deviceFlag, LOCOOP_CKPT_HELP, N_CTX_HELP, TEMPLATE_HELP, configModelName, finiteNumber, positiveInt, readJson, readStringList, PRUNE_MODE_HELP, pruneModeOf, resolveModelFlag, REVISION_HELP, UsageError } from './inputs.js';

interface SearchCliFlags {
  config?: string; model?: string; revision?: string; clipCkpt?: string; locoopCkpt?: string; nCtx?: number; id?: string; benchmark?: string; dataRoot?: string; labels?: string; split?: string;
  searcher?: string; candiRatios?: string; weightType?: string; freezeProj?: boolean; loraSvdInitType?: string; pruneMode?: string; seed?: number;
  bestScorer?: string; bestMetric?: string; locoopLambda?: number; locoopTopK?: number; usePredLabel?: boolean;
  temperature?: number; recallLevel?: number; batchSize?: number; cache?: boolean; template?: string; out?: string;
  testId?: string; testOod?: string[]; scorers?: string; strict?: boolean; workers?: number; threads?: number; device?: string;
}


/** A shell word, quoted when it needs to be. */
function sh(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * The commands that follow a search: evaluate the chosen settings on TEST data (unless the
 * search just did), and ship a detector whose threshold is set on the same VALIDATION images.
 */
function nextSteps(c: SearchConfig, best: string, evaluated: boolean): string[] {
  const model = `--model ${sh(c.model)}`;
  const steps: string[] = [];
  if (!evaluated) {
    const data = c.id.kind === 'benchmark' ? `--benchmark ${sh(c.id.benchmark)} --data-root ${sh(c.id.dataRoot)}` : '--id NAME=TEST_DIR --ood NAME=OOD_DIR';
    steps.push(`setar eval --config ${sh(best)} ${model} ${data} --out ${sh(join(c.out, 'eval'))}`);
  }
  if (c.id.kind === 'folder') steps.push(`setar bundle ${model} --id ${sh(`${c.id.name}=${c.id.root}`)} --lora-settings ${sh(best)} --out ${sh(join(c.out, 'bundle'))}`);
  return steps;
}

/** `setar search`: the greedy low-rank search (SPEC §6), resumable, with the reference's output files. */
export function registerSearch(program: Command): void {
  program
    .command('search')
    .description('training-free SeTAR: greedy search of low-rank ratios on ID validation images (resumable)')
    .option('--config <file>', 'an official search config (searcher, candi_ratios, weight_type, best_scorer, …); flags override it')
    .option('--model <dir>', 'CLIP or Swin V2 checkpoint directory (Hugging Face layout), or a hub id ORG/NAME (required unless the config gives model_name)')
    .option('--revision <rev>', REVISION_HELP)
    .option('--clip-ckpt <file>', `${CLIP_CKPT_HELP} (config key clip_ckpt)`)
    .option('--locoop-ckpt <file>', `${LOCOOP_CKPT_HELP}; the context stays fixed during the search`)
    .option('--n-ctx <n>', N_CTX_HELP, positiveInt('--n-ctx'))
    .option('--id <name=dir>', 'ID validation images: DIR holds one sub-folder per class (required, or --benchmark)')
    .option('--benchmark <name>', 'built-in benchmark: imagenet1k | voc | coco (with --data-root; uses its val split)')
    .option('--data-root <dir>', 'benchmark root, laid out as the reference expects')
    .option('--labels <file>', 'class names (JSON array or one per line) (default: the class folder names)')
    .option('--split <name>', 'validation split name (default val)')
    .option('--searcher <name>', 'visual_text | text_visual | visual_only | text_only | modality_interleaved | layer_exhaustive (CLIP); visual_only_swin (Swin V2) (default: visual_text for CLIP, visual_only_swin for Swin V2)')
    .option('--candi-ratios <list>', 'comma-separated ratios in [0, 1) (default 0,0.05,…,0.4)')
    .option('--weight-type <w>', 'W_q | W_k | W_v | W_o | W_up | W_down (default W_up)')
    .option('--no-freeze-proj', 'also search the projections (W_p), first in each tower')
    .option('--lora-svd-init-type <mode>', PRUNE_MODE_HELP)
    .option('--prune-mode <mode>', 'alias of --lora-svd-init-type')
    .option('--seed <n>', "seed of the 'random' mode (default 5)", finiteNumber('--seed'))
    .option('--best-scorer <name>', "objective: 'loss', or a scorer on pseudo-OOD patches (mcm_score, gl_mcm_score, …) (default loss)")
    .option('--best-metric <name>', 'locoop_loss | loss_id | loss_ood (loss), or auroc | fpr | aupr (a scorer) (default locoop_loss, or auroc with a scorer)')
    .option('--locoop-lambda <x>', 'weight of loss_ood (default 0.1; 0.05 on VOC; 0.01 for Swin V2)', finiteNumber('--locoop-lambda'))
    .option('--locoop-top-k <k>', 'a patch is OOD if its label is not in its top-K classes (default: round(0.3 × classes), 300 on ImageNet, 4 on VOC; Swin V2 0.7 × classes)', positiveInt('--locoop-top-k'))
    .option('--use-pred-label', 'choose OOD patches with the predicted class instead of the label')
    .option('--temperature <t>', 'score temperature (default: 100 for CLIP, 1 for Swin V2)', finiteNumber('--temperature'))
    .option('--recall-level <r>', 'recall of the pseudo-OOD FPR (default 0.95)', finiteNumber('--recall-level'))
    .option('--batch-size <n>', 'images per decoding batch (default 32)', positiveInt('--batch-size'))
    .option('--no-cache', 'recompute both towers from the images for every candidate, as the reference does')
    .option('--template <text>', TEMPLATE_HELP)
    .option('--test-id <name=dir>', 'ID test images for the final evaluation')
    .option('--test-ood <name=dir>', 'OOD test set for the final evaluation (repeat the flag)', (v: string, acc: string[] = []) => [...acc, v])
    .option('--scorers <list>', 'scorers of the final evaluation (default mcm_score,gl_mcm_score; Swin V2 mcm_score,energy_score)')
    .option('--strict', 'fail on the first unreadable image instead of skipping it')
    .option('--workers <n>', 'image decoding threads (default: one per core)', positiveInt('--workers'))
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)', positiveInt('--threads'))
    .option('--device <name>', `${DEVICE_HELP}; wins over the config's "device" ("cuda" in the official configs)`, deviceFlag)
    .option('--out <dir>', 'output folder; a re-run with the same settings resumes there (required unless the config gives log_directory)')
    .action(async (f: SearchCliFlags) => {
      const json = f.config ? await readJson(f.config, 'config file') : null;
      if (json !== null && (typeof json !== 'object' || Array.isArray(json))) throw new UsageError(`config file '${f.config}' must hold a JSON object`);
      const flags: SearchFlags = {
        ...f,
        model: await resolveModelFlag(f.model ?? configModelName(json), f.revision),
        loraSvdInitType: pruneModeOf(f),
        labels: f.labels ? await readStringList(f.labels, 'labels file', { allowEmptyEntries: false }) : undefined,
        candiRatios: f.candiRatios?.split(',').map((x) => {
          const v = Number(x);
          if (x.trim() === '' || !Number.isFinite(v)) throw new UsageError(`--candi-ratios: '${x}' is not a number`);
          return v;
        }),
        scorers: f.scorers?.split(',').map((s) => s.trim()).filter(Boolean),
        // commander sets these to true by default for --no-… flags; only pass them when given
        freezeProj: f.freezeProj === false ? false : undefined,
        cache: f.cache === false ? false : undefined,
      };
      const config = resolveSearchConfig(json as Record<string, unknown> | null, flags, f.config ?? 'config');
      const tty = process.stderr.isTTY;
      const bars = tty ? new cliProgress.MultiBar({ format: '{label} {bar} {value}/{total} | ETA {eta_formatted}', hideCursor: true, stream: process.stderr }, cliProgress.Presets.shades_classic) : null;
      let stepBar: cliProgress.SingleBar | undefined;
      let candBar: cliProgress.SingleBar | undefined;
      try {
        const result = await runSearch(config, {
          onStepStart: (step, total, label) => {
            stepBar ??= bars?.create(total, step, { label: 'steps     ' });
            stepBar?.update(step);
            candBar?.stop();
            if (candBar) bars?.remove(candBar);
            candBar = bars?.create(config.candi_ratios.length, 0, { label: label.padEnd(10).slice(0, 24) });
          },
          onCandidate: (done, total) => {
            candBar?.setTotal(total);
            candBar?.update(done);
          },
          onStepEnd: (step) => stepBar?.update(step + 1),
          log: (line) => {
            if (!tty) process.stderr.write(`${line}\n`);
          },
          notice: (line) => {
            if (tty) process.stderr.write(`${line}\n`);
          },
        });
        bars?.stop();
        const best = join(config.out, 'config_best.json');
        process.stdout.write(`chosen lora_settings (${result.steps.length} steps):\n${JSON.stringify(result.lora_settings)}\nwrote config_best.json, search_results.json, search_best_results.csv to ${config.out}\n`);
        process.stdout.write(`\nnext:\n${nextSteps(config, best, result.evaluation !== null).map((c) => `  ${c}`).join('\n')}\n`);
      } finally {
        bars?.stop();
      }
    });
}
