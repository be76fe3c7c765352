import type { Command } from 'commander';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { loadAndPreprocess } from '../image/preprocess.js';
import { applyLoraSettings } from '../lowrank/apply.js';
import { parseLoraSettings } from '../lowrank/settings.js';
import type { FamilyModel } from '../models/family.js';
import { locoopLoadOptions, resolveLocoopCkpt } from '../config/run-config.js';
import { resolveFamily } from '../models/registry.js';
import { TransferCounter } from '../runtime/transfers.js';
import type { DeviceRequest } from '../runtime/device.js';
import { concatBatch, tensor, type Tensor } from '../tensor.js';
import { CLIP_CKPT_HELP, DEVICE_HELP, deviceFlag, LOCOOP_CKPT_HELP, N_CTX_HELP, openDeviceFlag, positiveInt, PRUNE_MODE_HELP, pruneModeOf, readJson, readStringList, resolveModelFlag, REVISION_HELP, UsageError } from './inputs.js';
import { prepareOutFile } from '../io/out-dir.js';

interface EmbedFlags {
  model: string;
  revision?: string;
  clipCkpt?: string;
  locoopCkpt?: string;
  nCtx?: number;
  images?: string[];
  pixelValues?: string;
  texts?: string;
  loraSettings?: string;
  loraSvdInitType?: string;
  pruneMode?: string;
  seed: number;
  local: boolean;
  batchSize: number;
  out: string;
  threads?: number;
  device?: DeviceRequest;
}

/** `12.3 KiB` */
function kib(bytes: number): string {
  return `${(bytes / 1024).toFixed(1)} KiB`;
}

function readPixelValues(file: string): Tensor<'float32'> {
  const f = SafetensorsFile.open(file);
  try {
    const e = f.entry('pixel_values');
    if (e.shape.length !== 4) throw new UsageError(`'${file}': tensor 'pixel_values' has shape [${e.shape.join(', ')}], expected [batch, 3, height, width]`);
    return tensor('float32', f.readFloat32('pixel_values'), e.shape, 'pixel_values');
  } finally {
    f.close();
  }
}

/** Image files → the model's outputs, `batchSize` files at a time (memory stays bounded), concatenated. */
async function embedFiles(model: FamilyModel, files: readonly string[], batchSize: number, local: boolean): Promise<Record<string, Tensor<'float32'>>> {
  const pre = model.preprocess;
  const s = pre.cropSize;
  const parts: Record<string, Tensor<'float32'>>[] = [];
  for (let i = 0; i < files.length; i += batchSize) {
    const chunk = files.slice(i, i + batchSize);
    const data = new Float32Array(chunk.length * 3 * s * s);
    for (let k = 0; k < chunk.length; k++) data.set(await loadAndPreprocess(chunk[k]!, pre), k * 3 * s * s);
    parts.push(await model.embed({ pixels: tensor('float32', data, [chunk.length, 3, s, s], 'pixel_values') }, { local }));
  }
  return Object.fromEntries(Object.keys(parts[0]!).filter((k) => parts[0]![k]!.dims.length > 0).map((k) => [k, concatBatch(parts.map((p) => p[k]!))]));
}

/** `setar embed`: the model's features (CLIP) or logits (Swin V2) to a safetensors file, with HF names. */
export function registerEmbed(program: Command): void {
  program
    .command('embed')
    .description('write a model\'s outputs with HF names to a safetensors file: CLIP image_embeds, image_embeds_local, text_embeds (F32, unnormalised) and logit_scale; Swin V2 logits and logits_local')
    .requiredOption('--model <dir>', 'CLIP or Swin V2 checkpoint directory (Hugging Face layout), or a hub id ORG/NAME')
    .option('--revision <rev>', REVISION_HELP)
    .option('--clip-ckpt <file>', CLIP_CKPT_HELP)
    .option('--locoop-ckpt <file>', `${LOCOOP_CKPT_HELP}: --texts then gives LoCoOp text features`)
    .option('--n-ctx <n>', N_CTX_HELP, positiveInt('--n-ctx'))
    .option('--images <files...>', 'image files to preprocess and encode')
    .option('--pixel-values <file>', "safetensors file holding 'pixel_values' [B, 3, H, W], already preprocessed")
    .option('--texts <file>', 'prompts: a JSON array of strings, or one prompt per line')
    .option('--lora-settings <file>', 'low-rank settings to apply first: [["visual","W_up",11,0.15], …] or {"lora_settings": […]}')
    .option('--lora-svd-init-type <mode>', PRUNE_MODE_HELP)
    .option('--prune-mode <mode>', 'alias of --lora-svd-init-type')
    .option('--seed <n>', "seed of the 'random' prune mode", (v) => Number(v), 0)
    .option('--no-local', 'skip the local (per-patch) outputs: image_embeds_local / logits_local')
    .option('--batch-size <n>', 'images per forward pass', positiveInt('--batch-size'), 32)
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)', positiveInt('--threads'))
    .option('--device <name>', DEVICE_HELP, deviceFlag)
    .requiredOption('--out <file>', 'output .safetensors file (written atomically)')
    .action(async (flags: EmbedFlags) => {
      if (flags.images && flags.pixelValues) throw new UsageError('give either --images or --pixel-values, not both');
      if (!flags.images && !flags.pixelValues && !flags.texts) throw new UsageError('nothing to embed: give --images, --pixel-values and/or --texts');
      const mode = pruneModeOf(flags) ?? 'small';
      prepareOutFile(flags.out);
      const dir = (await resolveModelFlag(flags.model, flags.revision))!;
      const locoop = locoopLoadOptions(resolveLocoopCkpt({}, flags));
      const family = resolveFamily(dir, locoop);
      const texts = flags.texts ? await readStringList(flags.texts, 'texts file', { allowEmptyEntries: true }) : null;
      if (texts && !family.towers.some((t) => t.tower === 'text')) throw new UsageError(`--texts: the ${family.displayName} model in '${flags.model}' has no text tower`);
      const settings = flags.loraSettings ? parseLoraSettings(await readJson(flags.loraSettings, 'lora settings file'), flags.loraSettings) : [];
      const pixels = flags.pixelValues ? readPixelValues(flags.pixelValues) : null;
      const device = await openDeviceFlag(flags.device);
      const transfers = device.name === 'cpu' ? undefined : new TransferCounter();
      const model = await family.load(dir, { threads: flags.threads, clipCkpt: flags.clipCkpt, ...locoop, device, transfers });
      try {
        if (settings.length) await applyLoraSettings(model, settings, { mode, seed: flags.seed });
        // image outputs first, then the text ones and the model's constants (CLIP: text_embeds, logit_scale)
        const images = pixels ? await model.embed({ pixels }, { local: flags.local }) : flags.images ? await embedFiles(model, flags.images, flags.batchSize, flags.local) : {};
        const moved = transfers?.take();
        const n = pixels ? pixels.dims[0]! : flags.images?.length ?? 0;
        if (moved && n) {
          // the weights go up once, on the first batch; each image moves its pixels up and its outputs down
          const weights = model.deviceWeightBytes;
          process.stderr.write(`device ${device.name}: bytes moved per image: up ${kib((moved.uploaded - weights) / n)}, down ${kib(moved.downloaded / n)} (${n} image${n === 1 ? '' : 's'}; besides, the weights, ${kib(weights)}, were uploaded once)\n`);
        }
        const rest = await model.embed(texts ? { texts } : {}, { local: flags.local });
        const all = { ...Object.fromEntries(Object.entries(images).filter(([k]) => !(k in rest))), ...rest };
        const out: Record<string, TensorToWrite> = {};
        for (const [k, v] of Object.entries(all)) out[k] = { dtype: 'F32', shape: v.dims, data: v.data };
        writeSafetensors(flags.out, out);
        process.stderr.write(`wrote ${Object.entries(out).map(([k, v]) => `${k} [${v.shape.join(', ')}]`).join(', ')} to ${flags.out}\n`);
      } finally {
        await model.dispose();
      }
    });
}
