import type { Command } from 'commander';
import { loadAndPreprocess } from '../image/preprocess.js';
import { locoopLoadOptions, resolveLocoopCkpt } from '../config/run-config.js';
import { resolveFamily } from '../models/registry.js';
import { tensor } from '../tensor.js';
import type { DeviceRequest } from '../runtime/device.js';
import { CLIP_CKPT_HELP, DEVICE_HELP, deviceFlag, LOCOOP_CKPT_HELP, N_CTX_HELP, openDeviceFlag, positiveInt, readStringList, resolveModelFlag, REVISION_HELP, TEMPLATE_HELP, UsageError } from './inputs.js';

interface ClassifyFlags { model: string; revision?: string; clipCkpt?: string; locoopCkpt?: string; nCtx?: number; labels?: string; template?: string; top: number; json?: boolean; threads?: number; device?: DeviceRequest }

/** One image's prediction. */
interface Prediction {
  readonly label: string;
  readonly index: number;
  readonly probability: number;
}

/** Images preprocessed per forward pass. */
const BATCH = 32;

/** `setar classify`: top-k classes with probabilities for each image. */
export function registerClassify(program: Command): void {
  program
    .command('classify')
    .description('classification: top-k labels with probabilities for each image (CLIP zero-shot over --labels, Swin V2 over its own classes)')
    .requiredOption('--model <dir>', 'CLIP or Swin V2 checkpoint directory (Hugging Face layout), or a hub id ORG/NAME')
    .option('--revision <rev>', REVISION_HELP)
    .option('--clip-ckpt <file>', CLIP_CKPT_HELP)
    .option('--locoop-ckpt <file>', LOCOOP_CKPT_HELP)
    .option('--n-ctx <n>', N_CTX_HELP, positiveInt('--n-ctx'))
    .option('--labels <file>', 'class names: a JSON array or one per line (required for CLIP; for Swin V2 they rename the classifier outputs)')
    .option('--template <text>', TEMPLATE_HELP)
    .option('--top <k>', 'how many labels to print per image', positiveInt('--top'), 5)
    .option('--json', 'print JSON instead of a table')
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)', positiveInt('--threads'))
    .option('--device <name>', DEVICE_HELP, deviceFlag)
    .argument('<images...>', 'image files (JPEG, PNG, WebP, GIF, …)')
    .action(async (images: string[], flags: ClassifyFlags) => {
      const given = flags.labels ? await readStringList(flags.labels, 'labels file', { allowEmptyEntries: false }) : undefined;
      const dir = (await resolveModelFlag(flags.model, flags.revision))!;
      const locoop = locoopLoadOptions(resolveLocoopCkpt({}, flags));
      const family = resolveFamily(dir, locoop);
      const device = await openDeviceFlag(flags.device);
      const model = await family.load(dir, { threads: flags.threads, clipCkpt: flags.clipCkpt, ...locoop, device });
      const preds: Prediction[][] = [];
      const errors = new Map<number, string>();
      try {
        const labels = given ?? model.defaultLabels();
        if (!labels) throw new UsageError(`a ${family.displayName} model needs --labels FILE (the class names to compare the images with)`);
        const classifier = await model.classifier(labels, { template: flags.template ?? family.defaults.template ?? 'a photo of a {}' });
        try {
          const pre = model.preprocess;
          const s = pre.cropSize;
          const k = Math.min(flags.top, labels.length);
          for (let i = 0; i < images.length; i += BATCH) {
            const chunk = images.slice(i, i + BATCH);
            // an unreadable image is reported and skipped: the others are still classified
            const good: number[] = [];
            const data = new Float32Array(chunk.length * 3 * s * s);
            for (let j = 0; j < chunk.length; j++) {
              try {
                data.set(await loadAndPreprocess(chunk[j]!, pre), good.length * 3 * s * s);
                good.push(i + j);
              } catch (e) {
                errors.set(i + j, (e as Error).message);
                process.stderr.write(`setar: error: ${(e as Error).message}\n`);
              }
            }
            if (!good.length) continue;
            const p = await classifier.probabilities(tensor('float32', data.subarray(0, good.length * 3 * s * s), [good.length, 3, s, s], 'pixel_values'));
            good.forEach((at, j) => {
              const row = Array.from(p.subarray(j * labels.length, (j + 1) * labels.length), (probability, index) => ({ label: labels[index]!, index, probability }));
              preds[at] = row.sort((a, b) => b.probability - a.probability || a.index - b.index).slice(0, k);
            });
          }
        } finally {
          await classifier.release();
        }
      } finally {
        await model.dispose();
      }
      if (flags.json) {
        process.stdout.write(JSON.stringify(images.map((image, i) => (errors.has(i) ? { image, error: errors.get(i) } : { image, top: preds[i] })), null, 2) + '\n');
      } else {
        const width = Math.max(...preds.flat().map((p) => p.label.length), 5);
        images.forEach((image, i) => {
          if (errors.has(i)) return;
          process.stdout.write(`${image}\n`);
          preds[i]!.forEach((p, r) => process.stdout.write(`  ${r + 1}. ${p.label.padEnd(width)}  ${(p.probability * 100).toFixed(2).padStart(6)}%\n`));
        });
      }
      if (errors.size) throw new UsageError(`${errors.size} of ${images.length} image${images.length === 1 ? '' : 's'} could not be read (named above); the others are classified`);
    });
}
