// CLIP (clip-tiny-a) and Swin V2 (swinv2-tiny-a) on a device vs the fixtures' float64 references:
// max |x − ref| / max |ref| per tensor, as the project's parity tests measure it.
import { ClipModel } from '../../dist/src/models/clip/model.js';
import { SwinV2Model } from '../../dist/src/models/swinv2/model.js';
import { SafetensorsFile } from '../../dist/src/io/safetensors.js';
import { tensor } from '../../dist/src/tensor.js';
const ep = process.argv[2] ?? 'webgpu';
const F = '/work/shared/fixtures';
const rel = (a, r) => { let e = 0, m = 0; for (let i = 0; i < r.length; i++) { e = Math.max(e, Math.abs(a[i] - r[i])); m = Math.max(m, Math.abs(r[i])); } return e / m; };
const out = {};
{
  const ref = SafetensorsFile.open(`${F}/clip-tiny-a/reference.safetensors`);
  const f64 = (n) => ref.read(n).data;
  const px = ref.read('pixel_values');
  const pixels = tensor('float32', px.data, px.shape);
  const ids = { ids: ref.read('input_ids').data, batch: 6, length: 77 };
  const m = await ClipModel.load(`${F}/clip-tiny-a`, { threads: 2, executionProviders: [ep] });
  let t0 = performance.now();
  const img = await m.encodeImages(pixels);
  out.clip_image_ms = +(performance.now() - t0).toFixed(0);
  out.image_embeds = rel(img.image_embeds.data, f64('image_embeds'));
  out.image_embeds_local = rel(img.image_embeds_local.data, f64('image_embeds_local'));
  t0 = performance.now();
  const txt = await m.encodeTokenIds(ids);
  out.clip_text_ms = +(performance.now() - t0).toFixed(0);
  out.text_embeds = rel(txt.data, f64('text_embeds'));
  m.setWeight('vision_model.encoder.layers.0.mlp.fc1.weight', Float32Array.from(f64('pruned_vision_fc1_weight')));
  out.pruned_image_embeds = rel((await m.encodeImages(pixels)).image_embeds.data, f64('pruned_image_embeds'));
  const h0 = await m.visionEmbeddings(pixels);
  out.vision_pre_layrnorm_output = rel(h0.data, f64('vision_pre_layrnorm_output'));
  await m.dispose(); ref.close();
}
{
  const ref = SafetensorsFile.open(`${F}/swinv2-tiny-a/reference.safetensors`);
  const f64 = (n) => ref.read(n).data;
  const px = ref.read('pixel_values');
  const m = await SwinV2Model.load(`${F}/swinv2-tiny-a`, { threads: 2, executionProviders: [ep] });
  const t0 = performance.now();
  const o = await m.classify(tensor('float32', px.data, px.shape));
  out.swin_ms = +(performance.now() - t0).toFixed(0);
  out.swin_logits = rel(o.logits.data, f64('logits'));
  out.swin_logits_local = rel(o.logits_local.data, f64('logits_local'));
  await m.dispose(); ref.close();
}
console.log(ep, JSON.stringify(out, (k, v) => (typeof v === 'number' && v < 1 ? +v.toExponential(2) : v)));
