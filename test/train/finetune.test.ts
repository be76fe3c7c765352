import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { ClipModel } from '../../src/models/clip/model.js';
import { ClipPipeline } from '../../src/models/clip/pipeline.js';
import { isSwappable } from '../../src/models/clip/weights.js';
import { Session } from '../../src/runtime/session.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { setarAdapters, loraAdapters, mergeAdapter } from '../../src/train/adapters.js';
import { clipTrainGraph } from '../../src/models/clip/train-graph.js';
import { resolveFinetuneConfig, type FinetuneFlags } from '../../src/train/config.js';
import { runFinetune, NonFiniteLossError } from '../../src/train/finetune.js';
import { SeededRng } from '../../src/rng.js';
import { learningRate } from '../../src/train/schedule.js';
import { Sgd } from '../../src/train/optimizer.js';
import { ObjectiveAccumulator } from '../../src/search/objective.js';
import { ClipLogitsHead } from '../../src/models/clip/logits.js';
import { fixture, REPO_ROOT } from '../helpers/fixtures.js';
import { runKilledAndResumed } from '../helpers/kill-resume.js';
import { assertRelMax } from '../helpers/close.js';
import { writeTestImage } from '../helpers/images.js';

const MODEL = fixture('clip-tiny-a');
const SETTINGS = [['visual', 'W_up', 1, 0.25], ['visual', 'W_up', 0, 0.1], ['text', 'W_up', 1, 0.25]] as const;


let dir = '';
const classes = ['bird', 'cat', 'dog', 'fish'];

describe('training engine and SeTAR+FT (clip-tiny-a)', () => {
  let val: string;
  const flags = (out: string, extra: FinetuneFlags = {}): FinetuneFlags => ({
    model: MODEL, id: `toy=${val}`, loraSettings: SETTINGS, locoopTopK: 2, batchSize: 4, numTrainEpochs: 2, out: join(dir, out), ...extra,
  });

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-ft-'));
    process.env.SETAR_CACHE_DIR = join(dir, 'cache');
    val = join(dir, 'val');
    let k = 0;
    for (const c of classes) for (let i = 0; i < 3; i++) await writeTestImage(join(val, c, `${i}.jpg`), k++);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  /** The training graph with its feeds for a batch of eval-preprocessed images. */
  async function trainSetup(kind: 'setar' | 'lora') {
    const clip = await ClipPipeline.load(MODEL, { threads: 1 });
    const model = clip.model;
    const adapters = kind === 'setar' ? await setarAdapters(model, SETTINGS) : loraAdapters(model, { r: 4, alpha: 8, targetModules: ['mlp.fc1'], rng: () => 0.5 });
    for (const a of adapters) model.setWeight(`${a.prefix}.weight`, a.base);
    const graph = clipTrainGraph(model.config, model.source, new Map(adapters.map((a) => [a.prefix, { rank: a.rank, scaling: a.scaling }])), model.logitScale, { topK: 2, lambda: 0.1, usePredLabel: false });
    const session = await Session.create(graph.bytes, 'train', { threads: 1, memoryArena: true });
    const files = classes.flatMap((c) => [0, 1, 2].map((i) => join(val, c, `${i}.jpg`)));
    const labels = classes.flatMap((_, c) => [c, c, c]);
    const px = await clip.preprocessFiles(files);
    const onehot = new Float32Array(files.length * 4);
    labels.forEach((y, i) => (onehot[i * 4 + y] = 1));
    const rows = clip.tokenize(classes.map((c) => `a photo of a ${c}`));
    const length = Math.max(...rows.map((r) => r.length));
    const ids = new Int32Array(rows.length * length).fill(49407);
    rows.forEach((r, i) => ids.set(r, i * length));
    const tokens = { ids, batch: 4, length };
    const feeds: Record<string, Tensor> = { pixel_values: px, labels_onehot: tensor('float32', onehot, [files.length, 4]) };
    feeds.text_hidden = await model.textEmbeddings(tokens);
    feeds.pool_index = tensor('int64', BigInt64Array.from(model.poolPositions(tokens), (p, i) => BigInt(i * length + p)), [4]);
    for (const n of session.inputNames) if (isSwappable(n)) feeds[n] = model.matrix(n);
    const setParams = () => {
      for (const a of adapters) {
        feeds[`${a.prefix}.lora_A`] = tensor('float32', a.A, [a.shape[1], a.rank]);
        feeds[`${a.prefix}.lora_B`] = tensor('float32', a.B, [a.rank, a.shape[0]]);
      }
    };
    setParams();
    return { clip, model, adapters, graph, session, feeds, setParams, px, labels, tokens };
  }

  it('at step 0 SeTAR+FT equals the unpruned model: merged weights, and the graph\'s LoCoOp loss equals the search objective', async () => {
    const s = await trainSetup('setar');
    try {
      for (const a of s.adapters) {
        // W' + B·A = W within float32 rounding of the SVD factors (1e-6 of the weight's scale)
        assertRelMax(mergeAdapter(a), s.model.getOriginalWeight(`${a.prefix}.weight`), `${a.prefix} merged`, 1e-6);
      }
      const out = await s.session.run(s.feeds);
      // the same loss computed the search's way on the unpruned model (ObjectiveAccumulator, float64)
      const ref = await ClipModel.load(MODEL, { threads: 1 });
      const img = await ref.encodeImages(s.px);
      const head = await ClipLogitsHead.create(await ref.encodeTokenIds(s.tokens), ref.logitScale, { threads: 1 });
      const acc = new ObjectiveAccumulator({ objective: { kind: 'loss', metric: 'locoop_loss' }, topK: 2, lambda: 0.1, usePredLabel: false, temperature: 100, recallLevel: 0.95 });
      acc.add(await head.logits(img.image_embeds), await head.logits(img.image_embeds_local!), s.labels);
      const f = acc.result();
      await head.release();
      await ref.dispose();
      const v = (k: string) => (out[k]!.data as Float32Array)[0]!;
      // float32 graph vs float64 accumulation over float32 logits: 1e-5 relative
      for (const [k, want] of [['locoop_loss', f.locoop_loss], ['loss_id', f.loss_id], ['loss_ood', f.loss_ood]] as const) {
        assert.ok(Math.abs(v(k) - want) <= 1e-5 * Math.abs(want), `${k}: graph ${v(k)} vs objective ${want}`);
      }
      assert.equal(v('n_ood') / (12 * 16) * 100, f.ood_patch_percent);
    } finally {
      await s.session.release();
      await s.clip.dispose();
    }
  });

  it('gradients of the whole LoRA-adapted CLIP loss match central finite differences (float32, directional)', async () => {
    const s = await trainSetup('setar');
    try {
      const out = await s.session.run(s.feeds);
      const rng = new SeededRng(7);
      for (const a of s.adapters) {
        for (const which of ['A', 'B'] as const) {
          const name = `${a.prefix}.lora_${which}`;
          const p = a[which];
          const grad = out[s.graph.gradients.get(name)!]!.data as Float32Array;
          // a random unit direction d: compare g·d with (L(p + εd) − L(p − εd)) / 2ε
          const d = Float32Array.from(p, () => rng.next() * 2 - 1);
          const norm = Math.sqrt(d.reduce((x, y) => x + y * y, 0));
          d.forEach((x, i) => (d[i] = x / norm));
          const analytic = grad.reduce((acc, g, i) => acc + g * d[i]!, 0);
          const orig = Float32Array.from(p);
          const lossAt = async (eps: number) => {
            for (let i = 0; i < p.length; i++) p[i] = orig[i]! + eps * d[i]!;
            s.setParams();
            return (((await s.session.run(s.feeds)).locoop_loss!.data as Float32Array)[0]!);
          };
          const eps = 1e-2;
          const numeric = ((await lossAt(eps)) - (await lossAt(-eps))) / (2 * eps);
          p.set(orig);
          s.setParams();
          // float32 loss (~3) resolves differences of ~3e-7, i.e. 1.5e-5 in the quotient; the curvature
          // term ε²·f'''/6 is below 1e-4 here: 1e-3 + 2e-2·|g·d| separates a correct rule from a wrong one
          assert.ok(Math.abs(analytic - numeric) <= 1e-3 + 2e-2 * Math.abs(numeric), `${name}: analytic ${analytic} vs numeric ${numeric}`);
        }
      }
    } finally {
      await s.session.release();
      await s.clip.dispose();
    }
  });

  it('plain LoRA: B = 0 at the start, only A/B change, the merged model equals the input at step 0', async () => {
    const s = await trainSetup('lora');
    try {
      assert.equal(s.adapters.length, 4); // mlp.fc1 of 2 vision + 2 text layers
      for (const a of s.adapters) {
        assert.ok(a.B.every((x) => x === 0));
        assert.equal(a.scaling, 2);
        assert.deepEqual(mergeAdapter(a), a.base);
      }
    } finally {
      await s.session.release();
      await s.clip.dispose();
    }
  });

  it('optimiser and schedule follow PyTorch and transformers', () => {
    const p = { name: 'w', value: Float32Array.of(1, -2), decay: true };
    const sgd = new Sgd([p, { name: 'b', value: Float32Array.of(1), decay: false }], { momentum: 0.9, weightDecay: 0.1 });
    sgd.step(new Map([['w', Float32Array.of(0.5, 0.5)], ['b', Float32Array.of(1)]]), 0.1);
    // buf = g + wd·p = [0.6, 0.3]; p = [1 − 0.06, −2 − 0.03]
    assert.deepEqual([...p.value], [Math.fround(0.94), Math.fround(-2.03)]);
    sgd.step(new Map([['w', Float32Array.of(0, 0)], ['b', Float32Array.of(0)]]), 0.1);
    // buf = 0.9·[0.6, 0.3] + 0.1·p
    assert.ok(Math.abs(p.value[0]! - (0.94 - 0.1 * (0.54 + 0.094))) < 1e-6);
    assert.equal(learningRate('cosine', 0.01, 0, 10), 0.01);
    assert.ok(Math.abs(learningRate('cosine', 0.01, 5, 10) - 0.005) < 1e-15);
    assert.equal(learningRate('cosine', 0.01, 1, 10, 4), 0.0025);
    assert.equal(learningRate('linear', 0.01, 10, 10), 0);
  });

  it('setar finetune: trains, logs, saves the merged HF-layout model; --max-train-steps 0 saves the input model', async () => {
    const r = await runFinetune(resolveFinetuneConfig(null, flags('run')));
    assert.equal(r.steps, 6);
    const csv = readFileSync(join(dir, 'run', 'train_log.csv'), 'utf8').trim().split('\n');
    assert.equal(csv[0], 'step,epoch,lr,locoop_loss,loss_id,loss_ood,acc,ood_patch_percent');
    assert.equal(csv.length, 7);
    assert.equal(readFileSync(join(dir, 'run', 'train_log.jsonl'), 'utf8').trim().split('\n').length, 6);
    assert.match(readFileSync(join(dir, 'run', 'report_finetune.html'), 'utf8'), /data-plot="train:loss"/);
    const trained = await ClipModel.load(r.modelDir, { threads: 1 });
    const orig = await ClipModel.load(MODEL, { threads: 1 });
    const changed = trained.getWeight('vision_model.encoder.layers.1.mlp.fc1.weight');
    assert.ok(changed.some((x, i) => x !== orig.getWeight('vision_model.encoder.layers.1.mlp.fc1.weight')[i]), 'the adapted weight changed');
    assert.deepEqual(trained.getWeight('vision_model.encoder.layers.1.mlp.fc2.weight'), orig.getWeight('vision_model.encoder.layers.1.mlp.fc2.weight'));
    await trained.dispose();

    const zero = await runFinetune(resolveFinetuneConfig(null, flags('zero', { maxTrainSteps: 0 })));
    assert.equal(zero.steps, 0);
    const z = SafetensorsFile.open(join(zero.modelDir, 'model.safetensors'));
    try {
      for (const n of z.entries.keys()) {
        if (n === 'logit_scale') continue;
        // W' + B·A rebuilt in float32: within 1e-6 of each weight's scale; untouched tensors bit-identical
        assertRelMax(z.readFloat32(n), orig.getOriginalWeight(n), n, 1e-6);
      }
    } finally {
      z.close();
      await orig.dispose();
    }
  });

  it('bad input: a weight the model lacks, a rank >= full rank, a NaN loss (last good checkpoint kept)', async () => {
    await assert.rejects(runFinetune(resolveFinetuneConfig(null, flags('bad1', { loraSettings: [['visual', 'W_up', 5, 0.1]] }))), /layer 5 .* out of range: the visual tower has 2 layers, allowed \[0, 1\]/);
    await assert.rejects(runFinetune(resolveFinetuneConfig(null, flags('bad2', { loraSettings: [['visual', 'W_up', 0, 64]] }))), /dropped rank of 64 for a weight of full rank 64; the dropped rank must be in \[0, 63\]/);
    await assert.rejects(runFinetune(resolveFinetuneConfig(null, flags('nan', { learningRate: 1e30, numTrainEpochs: 3 }))), (e: Error) => {
      assert.ok(e instanceof NonFiniteLossError, e.message);
      assert.match(e.message, /the training loss became (NaN|Infinity|-Infinity) at step \d+/);
      return true;
    });
  });

  it('a killed run (SIGKILL) resumes from its last epoch and ends with the same log as an uninterrupted one', async () => {
    const args = (out: string) => [join(REPO_ROOT, 'bin', 'setar.js'), 'finetune', '--model', MODEL, '--id', `toy=${val}`, '--lora-r', '4', '--lora-alpha', '8', '--target-modules', 'mlp.fc1,self_attn.q_proj', '--locoop-top-k', '2', '--batch-size', '2', '--num-train-epochs', '8', '--out', out];
    await runKilledAndResumed(args, dir, 8);
    assert.equal(readFileSync(join(dir, 'killed', 'train_log.csv'), 'utf8'), readFileSync(join(dir, 'whole', 'train_log.csv'), 'utf8'));
  });
});

describe('official fine-tune configs', () => {
  it('SeTAR+FT.json and LoRA.json resolve unchanged apart from data_root and the model', async () => {
    const { SHARED } = await import('../helpers/fixtures.js');
    for (const [f, kind] of [['SeTAR+FT.json', 'setar'], ['LoRA.json', 'lora']] as const) {
      const json = JSON.parse(readFileSync(join(SHARED, 'reference-configs', 'finetune', 'clip_base', 'ID_ImageNet1K', f), 'utf8')) as Record<string, unknown>;
      json.data_root = '/data';
      const c = resolveFinetuneConfig(json, { model: MODEL });
      assert.equal(c.adapters.kind, kind);
      assert.equal(c.batch_size, 100);
      assert.equal(c.num_train_epochs, 5);
      assert.equal(c.learning_rate, 0.01);
      assert.equal(c.momentum, 0.9);
      assert.equal(c.weight_decay, 0.0005);
      assert.equal(c.lr_scheduler_type, 'cosine');
      assert.equal(c.locoop_top_k, 300);
      if (c.adapters.kind === 'lora') assert.deepEqual([c.adapters.r, c.adapters.alpha, c.adapters.targetModules], [32, 16, ['mlp.fc1']]);
      else assert.equal(c.adapters.settings.length, 24);
    }
  });
});

describe('colour jitter (Swin training augmentation)', () => {
  it('changes the image with j = 0.4 and leaves it unchanged with j = 0', async () => {
    const { colorJitter } = await import('../../src/train/augment.js');
    const img = Uint8Array.from({ length: 3 * 64 }, (_, i) => (i * 37) % 256);
    const a = img.slice();
    const r1 = new SeededRng(1);
    colorJitter(a, 0.4, () => r1.next());
    assert.ok(a.some((v, i) => v !== img[i]), 'the image changed');
    // j = 0 leaves every factor at 1: the image is unchanged
    const b = img.slice();
    const r = new SeededRng(2);
    colorJitter(b, 0, () => r.next());
    assert.deepEqual(b, img);
  });
});
