import { copyFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { clipLogits } from '../../src/models/clip/logits.js';
import type { ClipModel } from '../../src/models/clip/model.js';
import { tensor } from '../../src/tensor.js';
import { assertRelMax } from './close.js';
import { fixture } from './fixtures.js';
import type { TorchZipTensor } from './torch-zip.js';

/** The held-out tiny CLIP with OpenAI's float64 reference outputs. */
export const CLIP_TINY = fixture('clip-tiny-a');

/** Tokenizer and preprocessor files of the fixture (everything but the weights and config). */
export const CLIP_TINY_SIDE_FILES = ['vocab.json', 'merges.txt', 'special_tokens_map.json', 'tokenizer_config.json', 'preprocessor_config.json'];

/** Every tensor of clip-tiny-a's model.safetensors (all F32), as torch.save would get them; `scale` multiplies every value. */
export function clipTinyTensors(scale = 1): Record<string, TorchZipTensor> {
  const f = SafetensorsFile.open(join(CLIP_TINY, 'model.safetensors'));
  try {
    const out: Record<string, TorchZipTensor> = {};
    for (const [name, e] of f.entries) {
      const data = f.readFloat32(name);
      if (scale !== 1) for (let i = 0; i < data.length; i++) data[i]! *= scale;
      out[name] = { dtype: 'F32', shape: [...e.shape], data };
    }
    return out;
  } finally {
    f.close();
  }
}

/** The int64 `position_ids` buffers transformers < 4.31 saved with CLIP weights (77 text, 17 vision positions). */
export function positionIdBuffers(): Record<string, TorchZipTensor> {
  return {
    'text_model.embeddings.position_ids': { dtype: 'I64', shape: [1, 77], data: Array.from({ length: 77 }, (_, i) => i) },
    'vision_model.embeddings.position_ids': { dtype: 'I64', shape: [1, 17], data: Array.from({ length: 17 }, (_, i) => i) },
  };
}

/** Copies the fixture's tokenizer and preprocessor files into `dir` (created). */
export function copyClipTinySideFiles(dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (const f of CLIP_TINY_SIDE_FILES) copyFileSync(join(CLIP_TINY, f), join(dir, f));
}

// Tolerance from the fixture README: float32 against the float64 reference, per tensor,
// max |x − ref| ≤ 1e-5 · max |ref| (PyTorch's own float32 run reaches ≤ 1.2e-6).
const REL = 1e-5;

/**
 * Asserts that `model` reproduces clip-tiny-a's float64 reference: image_embeds,
 * image_embeds_local, text_embeds (OpenAI ids) and both logits.
 */
export async function assertClipTinyReference(model: ClipModel, label: string): Promise<void> {
  const ref = SafetensorsFile.open(join(CLIP_TINY, 'reference.safetensors'));
  try {
    const f64 = (n: string) => ref.read(n).data as Float64Array;
    const px = ref.read('pixel_values');
    const img = await model.encodeImages(tensor('float32', px.data as Float32Array, px.shape, 'pixel_values'));
    const txt = await model.encodeTokenIds({ ids: ref.read('input_ids').data as Int32Array, batch: 6, length: 77 });
    assertRelMax(img.image_embeds.data, f64('image_embeds'), `${label}: image_embeds`, REL);
    assertRelMax(img.image_embeds_local!.data, f64('image_embeds_local'), `${label}: image_embeds_local`, REL);
    assertRelMax(txt.data, f64('text_embeds'), `${label}: text_embeds`, REL);
    assertRelMax(clipLogits(img.image_embeds, txt, model.logitScale).data, f64('logits_per_image'), `${label}: logits_per_image`, REL);
    assertRelMax(clipLogits(img.image_embeds_local!, txt, model.logitScale).data, f64('logits_per_image_local'), `${label}: logits_per_image_local`, REL);
  } finally {
    ref.close();
  }
}
