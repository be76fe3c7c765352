// Which nodes of each project graph ORT places on the WebGPU EP and which fall back to CPU, from
// ORT's per-node profile (every session profiled by profile-hook.mjs); also Memcpy nodes (host↔device
// copies inside a run) and the time spent per provider. Also checks the training graphs and the
// bundle's baked image encoder against their CPU outputs.
import { readdirSync, readFileSync, rmSync } from 'node:fs';
import { installProfiling, created } from './profile-hook.mjs';
const DIR = '/tmp/setar-placements';
rmSync(DIR, { recursive: true, force: true });
installProfiling(DIR);
const { ClipModel } = await import('../../dist/src/models/clip/model.js');
const { SwinV2Model } = await import('../../dist/src/models/swinv2/model.js');
const { Session } = await import('../../dist/src/runtime/session.js');
const { SafetensorsFile } = await import('../../dist/src/io/safetensors.js');
const { tensor } = await import('../../dist/src/tensor.js');
const { loraAdapters, swinLoraAdapters } = await import('../../dist/src/train/adapters.js');
const { clipTrainGraph } = await import('../../dist/src/train/clip-train-graph.js');
const { swinTrainGraph } = await import('../../dist/src/train/swin-train-graph.js');
const { swinV2ClassifierGraph } = await import('../../dist/src/models/swinv2/graph.js');
const { isSwappable } = await import('../../dist/src/models/clip/weights.js');
const { isSwappable: isSwinSwappable } = await import('../../dist/src/models/swinv2/weights.js');
const { mulberry32 } = await import('../../dist/src/models/clip/random.js');
const F = '/work/shared/fixtures';
const EPS = ['webgpu'];
const rel = (a, r) => { let e = 0, m = 0; for (let i = 0; i < r.length; i++) { e = Math.max(e, Math.abs(a[i] - r[i])); m = Math.max(m, Math.abs(r[i])); } return e / m; };
const labels = [];
const label = (l) => labels.push([created.length, l]);
const report = {};

// CLIP inference sessions
const cref = SafetensorsFile.open(`${F}/clip-tiny-a/reference.safetensors`);
const px = cref.read('pixel_values');
const pixels = tensor('float32', px.data, px.shape);
const ids = { ids: cref.read('input_ids').data, batch: 6, length: 77 };
label('clip inference (embeddings, tower:0:1, layers:0:1, tower:1:0, text tower)');
const clip = await ClipModel.load(`${F}/clip-tiny-a`, { threads: 2, executionProviders: EPS });
await clip.encodeImages(pixels);
const h1 = await clip.visionLayers(await clip.visionEmbeddings(pixels), 0, 1);
await clip.visionFrom(h1, 1, { local: false });
await clip.encodeTokenIds(ids);

// training graphs: one step on each device, outputs compared
async function trainStep(bytes, feeds, name) {
  const out = {};
  for (const ep of ['cpu', 'webgpu']) {
    label(ep === 'webgpu' ? name : '(cpu reference, not reported)');
    const s = await Session.create(bytes, name, { threads: 2, executionProviders: [ep] });
    out[ep] = await s.run(feeds);
    await s.release();
  }
  const diffs = {};
  for (const k of Object.keys(out.cpu)) diffs[k] = +rel(out.webgpu[k].data, out.cpu[k].data).toExponential(2);
  const worstGrad = Math.max(...Object.entries(diffs).filter(([k]) => k.startsWith('grad')).map(([, v]) => v));
  const scalars = Object.fromEntries(Object.keys(out.cpu).filter((k) => !k.startsWith('grad')).map((k) => [k, `cpu ${out.cpu[k].data[0]} / webgpu ${out.webgpu[k].data[0]}`]));
  report[name] = { ...scalars, worst_gradient_rel: worstGrad, gradients: Object.keys(diffs).filter((k) => k.startsWith('grad')).length };
}
{
  const r = mulberry32(1);
  const adapters = loraAdapters(clip, { r: 4, alpha: 8, targetModules: ['mlp.fc1'], rng: r });
  for (const a of adapters) a.B.forEach((_, i) => (a.B[i] = (r() - 0.5) * 0.1)); // non-zero B so every gradient is non-trivial
  const plan = new Map(adapters.map((a) => [a.prefix, { rank: a.rank, scaling: a.scaling }]));
  const g = clipTrainGraph(clip.config, clip.source, plan, clip.logitScale, { topK: 2, lambda: 0.25, usePredLabel: false });
  const C = 6;
  const feeds = {
    pixel_values: pixels,
    labels_onehot: tensor('float32', Float32Array.from({ length: 5 * C }, (_, i) => (i % C === Math.floor(i / C) ? 1 : 0)), [5, C]),
    text_hidden: await clip.textEmbeddings(ids),
    pool_index: tensor('int64', BigInt64Array.from(clip.poolPositions(ids), (p, i) => BigInt(i * 77 + p)), [C]),
  };
  label('(probe, not reported)');
  const probe = await Session.create(g.bytes, 'probe', { threads: 2 });
  for (const n of probe.inputNames) if (isSwappable(n)) feeds[n] = clip.matrix(n);
  await probe.release();
  for (const a of adapters) {
    feeds[`${a.prefix}.lora_A`] = tensor('float32', a.A, [a.shape[1], a.rank]);
    feeds[`${a.prefix}.lora_B`] = tensor('float32', a.B, [a.rank, a.shape[0]]);
  }
  await trainStep(g.bytes, feeds, 'clip_train');
}

// Swin inference + training + baked classifier (the Swin bundle's image_encoder.onnx)
const sref = SafetensorsFile.open(`${F}/swinv2-tiny-a/reference.safetensors`);
const spx = sref.read('pixel_values');
const spixels = tensor('float32', spx.data, spx.shape);
label('swin inference');
const swin = await SwinV2Model.load(`${F}/swinv2-tiny-a`, { threads: 2, executionProviders: EPS });
await swin.classify(spixels);
{
  const r = mulberry32(2);
  const adapters = swinLoraAdapters(swin, { r: 4, alpha: 8, targetModules: ['intermediate.dense'], rng: r });
  for (const a of adapters) a.B.forEach((_, i) => (a.B[i] = (r() - 0.5) * 0.1));
  const plan = new Map(adapters.map((a) => [a.prefix, { rank: a.rank, scaling: a.scaling }]));
  const g = swinTrainGraph(swin.config, swin.tensorSource, plan, { topK: 2, lambda: 0.25, usePredLabel: false });
  const B = spx.shape[0], C = swin.numLabels;
  const feeds = { pixel_values: spixels, labels_onehot: tensor('float32', Float32Array.from({ length: B * C }, (_, i) => (i % C === Math.floor(i / C) % C ? 1 : 0)), [B, C]) };
  label('(probe, not reported)');
  const probe = await Session.create(g.bytes, 'probe', { threads: 2 });
  for (const n of probe.inputNames) if (isSwinSwappable(n)) feeds[n] = swin.matrix(n);
  await probe.release();
  for (const a of adapters) {
    feeds[`${a.prefix}.lora_A`] = tensor('float32', a.A, [a.shape[1], a.rank]);
    feeds[`${a.prefix}.lora_B`] = tensor('float32', a.B, [a.rank, a.shape[0]]);
  }
  await trainStep(g.bytes, feeds, 'swin_train');
}
{
  const bytes = swinV2ClassifierGraph(swin.config, swin.tensorSource, { bakeWeights: (n) => swin.matrix(n).data });
  label('swin bundle classifier (baked)');
  const s = await Session.create(bytes, 'bundle_classifier', { threads: 2, executionProviders: EPS });
  const o = await s.run({ pixel_values: spixels });
  report.swin_bundle = { logits: +rel(o.logits.data, sref.read('logits').data).toExponential(2), logits_local: +rel(o.logits_local.data, sref.read('logits_local').data).toExponential(2) };
  await s.release();
}
// CLIP bundle image encoder: the same graph createBundle writes (imageEncoderOnnx is module-private; rebuilt here from the exported pieces)
{
  const { GraphBuilder } = await import('../../dist/src/onnx/graph-builder.js');
  const { visionEmbeddings, visionTower } = await import('../../dist/src/models/clip/graph.js');
  const { encoderLayerWeights, layerTensorName, visionEmbeddingsWeights, visionHeadWeights } = await import('../../dist/src/models/clip/weights.js');
  const c = clip.config, v = c.vision_config, grid = clip.grid;
  const g = new GraphBuilder('setar_image_encoder');
  g.bakeWeights = (name) => clip.matrix(name).data;
  const x = g.input('pixel_values', 'FLOAT', ['batch', 3, v.image_size, v.image_size]);
  const h0 = visionEmbeddings(g, x, visionEmbeddingsWeights(clip.source), { hidden: v.hidden_size, channels: 3, patch: v.patch_size, grid, eps: v.layer_norm_eps });
  const layers = [], prefixes = [];
  for (let i = 0; i < v.num_hidden_layers; i++) { layers.push(encoderLayerWeights(clip.source, c, 'vision', i)); prefixes.push(layerTensorName('vision', i, '').slice(0, -1)); }
  const out = visionTower(g, h0, { layers, prefixes }, visionHeadWeights(clip.source, c), { heads: v.num_attention_heads, eps: v.layer_norm_eps, act: v.hidden_act, causal: false }, { grid, local: true });
  g.output(out.image_embeds, 'image_embeds', 'FLOAT', ['batch', c.projection_dim]);
  g.output(out.image_embeds_local, 'image_embeds_local', 'FLOAT', ['batch', grid, grid, c.projection_dim]);
  label('clip bundle image encoder (baked)');
  const s = await Session.create(g.toBytes(), 'bundle_image_encoder', { threads: 2, executionProviders: EPS });
  const o = await s.run({ pixel_values: pixels });
  report.clip_bundle = { image_embeds: +rel(o.image_embeds.data, cref.read('image_embeds').data).toExponential(2), image_embeds_local: +rel(o.image_embeds_local.data, cref.read('image_embeds_local').data).toExponential(2) };
  await s.release();
}
await clip.dispose();
await swin.dispose();

// read the profiles
const files = readdirSync(DIR).filter((f) => f.endsWith('.json'));
const bySession = new Map();
for (const f of files) bySession.set(Number(/^s(\d+)_/.exec(f)[1]), JSON.parse(readFileSync(`${DIR}/${f}`, 'utf8')));
labels.push([created.length, 'end']);
for (let li = 0; li < labels.length - 1; li++) {
  const [from, name] = labels[li];
  const to = labels[li + 1][0];
  const cpuOps = new Map();
  const memcpy = new Map();
  const time = {};
  let nodes = 0;
  for (let s = from; s < to; s++) {
    const ev = bySession.get(s);
    if (!ev) continue;
    const seen = new Set();
    for (const e of ev) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time')) continue;
      const { op_name: op, provider } = e.args;
      time[provider] = (time[provider] ?? 0) + e.dur;
      if (seen.has(e.name)) continue; // count each node once (several runs per session)
      seen.add(e.name);
      nodes++;
      if (op.startsWith('Memcpy')) memcpy.set(op, (memcpy.get(op) ?? 0) + 1);
      else if (provider === 'CPUExecutionProvider') cpuOps.set(op, (cpuOps.get(op) ?? 0) + 1);
    }
  }
  if (name.startsWith('(')) continue;
  console.log(`${name}: ${nodes} nodes; on CPU: ${JSON.stringify(Object.fromEntries(cpuOps))}; memcpy: ${JSON.stringify(Object.fromEntries(memcpy))}; kernel µs by provider: ${JSON.stringify(time)}`);
}
console.log(JSON.stringify(report, null, 1));
