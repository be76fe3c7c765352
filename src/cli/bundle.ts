import type { Command } from 'commander';
import { createBundle } from '../bundle/bundle.js';
import { locoopLoadOptions, parseNamedDir, resolveLocoopCkpt } from '../config/run-config.js';
import { parseLoraSettings } from '../lowrank/settings.js';
import { parsePrecision, type Precision } from '../onnx/precision.js';
import type { DeviceRequest } from '../runtime/device.js';
import { CLIP_CKPT_HELP, DEVICE_HELP, deviceFlag, LOCOOP_CKPT_HELP, N_CTX_HELP, finiteNumber, openDeviceFlag, positiveInt, readJson, readStringList, resolveModelFlag, REVISION_HELP, UsageError } from './inputs.js';

interface BundleFlags { scorers?: string; model: string; revision?: string; clipCkpt?: string; locoopCkpt?: string; nCtx?: number; id: string; labels?: string; loraSettings?: string; scorer: string; tpr: number; template?: string[]; temperature?: number; out: string; threads?: number; precision: Precision; device?: DeviceRequest }

/** `setar bundle`: a self-contained detector folder with a threshold chosen on ID validation images. */
export function registerBundle(program: Command): void {
  program
    .command('bundle')
    .description('write a detector: the image tower as ONNX, the prompts\' text features, scorer, temperature and a threshold set on ID validation images')
    .requiredOption('--model <dir>', 'CLIP or Swin V2 checkpoint directory (a fine-tuned one works too), or a hub id ORG/NAME')
    .option('--revision <rev>', REVISION_HELP)
    .option('--clip-ckpt <file>', CLIP_CKPT_HELP)
    .option('--locoop-ckpt <file>', `${LOCOOP_CKPT_HELP}; the bundle's text features are then the LoCoOp prompts'`)
    .option('--n-ctx <n>', N_CTX_HELP, positiveInt('--n-ctx'))
    .requiredOption('--id <name=dir>', 'ID VALIDATION images (class sub-folders): the threshold is chosen on them, never on test data')
    .option('--labels <file>', 'class names (JSON array or one per line) (default: the class folder names)')
    .option('--lora-settings <file>', 'low-rank settings to apply: [["visual","W_up",11,0.15], …] or a config_best.json')
    .option('--scorer <name>', 'the detector\'s score', 'gl_mcm_score')
    .option('--scorers <name>', 'the same as --scorer (the other commands\' name; a bundle has exactly one scorer)')
    .option('--tpr <r>', 'share of ID validation images to accept', finiteNumber('--tpr'), 0.95)
    .option('--template <text>', "prompt template, '{}' is the class name (repeat for an ensemble) (default \"a photo of a {}\" for CLIP, \"{}.\" for LoCoOp)", (v: string, acc: string[] = []) => [...acc, v])
    .option('--temperature <t>', 'score temperature (default: 100 for CLIP, 1 for Swin V2)', finiteNumber('--temperature'))
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)', positiveInt('--threads'))
    .option('--precision <p>', 'image_encoder.onnx weights: fp32, fp16 (stored half, computed fp32) or int8 (MatMul weights int8, dynamic activation quantisation); the threshold is chosen with that model', (v: string) => parsePrecision(v, '--precision'), 'fp32')
    .option('--device <name>', `${DEVICE_HELP}; the bundle itself runs on any device`, deviceFlag)
    .requiredOption('--out <dir>', 'bundle folder')
    .action(async (f: BundleFlags) => {
      const { name, root } = parseNamedDir(f.id, '--id');
      if (f.scorers !== undefined) {
        const list = f.scorers.split(',').map((s) => s.trim()).filter(Boolean);
        if (list.length !== 1) throw new UsageError(`--scorers: a bundle has exactly one scorer, got ${list.length} (${f.scorers})`);
        f.scorer = list[0]!;
      }
      const locoop = locoopLoadOptions(resolveLocoopCkpt({}, f));
      const device = await openDeviceFlag(f.device);
      const m = await createBundle({
        device, model: (await resolveModelFlag(f.model, f.revision))!, clipCkpt: f.clipCkpt, ...locoop, id: { kind: 'folder', name, root }, out: f.out, scorer: f.scorer, tpr: f.tpr, templates: f.template, temperature: f.temperature, threads: f.threads, precision: f.precision,
        labels: f.labels ? await readStringList(f.labels, 'labels file', { allowEmptyEntries: false }) : undefined,
        loraSettings: f.loraSettings ? parseLoraSettings(await readJson(f.loraSettings, 'lora settings file'), f.loraSettings) : undefined,
      });
      process.stdout.write(`bundle written to ${f.out}: ${m.labels.length} labels, ${m.scorer} threshold ${m.threshold.toPrecision(4)} (TPR ${m.tpr} on ${m.validation_images} ID validation images), ${m.precision} weights\n`);
      process.stdout.write(`\nnext:\n  setar serve --bundle ${/^[\w@%+=:,./-]+$/.test(f.out) ? f.out : `'${f.out}'`}\n`);
    });
}
