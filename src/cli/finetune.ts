import type { Command } from 'commander';
import cliProgress from 'cli-progress';
import { resolveFinetuneConfig, type FinetuneFlags } from '../train/config.js';
import { runFinetune } from '../train/finetune.js';
import { DEVICE_HELP, deviceFlag, LOCOOP_CKPT_HELP, TEMPLATE_HELP, configModelName, finiteNumber, nonNegativeInt, positiveInt, readJson, readStringList, PRUNE_MODE_HELP, pruneModeOf, resolveModelFlag, REVISION_HELP, UsageError } from './inputs.js';



interface FinetuneCliFlags extends Omit<FinetuneFlags, 'labels' | 'loraSettings' | 'targetModules' | 'scorers'> {
  config?: string; revision?: string; pruneMode?: string; labels?: string; loraSettings?: string; targetModules?: string; scorers?: string;
}

/** `setar finetune`: SeTAR+FT or plain LoRA (SPEC §7), or LoCoOp prompt training (SPEC §9), all with the LoCoOp loss. */
export function registerFinetune(program: Command): void {
  program
    .command('finetune')
    .description('SeTAR+FT (LoRA on the pruned minor part), plain LoRA, or LoCoOp (a learned prompt context), trained with the LoCoOp loss; saves the merged model, or the context')
    .option('--config <file>', 'an official fine-tune config (SeTAR+FT.json, LoRA.json); flags override it')
    .option('--method <name>', 'setar-ft (SeTAR+FT from --lora-settings) | lora (--lora-r …) | locoop (train a LoCoOp context: SPEC §9\'s recipe as defaults) (default setar-ft; lora when only --lora-r is given)')
    .option('--model <dir>', 'CLIP or Swin V2 checkpoint directory (Hugging Face layout), or a hub id ORG/NAME (required unless the config gives model_name)')
    .option('--revision <rev>', REVISION_HELP)
    .option('--locoop-ckpt <file>', `${LOCOOP_CKPT_HELP}; setar-ft and lora keep it fixed, locoop continues training it`)
    .option('--n-ctx <n>', 'LoCoOp: context vectors — with --method locoop to train, else what --locoop-ckpt must hold (default: 16, the --ctx-init phrase\'s token count, or read from --locoop-ckpt)', positiveInt('--n-ctx'))
    .option('--ctx-init <phrase>', 'locoop: start the context from this phrase\'s token embeddings, e.g. "a photo of a" (n_ctx = its tokens) (default: random, N(0, 0.02²))')
    .option('--shots <k>', 'locoop: training images per class, drawn with --seed (default 16)', positiveInt('--shots'))
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
    .option('--num-train-epochs <n>', 'epochs (default 5; locoop 50, the warm-up epoch included)', nonNegativeInt('--num-train-epochs'))
    .option('--max-train-steps <n>', 'optimiser steps instead of epochs (0: no step) (default: the epochs\' steps)', nonNegativeInt('--max-train-steps'))
    .option('--learning-rate <lr>', 'base learning rate (default 0.01; locoop 0.002, after 1 warm-up epoch at 1e-5)', finiteNumber('--learning-rate'))
    .option('--momentum <m>', 'SGD momentum (default 0.9)', finiteNumber('--momentum'))
    .option('--weight-decay <wd>', 'weight decay (default 5e-4)', finiteNumber('--weight-decay'))
    .option('--lr-scheduler-type <name>', 'cosine | linear | constant | constant_with_warmup (default cosine)')
    .option('--num-warmup-steps <n>', 'linear warm-up steps (default 0)', nonNegativeInt('--num-warmup-steps'))
    .option('--gradient-accumulation-steps <n>', 'batches per optimiser step (default 1)', positiveInt('--gradient-accumulation-steps'))
    .option('--batch-size <n>', 'images per batch (default 100; locoop 32)', positiveInt('--batch-size'))
    .option('--seed <n>', 'seed of initialisation, augmentation, batch order and locoop\'s shots (default 5)', finiteNumber('--seed'))
    .option('--locoop-lambda <x>', 'weight of loss_ood (default 0.1; 0.05 on VOC; 0.01 for Swin V2; locoop 0.25)', finiteNumber('--locoop-lambda'))
    .option('--locoop-top-k <k>', 'a patch is OOD if its label is not in its top-K classes (default: round(0.3 × classes); Swin V2 0.7 × classes; locoop 0.2 × classes, 200 of ImageNet\'s 1,000)', positiveInt('--locoop-top-k'))
    .option('--use-pred-label', 'choose OOD patches with the predicted class')
    .option('--template <text>', TEMPLATE_HELP)
    .option('--test-id <name=dir>', 'ID test images for the final evaluation')
    .option('--test-ood <name=dir>', 'OOD test set for the final evaluation (repeat the flag)', (v: string, acc: string[] = []) => [...acc, v])
    .option('--scorers <list>', 'scorers of the final evaluation (default mcm_score,gl_mcm_score)')
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)', positiveInt('--threads'))
    .option('--device <name>', `${DEVICE_HELP}; wins over the config's "device" ("cuda" in the official configs)`, deviceFlag)
    .option('--out <dir>', 'output folder; the merged model goes to OUT/model, a LoCoOp context to OUT/prompt_learner/model.pth.tar-<epoch> and OUT/ctx.safetensors; a re-run resumes from the last epoch (required unless the config gives log_directory)')
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
        if (config.adapters.kind === 'context') process.stdout.write(`${r.steps} optimiser steps (locoop_top_k ${r.locoopTopK}); LoCoOp context in ${r.context!.checkpoint} and ${r.context!.safetensors}, for the CLIP model ${r.modelDir}\n`);
        else process.stdout.write(`${r.steps} optimiser steps; merged model in ${r.modelDir}${r.context ? ` with its LoCoOp context ${r.context.safetensors}` : ''}\n`);
      } finally {
        bar?.stop();
      }
    });
}
