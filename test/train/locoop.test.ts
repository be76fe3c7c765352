import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAndPreprocess } from '../../src/image/preprocess.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { readLocoopContext } from '../../src/models/locoop/context.js';
import { locoopInputsEmbeds, truncateLocoopIds } from '../../src/models/locoop/prompt.js';
import { ClipTokenizer } from '../../src/models/clip/tokenizer.js';
import type { FamilyModel } from '../../src/models/family.js';
import { loadModel } from '../../src/models/registry.js';
import { locoopFamily } from '../../src/models/locoop/family.js';
import { Session } from '../../src/runtime/session.js';
import { ObjectiveAccumulator } from '../../src/search/objective.js';
import { SeededRng } from '../../src/rng.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { loraAdapters } from '../../src/train/adapters.js';
import { resolveFinetuneConfig, type FinetuneFlags } from '../../src/train/config.js';
import { runFinetune } from '../../src/train/finetune.js';
import { defaultTopK } from '../../src/ood/locoop.js';
import { dasslEpochLr } from '../../src/train/schedule.js';
import { drawShots } from '../../src/train/shots.js';
import { assertRelMax } from '../helpers/close.js';
import { runKilledAndResumed } from '../helpers/kill-resume.js';
import { ClipF64 } from '../helpers/clip-f64.js';
import { fixture, REPO_ROOT } from '../helpers/fixtures.js';
import { writeTestImage } from '../helpers/images.js';
import { runPython, torchPython } from '../helpers/torch-python.js';
import { weightsOnlyScan } from '../helpers/weights-only.js';
import { ZipFile } from '../../src/io/zip-reader.js';
import { DASSL_CHECKPOINT } from '../models/locoop/fixture.js';

const MODEL = fixture('clip-tiny-a');
const classes = ['bird', 'cat', 'dog', 'fish'];
const LOSS = { topK: 2, lambda: 0.25, usePredLabel: false };
// float32 against float64, per tensor: 1e-5 of the largest value (clip-tiny-a's README)
const REL = 1e-5;

let dir = '';
let val = '';

/** The toy images preprocessed for `model`, with their labels. */
async function toyBatch(model: FamilyModel): Promise<{ px: Tensor<'float32'>; labels: number[]; onehot: Tensor<'float32'> }> {
  const files = classes.flatMap((c) => [0, 1, 2].map((i) => join(val, c, `${i}.jpg`)));
  const labels = classes.flatMap((_, c) => [c, c, c]);
  const s = model.preprocess.cropSize;
  const data = new Float32Array(files.length * 3 * s * s);
  for (let i = 0; i < files.length; i++) data.set(await loadAndPreprocess(files[i]!, model.preprocess), i * 3 * s * s);
  const onehot = new Float32Array(files.length * classes.length);
  labels.forEach((y, i) => (onehot[i * classes.length + y] = 1));
  return { px: tensor('float32', data, [files.length, 3, s, s], 'pixel_values'), labels, onehot: tensor('float32', onehot, [files.length, classes.length], 'labels_onehot') };
}

/** The LoCoOp objective the search computes (float64 over float32 logits) from the model's inference path. */
async function inferenceObjective(model: FamilyModel, px: Tensor<'float32'>, labels: number[]) {
  const classifier = await model.classifier(classes, { template: '{}.' });
  try {
    const { global, local } = await classifier.logits(px, true);
    const acc = new ObjectiveAccumulator({ objective: { kind: 'loss', metric: 'locoop_loss' }, ...LOSS, temperature: 100, recallLevel: 0.95 });
    acc.add(global, local!, labels);
    return acc.result();
  } finally {
    await classifier.release();
  }
}

describe('LoCoOp training (setar finetune --method locoop)', () => {
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-locoop-train-'));
    process.env.SETAR_CACHE_DIR = join(dir, 'cache');
    val = join(dir, 'val');
    let k = 0;
    for (const c of classes) for (let i = 0; i < 3; i++) await writeTestImage(join(val, c, `${i}.jpg`), k++);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('Dassl\'s schedule, the default K (SPEC §9\'s share of the classes) and the K-shot draw', () => {
    // constant warm-up epoch at 1e-5, then CosineAnnealingLR(T_max = 50) stepped once per epoch from the base lr
    assert.equal(dasslEpochLr(0.002, 0, 50, 1, 1e-5), 1e-5);
    assert.equal(dasslEpochLr(0.002, 1, 50, 1, 1e-5), 0.002);
    assert.ok(Math.abs(dasslEpochLr(0.002, 2, 50, 1, 1e-5) - 0.0019980267284282717) < 1e-18); // torch's CosineAnnealingLR after one step (the Dassl fixture's lr)
    assert.ok(Math.abs(dasslEpochLr(0.002, 49, 50, 1, 1e-5) - 0.002 * (1 + Math.cos((48 * Math.PI) / 50)) / 2) < 1e-18);
    // 200 of ImageNet's 1,000 classes: the same share of fewer, at least 1
    assert.deepEqual([1000, 100, 14, 5].map((c) => defaultTopK(locoopFamily.defaults.contextTraining!.topKShare, c)), [200, 20, 3, 1]);
    const labels = Int32Array.from([0, 0, 0, 0, 1, 1, 2, 2, 2]);
    const a = drawShots(labels, 3, 2, new SeededRng(3));
    const b = drawShots(labels, 3, 2, new SeededRng(3));
    assert.deepEqual(a, b);
    assert.equal(a.indices.length, 6);
    assert.deepEqual(a.indices.map((i) => labels[i]), [0, 0, 1, 1, 2, 2]);
    assert.equal(new Set(a.indices).size, 6);
    assert.deepEqual(drawShots(labels, 3, 3, new SeededRng(3)).short, [{ label: 1, images: 2 }]);
    assert.throws(() => drawShots(labels, 3, 0, new SeededRng(3)), /shots must be a positive integer, got 0/);
  });

  it('the training graph splices the context as the inference path does: same LoCoOp loss as the search objective', async () => {
    const model = await loadModel(MODEL, { threads: 1, locoopInit: { phrase: 'a photo of a', seed: 1 } });
    const pc = model.promptContext!;
    assert.equal(pc.n, 4);
    const { graph, feeds } = await pc.trainSetup(LOSS, { labels: classes, template: '{}.' });
    const session = await Session.create(graph.bytes, 'locoop_train', { threads: 1, memoryArena: true });
    try {
      const { px, labels, onehot } = await toyBatch(model);
      const all: Record<string, Tensor> = { ...feeds, pixel_values: px, labels_onehot: onehot, ctx: tensor('float32', pc.value(), [4, 48]) };
      for (const n of session.inputNames) if (model.isSwappable(n)) all[n] = model.matrix(n);
      const out = await session.run(all);
      const want = await inferenceObjective(model, px, labels);
      const v = (k: string) => (out[k]!.data as Float32Array)[0]!;
      // float32 graph vs float64 accumulation over float32 logits: 1e-5 relative
      for (const [k, w] of [['locoop_loss', want.locoop_loss], ['loss_id', want.loss_id], ['loss_ood', want.loss_ood]] as const) {
        assert.ok(Math.abs(v(k) - w) <= 1e-5 * Math.abs(w), `${k}: graph ${v(k)} vs objective ${w}`);
      }
      assert.ok(v('n_ood') > 0, 'some patches are OOD, so the entropy term is exercised');
      assert.deepEqual(graph.gradients, new Map([['ctx', 'grad:ctx']]));
    } finally {
      await session.release();
      await model.dispose();
    }
  });

  it('the context\'s gradient through the whole frozen text tower matches central finite differences (directional)', async (t) => {
    const model = await loadModel(MODEL, { threads: 1, locoopInit: { seed: 4 }, nCtx: 6 });
    const pc = model.promptContext!;
    const { px, onehot } = await toyBatch(model);
    const ctx = pc.value();
    const sessions: Session[] = [];
    /** The training graph at λ: loss parts and the context's gradient at a context. */
    const graphAt = async (lambda: number) => {
      const { graph, feeds } = await pc.trainSetup({ ...LOSS, lambda }, { labels: classes, template: '{}.' });
      const session = await Session.create(graph.bytes, 'locoop_train', { threads: 1, memoryArena: true });
      sessions.push(session);
      const base: Record<string, Tensor> = { ...feeds, pixel_values: px, labels_onehot: onehot };
      for (const n of session.inputNames) if (model.isSwappable(n)) base[n] = model.matrix(n);
      return async (c: Float32Array) => {
        const o = await session.run({ ...base, ctx: tensor('float32', c, [6, 48]) });
        const v = (k: string) => (o[k]!.data as Float32Array)[0]!;
        return { loss: v('locoop_loss'), lossOod: v('loss_ood'), ood: v('n_ood'), grad: o['grad:ctx']!.data as Float32Array };
      };
    };
    try {
      const rng = new SeededRng(11);
      const direction = () => {
        const d = Float32Array.from(ctx, () => rng.next() * 2 - 1);
        const norm = Math.sqrt(d.reduce((x, y) => x + y * y, 0));
        return d.map((x) => x / norm);
      };
      const dot = (g: Float32Array, d: Float32Array) => g.reduce((a, x, i) => a + x * d[i]!, 0);
      const moved = (d: Float32Array, e: number) => Float32Array.from(ctx, (x, i) => x + e * d[i]!);

      // λ = 0: loss_id alone, smooth everywhere. Its float32 value (~4.2) carries ~5e-6 of rounding noise
      // across inputs, 1e-3 in the quotient at ε 3e-3, where the curvature term ε²·f'''/6 is of the
      // same order: 1e-3 + 5e-3·|g·d| (measured: within 1.1e-3 relative).
      const at0 = await graphAt(0);
      const g0 = (await at0(ctx)).grad;
      for (let k = 0; k < 3; k++) {
        const d = direction();
        const eps = 3e-3;
        const numeric = ((await at0(moved(d, eps))).loss - (await at0(moved(d, -eps))).loss) / (2 * eps);
        const analytic = dot(g0, d);
        t.diagnostic(`loss_id, direction ${k}: analytic ${analytic.toPrecision(6)}, numeric ${numeric.toPrecision(6)}`);
        assert.ok(Math.abs(analytic - numeric) <= 1e-3 + 5e-3 * Math.abs(numeric), `loss_id: analytic ${analytic} vs numeric ${numeric}`);
        assert.ok(Math.abs(numeric) > 0.1, `the direction moves the loss (${numeric})`);
      }

      // The entropy term: the gradient is linear in λ, so (g(λ = 1) − g(0)) is loss_ood's gradient. loss_ood
      // is smooth only between OOD-mask flips (the mask comes from comparisons, SPEC §5): a direction counts
      // only when the OOD count is the same at −ε, 0 and +ε, with ε 3e-4 small enough that most are. loss_ood
      // (~−1.4) resolves ~1e-7, 3e-4 in the quotient: 3e-3 + 1e-2·|g·d|.
      const at1 = await graphAt(1);
      const here = await at1(ctx);
      assert.ok(here.ood > 0, 'some patches are OOD');
      const gOod = here.grad.map((x, i) => x - g0[i]!);
      let checked = 0;
      for (let k = 0; k < 12 && checked < 3; k++) {
        const d = direction();
        const eps = 3e-4;
        const plus = await at1(moved(d, eps));
        const minus = await at1(moved(d, -eps));
        if (plus.ood !== here.ood || minus.ood !== here.ood) continue;
        const numeric = (plus.lossOod - minus.lossOod) / (2 * eps);
        const analytic = dot(gOod, d);
        t.diagnostic(`loss_ood, direction ${k}: analytic ${analytic.toPrecision(6)}, numeric ${numeric.toPrecision(6)} (${here.ood} OOD patches)`);
        assert.ok(Math.abs(analytic - numeric) <= 3e-3 + 1e-2 * Math.abs(numeric), `loss_ood: analytic ${analytic} vs numeric ${numeric}`);
        if (Math.abs(numeric) > 0.1) checked++;
      }
      assert.equal(checked, 3, 'three directions that move loss_ood without a mask flip within ±ε');
    } finally {
      for (const s of sessions) await s.release();
      await model.dispose();
    }
  });

  const flags = (out: string, extra: FinetuneFlags = {}): FinetuneFlags => ({
    model: MODEL, id: `toy=${val}`, method: 'locoop', ctxInit: 'a photo of a', shots: 2, batchSize: 4, numTrainEpochs: 3, locoopTopK: 2, out: join(dir, out), ...extra,
  });

  it('trains the context alone; writes Dassl\'s layout and ctx.safetensors; loading either reproduces the trained text features exactly', async (t) => {
    const config = resolveFinetuneConfig(null, flags('run'));
    assert.equal(config.learning_rate, 0.002);
    assert.equal(config.locoop_lambda, 0.25);
    assert.equal(config.template, '{}.');
    const r = await runFinetune(config);
    assert.equal(r.steps, 6); // 2 shots × 4 classes = 8 images, batch 4: 2 steps per epoch
    assert.equal(r.locoopTopK, 2);
    assert.deepEqual([...new Set(r.log.map((x) => x.lr))], [1e-5, 0.002, 0.002 * (1 + Math.cos(Math.PI / 3)) / 2]);
    const out = join(dir, 'run');
    assert.equal(r.context!.checkpoint, join(out, 'prompt_learner', 'model.pth.tar-3'));
    assert.equal(readFileSync(join(out, 'prompt_learner', 'checkpoint'), 'utf8'), 'model.pth.tar-3\n');
    const fromPth = readLocoopContext(r.context!.checkpoint, { nCtx: 4 });
    const fromSt = readLocoopContext(join(out, 'ctx.safetensors'));
    assert.equal(fromPth.epoch, 3);
    assert.deepEqual(fromPth.ctx, fromSt.ctx);
    // the trainer's own last state (its resume checkpoint) is what was written
    const state = JSON.parse(readFileSync(join(out, 'checkpoint', 'state.json'), 'utf8')) as { context: string; epoch: number };
    assert.equal(state.epoch, 3);
    const last = SafetensorsFile.open(join(out, 'checkpoint', state.context));
    assert.deepEqual(last.readFloat32('ctx'), fromPth.ctx);
    last.close();
    // only the context trained: it moved from the phrase's embeddings
    const tok = await ClipTokenizer.fromDir(MODEL);
    const init = await loadModel(MODEL, { threads: 1, locoopInit: { phrase: 'a photo of a', seed: 0 } });
    const initCtx = init.promptContext!.value();
    assert.deepEqual(tok.encode('a photo of a').slice(1, 5).length, 4);
    assert.ok(initCtx.some((x, i) => x !== fromPth.ctx[i]), 'the context changed');
    await init.dispose();

    // loading back: bit-identical features from either file, the float64 reference's within 1e-5
    const prompts = ['bird.', 'a cat', ''];
    const a = await loadModel(MODEL, { threads: 1, locoopCkpt: r.context!.checkpoint });
    const b = await loadModel(MODEL, { threads: 1, locoopCkpt: join(out, 'ctx.safetensors') });
    const fa = (await a.embed({ texts: prompts }, { local: false })).text_embeds!;
    const fb = (await b.embed({ texts: prompts }, { local: false })).text_embeds!;
    assert.deepEqual(fa.data, fb.data);
    await a.dispose();
    await b.dispose();
    const ref = new ClipF64(MODEL);
    const expected = prompts.flatMap((p) => [...ref.locoopTextEmbeds(truncateLocoopIds(tok.encode(p), 4), fromPth.ctx, 4)]);
    t.diagnostic(`trained context, text features vs float64: ${assertRelMax(fa.data, Float64Array.from(expected), 'trained text_embeds', REL).toExponential(2)}`);

    // only what torch's weights_only unpickler reads: plain data, OrderedDict and float tensors, no pickled object
    const zip = ZipFile.open(r.context!.checkpoint);
    try {
      assert.deepEqual([...new Set(weightsOnlyScan(zip.read('model.pth/data.pkl')))].sort(), ['collections.OrderedDict', 'torch.FloatStorage', 'torch._utils._rebuild_tensor_v2']);
    } finally {
      zip.close();
    }
    // torch.load (PyTorch, when installed; weights_only from torch 2.0, whose unpickler reads floats) as Dassl's load_model uses it keeps ctx exactly
    const py = torchPython();
    if (!py) {
      t.diagnostic('no PyTorch: torch.load cross-check skipped');
      return;
    }
    const report = JSON.parse(runPython(py, `
import json, sys, torch
ck = torch.load(sys.argv[1], map_location='cpu', weights_only=int(torch.__version__.split('.')[0]) >= 2)
sd = ck['state_dict']
ctx = sd['ctx'].clone()
# Dassl's load_model: drop the token buffers, load the rest into the prompt learner (strict=False)
del sd['token_prefix']; del sd['token_suffix']
m = torch.nn.Module(); m.ctx = torch.nn.Parameter(torch.zeros_like(ctx))
m.load_state_dict(sd, strict=False)
print(json.dumps({'keys': sorted(ck.keys()), 'epoch': ck['epoch'], 'ctx': m.ctx.detach().flatten().tolist(), 'shape': list(ctx.shape),
  'prefix': list(ck['state_dict'].keys()), 'lr': ck['optimizer']['param_groups'][0]['lr'], 'initial_lr': ck['optimizer']['param_groups'][0]['initial_lr'],
  'momentum_shape': list(ck['optimizer']['state'][0]['momentum_buffer'].shape), 'T_max': ck['scheduler']['successor']['T_max'], 'cons_lr': ck['scheduler']['cons_lr']}))
`, [r.context!.checkpoint]).trim());
    assert.deepEqual(report.keys, ['epoch', 'optimizer', 'scheduler', 'state_dict', 'val_result']);
    assert.equal(report.epoch, 3);
    assert.deepEqual(report.shape, [4, 48]);
    assert.deepEqual(Float32Array.from(report.ctx as number[]), fromPth.ctx);
    assert.deepEqual(report.momentum_shape, [4, 48]);
    assert.equal(report.initial_lr, 0.002);
    assert.equal(report.T_max, 3);
    assert.equal(report.cons_lr, 1e-5);
  });

  it('config errors: an n_ctx the phrase contradicts (naming both and the flag), method-only flags, unknown methods', async () => {
    await assert.rejects(runFinetune(resolveFinetuneConfig(null, flags('bad-n', { nCtx: 16 }))), /the context phrase "a photo of a" has 4 tokens \(n_ctx 4\), but --n-ctx 16 was given; n_ctx comes from the phrase/);
    assert.throws(() => resolveFinetuneConfig(null, flags('x', { method: 'coop' })), /--method must be one of setar-ft, lora, locoop, got 'coop'/);
    assert.throws(() => resolveFinetuneConfig(null, flags('x', { loraR: 4 })), /--lora-r \/ lora_r does not apply to --method locoop: only the context trains/);
    assert.throws(() => resolveFinetuneConfig(null, flags('x', { locoopCkpt: DASSL_CHECKPOINT })), /--ctx-init starts a new context and --locoop-ckpt continues training one: give one of them/);
    assert.throws(() => resolveFinetuneConfig(null, { ...flags('x'), model: fixture('swinv2-tiny-a') }), /makes a LoCoOp model, which needs a CLIP model, but '.*swinv2-tiny-a' holds a Swin V2 model/);
    assert.throws(() => resolveFinetuneConfig(null, { model: MODEL, id: `toy=${val}`, method: 'lora', out: join(dir, 'x') }), /--method lora needs --lora-r R/);
    // the other methods, spelled out or inferred from their flags as before
    const base = { model: MODEL, id: `toy=${val}`, out: join(dir, 'x') };
    assert.equal(resolveFinetuneConfig(null, { ...base, method: 'setar-ft', loraSettings: [['visual', 'W_up', 1, 0.25]] }).adapters.kind, 'setar');
    assert.equal(resolveFinetuneConfig(null, { ...base, loraSettings: [['visual', 'W_up', 1, 0.25]] }).adapters.kind, 'setar');
    assert.equal(resolveFinetuneConfig(null, { ...base, method: 'lora', loraR: 4 }).adapters.kind, 'lora');
    assert.equal(resolveFinetuneConfig(null, { ...base, loraR: 4 }).adapters.kind, 'lora');
    assert.throws(() => resolveFinetuneConfig(null, { ...base, method: 'lora', loraR: 4, loraSettings: [['visual', 'W_up', 1, 0.25]] }), /--lora-settings belongs to --method setar-ft/);
    // without K the default is SPEC §9's share of the classes (0.2: 200 of 1,000), resolved once the classes are known
    const c = resolveFinetuneConfig(null, { ...flags('x'), locoopTopK: undefined });
    assert.ok(c.adapters.kind === 'context' && c.adapters.top_k_share === 0.2);
    assert.equal(c.locoop_top_k, null);
    assert.equal(c.split, 'train');
    assert.equal(c.num_train_epochs, 3);
    assert.equal(resolveFinetuneConfig(null, { ...flags('x'), numTrainEpochs: undefined, batchSize: undefined }).num_train_epochs, 50);
    const notices: string[] = [];
    const r = await runFinetune(resolveFinetuneConfig(null, { ...flags('default-k'), locoopTopK: undefined, numTrainEpochs: 1 }), { notice: (l) => notices.push(l) });
    assert.equal(r.locoopTopK, 1);
    assert.deepEqual(notices, ["locoop_top_k 1: round(0.2 × 4 classes), LoCoOp's share of the classes (200 of ImageNet's 1,000; --locoop-top-k sets it)"]);
  });

  it('SeTAR+FT and LoRA on a LoCoOp model: the text tower trains on the LoCoOp prompts and the context stays bit-identical', async () => {
    // the graph's text side is the LoCoOp one: text_hidden and pool_index from the context's prompts, and the loss at B = 0 is the search objective
    const model = await loadModel(MODEL, { threads: 1, locoopCkpt: DASSL_CHECKPOINT });
    try {
      const adapters = loraAdapters(model, { r: 2, alpha: 2, targetModules: ['mlp.fc1'], rng: () => 0.5 });
      const plan = new Map(adapters.map((a) => [a.prefix, { rank: a.rank, scaling: a.scaling }]));
      const { graph, feeds } = await model.trainSetup(plan, LOSS, { labels: classes, template: '{}.' });
      assert.ok(graph.textInGraph);
      const tok = await ClipTokenizer.fromDir(MODEL);
      const rows = classes.map((c) => truncateLocoopIds(tok.encode(`${c}.`), 16));
      const length = Math.max(...rows.map((r) => r.length));
      const ids = new Int32Array(4 * length).fill(49407);
      rows.forEach((r, i) => ids.set(r, i * length));
      const ctx = readLocoopContext(DASSL_CHECKPOINT);
      const clipTables = (await import('../../src/models/clip/model.js')).ClipModel;
      const plain = await clipTables.load(MODEL, { threads: 1 });
      assert.deepEqual((feeds.text_hidden as Tensor<'float32'>).data, locoopInputsEmbeds({ ids, batch: 4, length }, ctx, plain.textEmbeddingTables()).data);
      await plain.dispose();
      assert.deepEqual([...(feeds.pool_index!.data as BigInt64Array)], rows.map((r, i) => BigInt(i * (length + 16) + r.length - 1 + 16)));
      const session = await Session.create(graph.bytes, 'train', { threads: 1, memoryArena: true });
      const { px, labels, onehot } = await toyBatch(model);
      const all: Record<string, Tensor> = { ...feeds, pixel_values: px, labels_onehot: onehot };
      for (const n of session.inputNames) if (model.isSwappable(n)) all[n] = model.matrix(n);
      for (const a of adapters) {
        all[`${a.prefix}.lora_A`] = tensor('float32', a.A, [a.shape[1], a.rank]);
        all[`${a.prefix}.lora_B`] = tensor('float32', a.B, [a.rank, a.shape[0]]);
      }
      const got = ((await session.run(all)).locoop_loss!.data as Float32Array)[0]!;
      await session.release();
      const want = (await inferenceObjective(model, px, labels)).locoop_loss;
      assert.ok(Math.abs(got - want) <= 1e-5 * Math.abs(want), `graph ${got} vs objective ${want}`);
    } finally {
      await model.dispose();
    }

    // a whole SeTAR+FT run: the context written beside the merged model is the checkpoint's, bit for bit
    const r = await runFinetune(resolveFinetuneConfig(null, {
      model: MODEL, id: `toy=${val}`, locoopCkpt: DASSL_CHECKPOINT, loraSettings: [['text', 'W_up', 1, 0.25], ['visual', 'W_up', 1, 0.25]], locoopTopK: 2, batchSize: 4, numTrainEpochs: 2, out: join(dir, 'setar-ft'),
    }));
    assert.equal(r.steps, 6);
    const before = readLocoopContext(DASSL_CHECKPOINT);
    for (const f of [r.context!.safetensors, r.context!.checkpoint]) assert.deepEqual(readLocoopContext(f).ctx, before.ctx, f);
    assert.equal(r.context!.checkpoint, join(dir, 'setar-ft', 'prompt_learner', 'model.pth.tar-2'));
    const merged = await loadModel(r.modelDir, { threads: 1, locoopCkpt: r.context!.safetensors });
    assert.equal(merged.promptContext?.n, 16);
    await merged.dispose();
  });

  it('a killed run (SIGKILL) resumes from its last epoch and ends with the same log and the same context files', async () => {
    const args = (out: string) => [join(REPO_ROOT, 'bin', 'setar.js'), 'finetune', '--method', 'locoop', '--model', MODEL, '--id', `toy=${val}`, '--ctx-init', 'a photo of a',
      '--shots', '3', '--batch-size', '2', '--num-train-epochs', '8', '--locoop-top-k', '2', '--threads', '1', '--out', out];
    await runKilledAndResumed(args, dir, 8, (killed) => assert.ok(!existsSync(join(killed, 'ctx.safetensors')), 'the killed run had not finished'));
    assert.equal(readFileSync(join(dir, 'killed', 'train_log.csv'), 'utf8'), readFileSync(join(dir, 'whole', 'train_log.csv'), 'utf8'));
    for (const f of ['ctx.safetensors', join('prompt_learner', 'model.pth.tar-8')]) {
      assert.deepEqual(readFileSync(join(dir, 'killed', f)), readFileSync(join(dir, 'whole', f)), f);
    }
  });
});
