import { shapeString, tensor, type Tensor } from '../../tensor.js';

/** L2-normalises each row of a [N, P] (or [..., P]) float tensor, in float64 then rounded to float32. */
export function l2Normalize(x: Tensor<'float32'>): Tensor<'float32'> {
  const p = x.dims[x.dims.length - 1]!;
  const out = new Float32Array(x.data.length);
  for (let r = 0; r < x.data.length / p; r++) {
    let s = 0;
    for (let i = 0; i < p; i++) s += x.data[r * p + i]! ** 2;
    const inv = 1 / Math.sqrt(s);
    for (let i = 0; i < p; i++) out[r * p + i] = x.data[r * p + i]! * inv;
  }
  return tensor('float32', out, x.dims);
}

/**
 * CLIP's logits: exp(logit_scale) · cos(image, text), computed in float64.
 * @param image [..., P] image features (global [N, P] or local [N, g, g, P])
 * @param text [T, P] text features
 * @param logitScale the stored log value (ln 100 for OpenAI CLIP)
 * @returns [..., T] float64
 */
export function clipLogits(image: Tensor<'float32'>, text: Tensor<'float32'>, logitScale: number): Tensor<'float64'> {
  const p = image.dims[image.dims.length - 1]!;
  const [t, pt] = text.dims as [number, number];
  if (pt !== p) throw new RangeError(`clipLogits: image features ${shapeString(image.dims)} and text features ${shapeString(text.dims)} differ in width`);
  const scale = Math.exp(logitScale);
  const rows = image.data.length / p;
  const tn = new Float64Array(t * p);
  for (let j = 0; j < t; j++) {
    let s = 0;
    for (let i = 0; i < p; i++) s += text.data[j * p + i]! ** 2;
    const inv = 1 / Math.sqrt(s);
    for (let i = 0; i < p; i++) tn[j * p + i] = text.data[j * p + i]! * inv;
  }
  const out = new Float64Array(rows * t);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let i = 0; i < p; i++) s += image.data[r * p + i]! ** 2;
    const inv = scale / Math.sqrt(s);
    for (let j = 0; j < t; j++) {
      let dot = 0;
      for (let i = 0; i < p; i++) dot += image.data[r * p + i]! * tn[j * p + i]!;
      out[r * t + j] = dot * inv;
    }
  }
  return tensor('float64', out, [...image.dims.slice(0, -1), t]);
}
