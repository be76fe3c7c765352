import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { resolveFinetuneConfig, type FinetuneFlags } from '../train/config.js';
import { runFinetune } from '../train/finetune.js';
import { configModelName, DEVICE_HELP, deviceFlag, finiteNumber, nonNegativeInt, positiveInt, readJson, readStringList, PRUNE_MODE_HELP, pruneModeOf, resolveModelFlag, REVISION_HELP, UsageError } from './inputs.js';



interface FinetuneCliFlags extends Omit<FinetuneFlags, 'labels' | 'loraSettings' | 'targetModules' | 'scorers'> {
  config?: string; revision?: string; pruneMode?: string; labels?: string; loraSettings?: string; targetModules?: string; scorers?: string;
}

/** `setar finetune`: SeTAR+FT or plain LoRA, with the LoCoOp loss (SPEC §7). */
export function registerFinetune(program: Command): void {
  program
    .command('finetune')
    .description('SeTAR+FT (LoRA on the pruned minor part) or plain LoRA, trained with the LoCoOp loss; saves the merged model')
    .option('--config <file>', 'an official fine-tune config (SeTAR+FT.json, LoRA.json); flags override it')
    .option('--model <dir>', 'CLIP or Swin V2 checkpoint directory (Hugging Face layout), or a hub id ORG/NAME (required unless the config gives model_name)')
    .option('--revision <rev>', REVISION_HELP)
    .option('--id <name=dir>', 'ID training images: DIR holds one sub-folder per class (required, or --benchmark)')
    .option('--benchmark <name>', 'built-in benchmark (with --data-root; uses its val split)')
    .option('--data-root <dir>', 'benchmark root')
    .option('--labels <file>', 'class names (JSON array or one per line) (default: the class folder names)')
    .option('--lora-settings <file>', 'SeTAR+FT: [["visual","W_up",11,0.15], …] or a search\'s config_best.json')
    .option('--lora-svd-init-type <mode>', PRUNE_MODE_HELP)
    .option('--prune-mode <mode>', 'alias of --lora-svd-init-type')
    .option('--lora-r <r>', 'plain LoRA rank', positiveInt('--lora-r'))
    .option('--lora-alpha <a>', 'plain LoRA alpha (scaling = alpha / r) (default: r)', finiteNumber('--lora-alpha'))
    .option('--target-modules <list>', 'plain LoRA: comma-separated module names (default mlp.fc1)')
    .option('--num-train-epochs <n>', 'epochs (default 5)', nonNegativeInt('--num-train-epochs'))
    .option('--max-train-steps <n>', 'optimiser steps instead of epochs (0: no step) (default: the epochs\' steps)', nonNegativeInt('--max-train-steps'))
    .option('--learning-rate <lr>', 'base learning rate (default 0.01)', finiteNumber('--learning-rate'))
    .option('--momentum <m>', 'SGD momentum (default 0.9)', finiteNumber('--momentum'))
    .option('--weight-decay <wd>', 'weight decay (default 5e-4)', finiteNumber('--weight-decay'))
    .option('--lr-scheduler-type <name>', 'cosine | linear | constant | constant_with_warmup (default cosine)')
    .option('--num-warmup-steps <n>', 'linear warm-up steps (default 0)', nonNegativeInt('--num-warmup-steps'))
    .option('--gradient-accumulation-steps <n>', 'batches per optimiser step (default 1)', positiveInt('--gradient-accumulation-steps'))
    .option('--batch-size <n>', 'images per batch (default 100)', positiveInt('--batch-size'))
    .option('--seed <n>', 'seed of initialisation, augmentation and batch order (default 5)', finiteNumber('--seed'))
    .option('--locoop-lambda <x>', 'weight of loss_ood (default 0.1; 0.05 on VOC; 0.01 for Swin V2)', finiteNumber('--locoop-lambda'))
    .option('--locoop-top-k <k>', 'a patch is OOD if its label is not in its top-K classes (default: round(0.3 × classes); Swin V2 0.7 × classes)', positiveInt('--locoop-top-k'))
    .option('--use-pred-label', 'choose OOD patches with the predicted class')
    .option('--template <text>', "prompt template; '{}' is the class name", 'a photo of a {}')
    .option('--test-id <name=dir>', 'ID test images for the final evaluation')
    .option('--test-ood <name=dir>', 'OOD test set for the final evaluation (repeat the flag)', (v: string, acc: string[] = []) => [...acc, v])
    .option('--scorers <list>', 'scorers of the final evaluation (default mcm_score,gl_mcm_score)')
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)', positiveInt('--threads'))
    .option('--device <name>', `${DEVICE_HELP}; wins over the config's "device" ("cuda" in the official configs)`, deviceFlag)
    .option('--out <dir>', 'output folder; the merged model goes to OUT/model, a re-run resumes from the last epoch (required unless the config gives log_directory)')
    .action(async (f: FinetuneCliFlags) => {
      const json = f.config ? await readJson(f.config, 'config file') : null;
      if (json !== null && (typeof json !== 'object' || Array.isArray(json))) throw new UsageError(`config file '${f.config}' must hold a JSON object`);
      const { revision, pruneMode: _alias, ...rest } = f;
      const flags: FinetuneFlags = {
        ...rest,
        model: await resolveModelFlag(f.model ?? configModelName(json), revision),
        loraSvdInitType: pruneModeOf(f),
        labels: f.labels ? await readStringList(f.labels, 'labels file', { allowEmptyEntries: false }) : undefined,
        loraSettings: f.loraSettings ? await readJson(f.loraSettings, 'lora settings file') : undefined,
        targetModules: f.targetModules?.split(',').map((s) => s.trim()).filter(Boolean),
        scorers: f.scorers?.split(',').map((s) => s.trim()).filter(Boolean),
      };
      const config = resolveFinetuneConfig(json as Record<string, unknown> | null, flags, f.config ?? 'config');
      const tty = process.stderr.isTTY;
      const bar = tty ? new cliProgress.SingleBar({ format: 'training {bar} {value}/{total} steps | loss {loss} | ETA {eta_formatted}', hideCursor: true, stream: process.stderr }, cliProgress.Presets.shades_classic) : null;
      let started = false;
      try {
        const r = await runFinetune(config, {
          onStep: (step, total, row) => {
            if (!started) bar?.start(total, step, { loss: '' });
            started = true;
            bar?.update(step + 1, { loss: row.locoop_loss.toFixed(4) });
          },
          log: (line) => {
            if (!tty) process.stderr.write(`${line}\n`);
          },
          notice: (line) => {
            if (tty) process.stderr.write(`${line}\n`);
          },
        });
        bar?.stop();
        process.stdout.write(`${r.steps} optimiser steps; merged model in ${r.modelDir}\n`);
      } finally {
        bar?.stop();
      }
    });
}
