import type { Command } from 'commander';
import { ClipPipeline, DEFAULT_TEMPLATE } from '../models/clip/pipeline.js';
import { positiveInt, readStringList } from './inputs.js';

interface ClassifyFlags { model: string; labels: string; template: string; top: number; json?: boolean; threads?: number }

/** `setar classify`: zero-shot top-k for each image. */
export function registerClassify(program: Command): void {
  program
    .command('classify')
    .description('zero-shot classification: top-k labels with probabilities for each image')
    .requiredOption('--model <dir>', 'CLIP checkpoint directory (Hugging Face layout)')
    .requiredOption('--labels <file>', 'class names: a JSON array or one per line')
    .option('--template <text>', "prompt template; '{}' is replaced by the class name", DEFAULT_TEMPLATE)
    .option('--top <k>', 'how many labels to print per image', positiveInt('--top'), 5)
    .option('--json', 'print JSON instead of a table')
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)', positiveInt('--threads'))
    .argument('<images...>', 'image files (JPEG, PNG, WebP, GIF, …)')
    .action(async (images: string[], flags: ClassifyFlags) => {
      const labels = await readStringList(flags.labels, 'labels file', { allowEmptyEntries: false });
      const clip = await ClipPipeline.load(flags.model, { threads: flags.threads });
      try {
        const preds = await clip.classify(images, labels, { template: flags.template, top: flags.top });
        if (flags.json) {
          process.stdout.write(JSON.stringify(images.map((image, i) => ({ image, top: preds[i] })), null, 2) + '\n');
          return;
        }
        const width = Math.max(...labels.map((l) => l.length), 5);
        images.forEach((image, i) => {
          process.stdout.write(`${image}\n`);
          preds[i]!.forEach((p, r) => process.stdout.write(`  ${r + 1}. ${p.label.padEnd(width)}  ${(p.probability * 100).toFixed(2).padStart(6)}%\n`));
        });
      } finally {
        await clip.dispose();
      }
    });
}
