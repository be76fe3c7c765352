import type { SessionOptions } from '../../runtime/session.js';
import { sliceBatch, type Tensor } from '../../tensor.js';
import type { SearchSubject, SearchTower } from '../family.js';
import { ClipLogitsHead } from './logits.js';
import type { ClipModel, ImageFeatures } from './model.js';
import type { TextLayer0 } from './prompts.js';

/**
 * CLIP's two towers as block chains for the search: the vision tower reads the validation
 * images, the text tower the class prompts (one padded batch at the entry of text layer 0, as the
 * model's prompt encoder builds it, pooled at each prompt's end token); logits are
 * exp(logit_scale)·cos of the image (global and per patch) and prompt features. Hidden states stay
 * where the device leaves them (`…Resident`): on webgpu they never come back to the host.
 */
export async function clipSearchSubject(model: ClipModel, prompts: TextLayer0, sessionOptions: SessionOptions = {}): Promise<SearchSubject> {
  const { hidden, positions } = prompts;
  const textEmbeddings = model.textHiddenStates(hidden);
  const head = await ClipLogitsHead.create(await model.textFrom(hidden, 0, positions), model.logitScale, sessionOptions);
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
