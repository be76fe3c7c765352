// `node dist/bench/device-placements.js [--device webgpu]`: where ONNX Runtime runs each node of
// setar's graphs on a device — which fall back to its CPU provider, and how many host↔device copies
// (Memcpy nodes) that puts inside each run. Every graph of the real code paths on the tiny fixtures:
// embed (both towers), a search (hidden states, candidates, the logits head), a training step, the
// bundle encoders, for CLIP and Swin V2; placements come from ORT's per-node profile.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SafetensorsFile } from '../src/io/safetensors.js';
import type { FamilyModel } from '../src/models/family.js';
import { resolveFamily } from '../src/models/registry.js';
import type { DeviceRequest } from '../src/runtime/device.js';
import type { Resident } from '../src/runtime/device-tensor.js';
import { builtinDevices } from '../src/runtime/devices.js';
import { Session } from '../src/runtime/session.js';
import { Evaluator } from '../src/search/evaluator.js';
import { tensor, type Tensor } from '../src/tensor.js';
import { loraAdapters } from '../src/train/adapters.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const repo = resolve(here, here.includes('/dist/') ? '../..' : '..');
const fixtures = join(process.env.SETAR_SHARED ?? resolve(repo, '..', 'shared'), 'fixtures');
const args = process.argv.slice(2);
const request = (args[args.indexOf('--device') + 1] ?? 'webgpu') as DeviceRequest;
const device = await builtinDevices().resolve(args.includes('--device') ? request : 'webgpu');
const dir = mkdtempSync(join(tmpdir(), 'setar-placements-'));
process.env.SETAR_CACHE_DIR ??= join(dir, 'cache');
const profile = join(dir, 'p-');

function pixelsOf(model: string): Tensor<'float32'> {
  const f = SafetensorsFile.open(join(fixtures, model, 'reference.safetensors'));
  try {
    return tensor('float32', f.readFloat32('pixel_values'), f.entry('pixel_values').shape, 'pixel_values');
  } finally {
    f.close();
  }
}

/** Every graph a family's model runs in setar's commands, each run once or more. */
async function exercise(name: string, target: string, trainTarget: string): Promise<void> {
  const model: FamilyModel = await resolveFamily(join(fixtures, name)).load(join(fixtures, name), { device, profile });
  const pixels = pixelsOf(name);
  const b = pixels.dims[0]!;
  const labels = model.defaultLabels() ?? ['tench', 'kite', 'coonhound', 'tvmonitor'];
  const template = model.family.defaults.template ?? '{}';
  try {
    await model.embed({ pixels, ...(model.family.defaults.template ? { texts: ['a photo of a tench'] } : {}) }, { local: true });
    // the search: hidden states kept, a candidate per tower, the logits head
    const subject = await model.searchSubject(labels, { template });
    async function* batches() {
      yield { pixels, labels: Int32Array.from({ length: b }, (_, i) => i % labels.length) };
    }
    const evaluator = await Evaluator.create(subject, batches(), { objective: { kind: 'loss', metric: 'locoop_loss' }, topK: 1, lambda: 0.1, usePredLabel: false, temperature: 1, recallLevel: 0.95 }, true);
    for (const t of subject.towers) {
      const slot = { tower: t.tower, weight: 'W_up', layer: t.layers[t.layers.length - 1]! } as const;
      await evaluator.beginSlot(slot);
      await evaluator.measure(slot);
    }
    evaluator.release();
    await subject.release();
    // one training step (LoRA on the target layers)
    const adapters = loraAdapters(model, { r: 2, alpha: 4, targetModules: [trainTarget], rng: () => 0.3 });
    const plan = new Map(adapters.map((a) => [a.prefix, { rank: a.rank, scaling: a.scaling }]));
    const setup = await model.trainSetup(plan, { topK: 1, lambda: 0.1, usePredLabel: false }, { labels, template });
    const train = await Session.create(setup.graph.bytes, `${name} train`, { executionProviders: device.executionProviders, profile });
    const feeds: Record<string, Resident> = { ...setup.feeds, pixel_values: pixels, labels_onehot: tensor('float32', Float32Array.from({ length: b * labels.length }, (_, i) => (i % labels.length === 0 ? 1 : 0)), [b, labels.length]) };
    for (const n of train.inputNames) if (model.isSwappable(n)) feeds[n] = await model.residentMatrix(n);
    for (const a of adapters) {
      feeds[`${a.prefix}.lora_A`] = tensor('float32', a.A, [a.shape[1], a.rank]);
      feeds[`${a.prefix}.lora_B`] = tensor('float32', a.B.map(() => 0.01), [a.rank, a.shape[0]]);
    }
    await train.run(feeds);
    await train.release();
    // the bundle's encoder (weights baked)
    const parts = await model.bundleParts(labels, model.family.defaults.template ? [template] : []);
    const enc = await Session.create(parts.encoder, `${name} bundle encoder`, { executionProviders: device.executionProviders, profile });
    await enc.run({ pixel_values: pixels });
    await enc.release();
  } finally {
    await model.dispose();
  }
  void target;
}

interface ProfileEvent { readonly cat: string; readonly name: string; readonly args: { readonly op_name: string; readonly provider: string } }

try {
  console.log(`placements on ${device.name} (${device.executionProviders.join(', ')}), from ORT's per-node profiles`);
  await exercise('clip-tiny-a', 'visual', 'mlp.fc1');
  await exercise('swinv2-tiny-a', 'visual', 'intermediate.dense');
  console.log('\n| graph (session) | nodes | on the CPU provider | copies per run (Memcpy) |\n|---|---:|---|---:|');
  const rows = new Map<string, { nodes: number; cpu: Map<string, number>; copies: number }>();
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.json')).sort()) {
    const session = /^p-(.*?)-\d+_\d{4}-\d\d-\d\d_[\d-]+_\d+\.json$/.exec(f)?.[1] ?? f;
    const events = JSON.parse(readFileSync(join(dir, f), 'utf8')) as ProfileEvent[];
    const seen = new Set<string>();
    const row = { nodes: 0, cpu: new Map<string, number>(), copies: 0 };
    for (const e of events) {
      if (e.cat !== 'Node' || !e.name.endsWith('_kernel_time') || seen.has(e.name)) continue;
      seen.add(e.name);
      row.nodes++;
      if (e.args.op_name.startsWith('Memcpy')) row.copies++;
      else if (e.args.provider === 'CPUExecutionProvider') row.cpu.set(e.args.op_name, (row.cpu.get(e.args.op_name) ?? 0) + 1);
    }
    if (!rows.has(session)) rows.set(session, row);
  }
  for (const [s, r] of rows) console.log(`| ${s} | ${r.nodes} | ${r.cpu.size ? [...r.cpu].map(([op, n]) => `${op} ${n}`).join(', ') : '—'} | ${r.copies} |`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
