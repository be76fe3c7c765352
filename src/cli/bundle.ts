import type { Command } from 'commander';
import { createBundle } from '../bundle/bundle.js';
import { parseNamedDir } from '../eval/config.js';
import { parseLoraSettings } from '../lowrank/settings.js';
import { parsePrecision, type Precision } from '../onnx/precision.js';
import { finiteNumber, positiveInt, readJson, readStringList } from './inputs.js';

interface BundleFlags { model: string; id: string; labels?: string; loraSettings?: string; scorer: string; tpr: number; template?: string[]; temperature: number; out: string; threads?: number; precision: Precision }

/** `setar bundle`: a self-contained detector folder with a threshold chosen on ID validation images. */
export function registerBundle(program: Command): void {
  program
    .command('bundle')
    .description('write a detector: the image tower as ONNX, the prompts\' text features, scorer, temperature and a threshold set on ID validation images')
    .requiredOption('--model <dir>', 'CLIP checkpoint directory (a fine-tuned one works too)')
    .requiredOption('--id <name=dir>', 'ID VALIDATION images (class sub-folders): the threshold is chosen on them, never on test data')
    .option('--labels <file>', 'class names (JSON array or one per line); default: the class folder names')
    .option('--lora-settings <file>', 'low-rank settings to apply: [["visual","W_up",11,0.15], …] or a config_best.json')
    .option('--scorer <name>', 'the detector\'s score', 'gl_mcm_score')
    .option('--tpr <r>', 'share of ID validation images to accept', finiteNumber('--tpr'), 0.95)
    .option('--template <text>', "prompt template, '{}' is the class name (repeat for an ensemble)", (v: string, acc: string[] = []) => [...acc, v])
    .option('--temperature <t>', 'score temperature (100 for CLIP)', finiteNumber('--temperature'), 100)
    .option('--threads <n>', 'ONNX Runtime threads', positiveInt('--threads'))
    .option('--precision <p>', 'image_encoder.onnx weights: fp32, fp16 (stored half, computed fp32) or int8 (MatMul weights int8, dynamic activation quantisation); the threshold is chosen with that model', (v: string) => parsePrecision(v, '--precision'), 'fp32')
    .requiredOption('--out <dir>', 'bundle folder')
    .action(async (f: BundleFlags) => {
      const { name, root } = parseNamedDir(f.id, '--id');
      const m = await createBundle({
        model: f.model, id: { kind: 'folder', name, root }, out: f.out, scorer: f.scorer, tpr: f.tpr, templates: f.template, temperature: f.temperature, threads: f.threads, precision: f.precision,
        labels: f.labels ? await readStringList(f.labels, 'labels file', { allowEmptyEntries: false }) : undefined,
        loraSettings: f.loraSettings ? parseLoraSettings(await readJson(f.loraSettings, 'lora settings file'), f.loraSettings) : undefined,
      });
      process.stdout.write(`bundle written to ${f.out}: ${m.labels.length} labels, ${m.scorer} threshold ${m.threshold} (TPR ${m.tpr} on ${m.validation_images} ID validation images), ${m.precision} weights\n`);
    });
}
