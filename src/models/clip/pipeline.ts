import { loadAndPreprocess } from '../../image/preprocess.js';
import { concatBatch, tensor, type Tensor } from '../../tensor.js';
import { clipLogits } from './logits.js';
import { ClipModel, type ClipModelOptions, type ImageFeatures } from './model.js';
import { ClipTokenizer, CLIP_CONTEXT_LENGTH } from './tokenizer.js';

/** SeTAR's prompt (no final period), as in the reference code. */
export const DEFAULT_TEMPLATE = 'a photo of a {}';

/** Fills a prompt template: `{}` (or `{label}`) is replaced by the class name. */
export function fillTemplate(template: string, label: string): string {
  if (!template.includes('{}') && !template.includes('{label}')) {
    throw new RangeError(`prompt template ${JSON.stringify(template)} has no '{}' placeholder for the class name`);
  }
  return template.replaceAll('{label}', label).replaceAll('{}', label);
}

/** One image's zero-shot prediction. */
export interface Prediction {
  readonly label: string;
  readonly index: number;
  readonly probability: number;
}

/**
 * A CLIP model with its tokenizer and image preprocessing: files and strings in, features out.
 *
 * @example
 * const clip = await ClipPipeline.load('clip-vit-base-patch16');
 * const top = await clip.classify(['dog.jpg'], ['dog', 'cat'], { top: 2 });
 * // [[{ label: 'dog', index: 0, probability: 0.97 }, { label: 'cat', … }]]
 */
export class ClipPipeline {
  private constructor(readonly model: ClipModel, readonly tokenizer: ClipTokenizer) {}

  static async load(dir: string, options: ClipModelOptions = {}): Promise<ClipPipeline> {
    const model = await ClipModel.load(dir, options);
    try {
      return new ClipPipeline(model, await ClipTokenizer.fromDir(dir));
    } catch (e) {
      await model.dispose();
      throw e;
    }
  }

  /** Token ids of each prompt, truncated to 77 keeping the end token (as HF's `truncation=True`). */
  tokenize(texts: readonly string[]): number[][] {
    const max = Math.min(CLIP_CONTEXT_LENGTH, this.model.config.text_config.max_position_embeddings);
    return texts.map((t, i) => {
      if (typeof t !== 'string') throw new TypeError(`prompt ${i} is not a string`);
      const ids = this.tokenizer.encode(t);
      return ids.length <= max ? ids : [...ids.slice(0, max - 1), ids[ids.length - 1]!];
    });
  }

  /** Prompts → `text_embeds` [N, P] (not normalised). */
  encodeTexts(texts: readonly string[]): Promise<Tensor<'float32'>> {
    return this.model.encodeTokenRows(this.tokenize(texts));
  }

  /** Image files → pixel_values [N, 3, S, S], preprocessed as SPEC §1 (Pillow-identical resize). */
  async preprocessFiles(files: readonly string[]): Promise<Tensor<'float32'>> {
    const s = this.model.config.vision_config.image_size;
    const per = 3 * s * s;
    const data = new Float32Array(files.length * per);
    for (let i = 0; i < files.length; i++) data.set(await loadAndPreprocess(files[i]!, { size: s }), i * per);
    return tensor('float32', data, [files.length, 3, s, s], 'pixel_values');
  }

  /** Image files → features, in batches of `batchSize` so memory stays bounded. */
  async encodeImageFiles(files: readonly string[], options: { local?: boolean; batchSize?: number } = {}): Promise<ImageFeatures> {
    const bs = options.batchSize ?? 32;
    const parts: ImageFeatures[] = [];
    for (let i = 0; i < files.length; i += bs) {
      parts.push(await this.model.encodeImages(await this.preprocessFiles(files.slice(i, i + bs)), options));
    }
    if (parts.length === 1) return parts[0]!;
    const local = parts[0]?.image_embeds_local !== undefined;
    return {
      image_embeds: concatBatch(parts.map((p) => p.image_embeds)),
      ...(local ? { image_embeds_local: concatBatch(parts.map((p) => p.image_embeds_local!)) } : {}),
    };
  }

  /** Zero-shot classification: softmax over exp(logit_scale)·cos(image, prompt) for each image; top-k per image. */
  async classify(files: readonly string[], labels: readonly string[], options: { template?: string; top?: number } = {}): Promise<Prediction[][]> {
    if (labels.length === 0) throw new RangeError('classify: the label list is empty');
    const text = await this.encodeTexts(labels.map((l) => fillTemplate(options.template ?? DEFAULT_TEMPLATE, l)));
    const { image_embeds } = await this.encodeImageFiles(files, { local: false });
    const logits = clipLogits(image_embeds, text, this.model.logitScale);
    const c = labels.length;
    const k = Math.min(options.top ?? 5, c);
    return files.map((_, i) => {
      const row = logits.data.subarray(i * c, (i + 1) * c);
      const max = Math.max(...row);
      const e = Array.from(row, (x) => Math.exp(x - max));
      const sum = e.reduce((a, b) => a + b, 0);
      return e.map((v, j) => ({ label: labels[j]!, index: j, probability: v / sum }))
        .sort((a, b) => b.probability - a.probability || a.index - b.index)
        .slice(0, k);
    });
  }

  dispose(): Promise<void> {
    return this.model.dispose();
  }
}
