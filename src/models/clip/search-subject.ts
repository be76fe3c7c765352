import type { SessionOptions } from '../../runtime/session.js';
import { sliceBatch, type Tensor } from '../../tensor.js';
import type { SearchSubject, SearchTower } from '../family.js';
import { ClipLogitsHead } from './logits.js';
import type { ClipModel, ImageFeatures, TokenIds } from './model.js';
import type { ClipPipeline } from './pipeline.js';
import { fillTemplate } from './pipeline.js';

/**
 * CLIP's two towers as block chains for the search: the vision tower reads the validation
 * images, the text tower the class prompts (one padded batch, pooled at each prompt's end token);
 * logits are exp(logit_scale)·cos of the image (global and per patch) and prompt features.
 */
export async function clipSearchSubject(clip: ClipPipeline, labels: readonly string[], template: string, sessionOptions: SessionOptions = {}): Promise<SearchSubject> {
  const model: ClipModel = clip.model;
  const rows = clip.tokenize(labels.map((l) => fillTemplate(template, l)));
  const length = Math.max(...rows.map((r) => r.length));
  const ids = new Int32Array(rows.length * length).fill(model.config.text_config.eos_token_id);
  rows.forEach((r, i) => ids.set(r, i * length));
  const tokens: TokenIds = { ids, batch: rows.length, length };
  const positions = model.poolPositions(tokens);
  const textEmbeddings = await model.textEmbeddingsResident(tokens);
  const head = await ClipLogitsHead.create(await model.encodeTokenIds(tokens), model.logitScale, sessionOptions);
  let headText: Tensor<'float32'> | null = null;

  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  const vision: SearchTower = {
    tower: 'visual',
    layers: range(model.visionLayerCount),
    projection: true,
    readsImages: true,
    embed: (pixels) => model.visionEmbeddingsResident(pixels!),
    run: (h, from, to) => model.visionLayersResident(h, from, to),
    head: (h, from) => model.visionFromResident(h, from),
  };
  const text: SearchTower = {
    tower: 'text',
    layers: range(model.textLayerCount),
    projection: true,
    readsImages: false,
    embed: async () => textEmbeddings,
    run: (h, from, to) => model.textLayersResident(h, from, to),
    head: (h, from) => model.textFromResident(h, from, positions),
  };
  return {
    towers: [vision, text],
    async logits(outputs, start, count) {
      const img = outputs[0] as ImageFeatures;
      const txt = outputs[1] as Tensor<'float32'>;
      if (txt !== headText) {
        await head.setText(txt);
        headText = txt;
      }
      return { global: await head.logits(sliceBatch(img.image_embeds, start, count)), local: await head.logits(sliceBatch(img.image_embeds_local!, start, count)) };
    },
    release: () => head.release(),
  };
}
