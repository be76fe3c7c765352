import type { Command } from 'commander';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { applyLoraSettings } from '../lowrank/apply.js';
import { parseLoraSettings } from '../lowrank/settings.js';
import { ClipPipeline } from '../models/clip/pipeline.js';
import { loadAndPreprocess } from '../image/preprocess.js';
import { modelFamily, swinPreprocess } from '../models/registry.js';
import { SwinV2Model } from '../models/swinv2/model.js';
import { tensor, type Tensor } from '../tensor.js';
import { CLIP_CKPT_HELP, positiveInt, readJson, readStringList, resolveModelFlag, REVISION_HELP, UsageError } from './inputs.js';

interface EmbedFlags {
  model: string;
  revision?: string;
  clipCkpt?: string;
  images?: string[];
  pixelValues?: string;
  texts?: string;
  loraSettings?: string;
  pruneMode: 'small' | 'large' | 'random';
  seed: number;
  local: boolean;
  batchSize: number;
  out: string;
  threads?: number;
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

/** `setar embed` on a Swin V2 classifier: `logits` [B, labels] and `logits_local` [B, h, w, labels]. */
async function embedSwin(flags: EmbedFlags, pixels: Tensor<'float32'> | null, settings: Parameters<typeof applyLoraSettings>[1]): Promise<void> {
  const model = await SwinV2Model.load(flags.model, { threads: flags.threads, clipCkpt: flags.clipCkpt });
  try {
    if (settings.length) await applyLoraSettings(model, settings, { mode: flags.pruneMode, seed: flags.seed });
    const batches: Tensor<'float32'>[] = [];
    if (pixels) batches.push(pixels);
    else {
      const pre = swinPreprocess(model.config);
      const files = flags.images!;
      const row = 3 * pre.cropSize * pre.cropSize;
      for (let i = 0; i < files.length; i += flags.batchSize) {
        const chunk = files.slice(i, i + flags.batchSize);
        const data = new Float32Array(chunk.length * row);
        for (let k = 0; k < chunk.length; k++) data.set(await loadAndPreprocess(chunk[k]!, pre), k * row);
        batches.push(tensor('float32', data, [chunk.length, 3, pre.cropSize, pre.cropSize], 'pixel_values'));
      }
    }
    const logits: Float32Array[] = [];
    const local: Float32Array[] = [];
    let n = 0;
    let localDims: readonly number[] = [];
    for (const b of batches) {
      const o = await model.classify(b);
      logits.push(o.logits.data);
      local.push(o.logits_local.data);
      n += b.dims[0]!;
      localDims = o.logits_local.dims;
    }
    const cat = (xs: Float32Array[]) => {
      const out = new Float32Array(xs.reduce((a, x) => a + x.length, 0));
      let off = 0;
      for (const x of xs) {
        out.set(x, off);
        off += x.length;
      }
      return out;
    };
    const out: Record<string, TensorToWrite> = { logits: { dtype: 'F32', shape: [n, model.numLabels], data: cat(logits) } };
    if (flags.local) out.logits_local = { dtype: 'F32', shape: [n, ...localDims.slice(1)], data: cat(local) };
    writeSafetensors(flags.out, out);
    process.stderr.write(`wrote ${Object.entries(out).map(([k, v]) => `${k} [${v.shape.join(', ')}]`).join(', ')} to ${flags.out}\n`);
  } finally {
    await model.dispose();
  }
}

/** `setar embed`: image and text features to a safetensors file, with HF names. */
export function registerEmbed(program: Command): void {
  program
    .command('embed')
    .description('write image_embeds, image_embeds_local, text_embeds (F32, unnormalised) and logit_scale to a safetensors file')
    .requiredOption('--model <dir>', 'CLIP or Swin V2 checkpoint directory (Hugging Face layout), or a hub id ORG/NAME')
    .option('--revision <rev>', REVISION_HELP)
    .option('--clip-ckpt <file>', CLIP_CKPT_HELP)
    .option('--images <files...>', 'image files to preprocess and encode')
    .option('--pixel-values <file>', "safetensors file holding 'pixel_values' [B, 3, H, W], already preprocessed")
    .option('--texts <file>', 'prompts: a JSON array of strings, or one prompt per line')
    .option('--lora-settings <file>', 'low-rank settings to apply first: [["visual","W_up",11,0.15], …] or {"lora_settings": […]}')
    .option('--prune-mode <mode>', 'which singular components a setting drops: small | large | random', 'small')
    .option('--seed <n>', "seed of the 'random' prune mode", (v) => Number(v), 0)
    .option('--no-local', 'skip image_embeds_local (GL-MCM local features)')
    .option('--batch-size <n>', 'images per forward pass', positiveInt('--batch-size'), 32)
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)', positiveInt('--threads'))
    .requiredOption('--out <file>', 'output .safetensors file (written atomically)')
    .action(async (flags: EmbedFlags) => {
      if (flags.images && flags.pixelValues) throw new UsageError('give either --images or --pixel-values, not both');
      if (!flags.images && !flags.pixelValues && !flags.texts) throw new UsageError('nothing to embed: give --images, --pixel-values and/or --texts');
      if (!['small', 'large', 'random'].includes(flags.pruneMode)) throw new UsageError(`--prune-mode must be small, large or random, got '${flags.pruneMode}'`);
      const texts = flags.texts ? await readStringList(flags.texts, 'texts file', { allowEmptyEntries: true }) : null;
      const settings = flags.loraSettings ? parseLoraSettings(await readJson(flags.loraSettings, 'lora settings file'), flags.loraSettings) : [];
      const pixels = flags.pixelValues ? readPixelValues(flags.pixelValues) : null;
      flags.model = (await resolveModelFlag(flags.model, flags.revision))!;
      if (modelFamily(flags.model) === 'swinv2') {
        if (texts) throw new UsageError(`--texts: the Swin V2 model in '${flags.model}' has no text tower`);
        if (!pixels && !flags.images) throw new UsageError('nothing to embed: give --images or --pixel-values');
        await embedSwin(flags, pixels, settings);
        return;
      }
      const clip = await ClipPipeline.load(flags.model, { threads: flags.threads, clipCkpt: flags.clipCkpt });
      try {
        if (settings.length) await applyLoraSettings(clip.model, settings, { mode: flags.pruneMode, seed: flags.seed });
        const out: Record<string, TensorToWrite> = {};
        const put = (name: string, t: Tensor<'float32'>) => (out[name] = { dtype: 'F32', shape: t.dims, data: t.data });
        if (pixels || flags.images) {
          const f = pixels
            ? await clip.model.encodeImages(pixels, { local: flags.local })
            : await clip.encodeImageFiles(flags.images!, { local: flags.local, batchSize: flags.batchSize });
          put('image_embeds', f.image_embeds);
          if (f.image_embeds_local) put('image_embeds_local', f.image_embeds_local);
        }
        if (texts) put('text_embeds', await clip.encodeTexts(texts));
        out.logit_scale = { dtype: 'F32', shape: [], data: Float32Array.of(clip.model.logitScale) };
        writeSafetensors(flags.out, out);
        process.stderr.write(`wrote ${Object.entries(out).map(([k, v]) => `${k} [${v.shape.join(', ')}]`).join(', ')} to ${flags.out}\n`);
      } finally {
        await clip.dispose();
      }
    });
}
