import { describe, it } from 'node:test';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from '../../../src/io/safetensors.js';
import { assertRelMax } from '../../helpers/close.js';
import { ClipF64 } from '../../helpers/clip-f64.js';
import { fixture } from '../../helpers/fixtures.js';
import { loadReference } from './fixture.js';

// The float64 JS CLIP of test/helpers/clip-f64.ts is the reference of the LoCoOp tests on models
// no reference file exists for; here it must agree with the two float64 references that do exist
// (OpenAI's CLIP code on clip-tiny-a, and the NumPy LoCoOp tower of test/reference) to float64
// rounding: 1e-12 of each tensor's largest value.
const F64 = 1e-12;

describe('the float64 JS CLIP reference (test/helpers/clip-f64.ts)', () => {
  const dir = fixture('clip-tiny-a');
  const ref = new ClipF64(dir);

  it("reproduces clip-tiny-a's OpenAI float64 image, local and text features", () => {
    const f = SafetensorsFile.open(join(dir, 'reference.safetensors'));
    const meta = JSON.parse(readFileSync(join(dir, 'reference.json'), 'utf8')) as { token_ids_unpadded: number[][] };
    try {
      const px = f.readFloat32('pixel_values');
      const per = 3 * 32 * 32;
      const global: number[] = [];
      const local: number[] = [];
      for (let i = 0; i < 5; i++) {
        const e = ref.imageEmbeds(px.subarray(i * per, (i + 1) * per));
        global.push(...e.global);
        local.push(...e.local);
      }
      assertRelMax(Float64Array.from(global), f.read('image_embeds').data as Float64Array, 'image_embeds', F64);
      assertRelMax(Float64Array.from(local), f.read('image_embeds_local').data as Float64Array, 'image_embeds_local', F64);
      const text = meta.token_ids_unpadded.flatMap((ids) => [...ref.textEmbeds(ids)]);
      assertRelMax(Float64Array.from(text), f.read('text_embeds').data as Float64Array, 'text_embeds', F64);
    } finally {
      f.close();
    }
  });

  it("reproduces the NumPy LoCoOp tower's features (n = 4 and 16, every reference prompt)", () => {
    const { meta, tensors } = loadReference();
    try {
      for (const n of [4, 16]) {
        const ctx = tensors.read(`ctx_n${n}`).data as Float32Array;
        const out = meta.prompts.flatMap((p) => [...ref.locoopTextEmbeds(p.truncated_ids[String(n)]!, ctx, n)]);
        assertRelMax(Float64Array.from(out), tensors.read(`text_embeds_n${n}`).data as Float64Array, `text_embeds_n${n}`, F64);
      }
    } finally {
      tensors.close();
    }
  });
});
