import type { Command } from 'commander';
import { loadAndPreprocess } from '../image/preprocess.js';
import { ClipPipeline, DEFAULT_TEMPLATE, type Prediction } from '../models/clip/pipeline.js';
import { modelFamily, swinPreprocess } from '../models/registry.js';
import { numLabels } from '../models/swinv2/config.js';
import { SwinV2Model } from '../models/swinv2/model.js';
import { tensor } from '../tensor.js';
import { CLIP_CKPT_HELP, positiveInt, readStringList, resolveModelFlag, REVISION_HELP, UsageError } from './inputs.js';

interface ClassifyFlags { model: string; revision?: string; clipCkpt?: string; labels?: string; template: string; top: number; json?: boolean; threads?: number }

/** `setar classify`: zero-shot top-k for each image. */
export function registerClassify(program: Command): void {
  program
    .command('classify')
    .description('zero-shot classification: top-k labels with probabilities for each image')
    .requiredOption('--model <dir>', 'CLIP or Swin V2 checkpoint directory (Hugging Face layout), or a hub id ORG/NAME')
    .option('--revision <rev>', REVISION_HELP)
    .option('--clip-ckpt <file>', CLIP_CKPT_HELP)
    .option('--labels <file>', 'class names: a JSON array or one per line (required for CLIP; for Swin V2 they rename the classifier outputs)')
    .option('--template <text>', "prompt template; '{}' is replaced by the class name", DEFAULT_TEMPLATE)
    .option('--top <k>', 'how many labels to print per image', positiveInt('--top'), 5)
    .option('--json', 'print JSON instead of a table')
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)', positiveInt('--threads'))
    .argument('<images...>', 'image files (JPEG, PNG, WebP, GIF, …)')
    .action(async (images: string[], flags: ClassifyFlags) => {
      const labels = flags.labels ? await readStringList(flags.labels, 'labels file', { allowEmptyEntries: false }) : undefined;
      flags.model = (await resolveModelFlag(flags.model, flags.revision))!;
      const preds = modelFamily(flags.model) === 'swinv2'
        ? await classifySwin(flags.model, images, labels, flags)
        : await classifyClip(flags.model, images, labels, flags);
      if (flags.json) {
        process.stdout.write(JSON.stringify(images.map((image, i) => ({ image, top: preds[i] })), null, 2) + '\n');
        return;
      }
      const width = Math.max(...preds.flat().map((p) => p.label.length), 5);
      images.forEach((image, i) => {
        process.stdout.write(`${image}\n`);
        preds[i]!.forEach((p, r) => process.stdout.write(`  ${r + 1}. ${p.label.padEnd(width)}  ${(p.probability * 100).toFixed(2).padStart(6)}%\n`));
      });
    });
}

async function classifyClip(model: string, images: string[], labels: string[] | undefined, flags: ClassifyFlags): Promise<Prediction[][]> {
  if (!labels) throw new UsageError('a CLIP model needs --labels FILE (the class names to compare the images with)');
  const clip = await ClipPipeline.load(model, { threads: flags.threads, clipCkpt: flags.clipCkpt });
  try {
    return await clip.classify(images, labels, { template: flags.template, top: flags.top });
  } finally {
    await clip.dispose();
  }
}

/** A Swin V2 classifier: softmax of its logits (temperature 1), labels from id2label unless renamed. */
async function classifySwin(dir: string, images: string[], labels: string[] | undefined, flags: ClassifyFlags): Promise<Prediction[][]> {
  const model = await SwinV2Model.load(dir, { threads: flags.threads, clipCkpt: flags.clipCkpt });
  try {
    const c = model.config;
    const n = numLabels(c);
    const names = labels ?? Array.from({ length: n }, (_, i) => c.id2label[i] ?? String(i));
    if (names.length !== n) throw new UsageError(`labels file has ${names.length} labels but the classifier in '${dir}' has ${n} outputs`);
    const prep = swinPreprocess(c);
    const out: Prediction[][] = [];
    for (const file of images) {
      const px = await loadAndPreprocess(file, prep);
      const { logits } = await model.classify(tensor('float32', px, [1, 3, prep.cropSize, prep.cropSize], 'pixel_values'));
      const row = logits.data;
      const mx = Math.max(...row);
      const e = Array.from(row, (x) => Math.exp(x - mx));
      const s = e.reduce((a, b) => a + b, 0);
      out.push(e.map((v, j) => ({ label: names[j]!, index: j, probability: v / s })).sort((a, b) => b.probability - a.probability || a.index - b.index).slice(0, flags.top));
    }
    return out;
  } finally {
    await model.dispose();
  }
}
