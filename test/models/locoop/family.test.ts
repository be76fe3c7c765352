import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { resolveEvalConfig } from '../../../src/eval/config.js';
import { resolveSearchConfig } from '../../../src/search/config.js';
import { resolveFinetuneConfig } from '../../../src/train/config.js';
import { ClipModel } from '../../../src/models/clip/model.js';
import { clipFamily } from '../../../src/models/clip/family.js';
import { locoopFamily } from '../../../src/models/locoop/family.js';
import { locoopInputsEmbeds, truncateLocoopIds } from '../../../src/models/locoop/prompt.js';
import { familyOfOfficialType, loadModel, registerFamily, resolveFamily } from '../../../src/models/registry.js';
import type { ModelFamily } from '../../../src/models/family.js';
import type { Tensor } from '../../../src/tensor.js';
import { ClipTokenizer } from '../../../src/models/clip/tokenizer.js';
import { ConfigError } from '../../../src/models/common/config.js';
import { assertRelMax } from '../../helpers/close.js';
import { fixture } from '../../helpers/fixtures.js';
import { dasslCheckpointValue, writeTorchPickle } from '../../helpers/torch-zip.js';
import { DASSL_CHECKPOINT, loadReference } from './fixture.js';

const CLIP = fixture('clip-tiny-a');
const SWIN = fixture('swinv2-tiny-a');
// float32 against the float64 reference, per tensor (clip-tiny-a's README): 1e-5 of the largest value
const REL = 1e-5;

describe('the LoCoOp family row and the registry', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'setar-locoop-family-'));
    mkdirSync(join(dir, 'id', 'dog'), { recursive: true });
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a CLIP folder is CLIP alone and LoCoOp with a context; "LoCoOp" is an official model_type', () => {
    assert.equal(resolveFamily(CLIP), clipFamily);
    assert.equal(resolveFamily(CLIP, { locoopCkpt: DASSL_CHECKPOINT }), locoopFamily);
    assert.equal(resolveFamily(CLIP, { locoopInit: { phrase: 'a photo of a', seed: 1 } }), locoopFamily);
    assert.equal(familyOfOfficialType('LoCoOp'), locoopFamily);
    assert.deepEqual(locoopFamily.buildsOn?.selectedBy, ['locoopCkpt', 'locoopInit']);
    assert.equal(locoopFamily.defaults.template, '{}.');
    assert.deepEqual(locoopFamily.modelTypes, []);
  });

  it('a context on a Swin V2 folder is an error naming both families', () => {
    assert.throws(() => resolveFamily(SWIN, { locoopCkpt: DASSL_CHECKPOINT }), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /a LoCoOp context \(--locoop-ckpt FILE or config key "locoop_ckpt"; or training one with --method locoop\) makes a LoCoOp model, which needs a CLIP model, but '.*swinv2-tiny-a' holds a Swin V2 model \(.*config\.json: model_type "swinv2"\)/);
      return true;
    });
  });

  it('registerFamily checks what a family builds on', () => {
    const row = (over: Partial<ModelFamily>): ModelFamily => ({ ...locoopFamily, name: 'x', ...over });
    assert.throws(() => registerFamily(row({ buildsOn: { family: 'nope', selectedBy: ['locoopCkpt'], given: 'g' } })), /model family "x" builds on "nope", which is not registered; known: clip, swinv2, locoop/);
    assert.throws(() => registerFamily(row({ buildsOn: { family: 'clip', selectedBy: [], given: 'g' } })), /model family "x" builds on "clip" but names no load option that selects it/);
    assert.throws(() => registerFamily(row({ modelTypes: ['x'] })), /model family "x" builds on "clip": its checkpoints are "clip" folders, so it claims no model_type of its own/);
  });

  it('loadModel: the Dassl checkpoint makes clip-tiny-a a LoCoOp model whose text features are the reference\'s', async () => {
    const { meta, tensors } = loadReference();
    const model = await loadModel(CLIP, { threads: 1, locoopCkpt: DASSL_CHECKPOINT });
    try {
      assert.equal(model.family, locoopFamily);
      assert.equal(model.promptContext?.n, 16);
      assert.equal(model.promptContext?.epoch, 2);
      const texts = meta.prompts.filter((p) => p.text !== null).map((p) => p.text!);
      const out = await model.embed({ texts }, { local: false });
      assertRelMax(out.text_embeds!.data, (tensors.read('text_embeds_n16').data as Float64Array).subarray(0, texts.length * 40), 'text_embeds', REL);
      // the class prompts of the classifier are "{label}."
      const classifier = await model.classifier(['tench', 'kite (bird of prey)'], { template: locoopFamily.defaults.template! });
      await classifier.release();
    } finally {
      await model.dispose();
      tensors.close();
    }
  });

  it('the search towers start from the LoCoOp prompts: layer-0 hidden states and pool rows shifted by n', async () => {
    const model = await loadModel(CLIP, { threads: 1, locoopCkpt: DASSL_CHECKPOINT });
    const clip = await ClipModel.load(CLIP, { threads: 1 });
    try {
      const subject = await model.searchSubject(['tench', 'kite (bird of prey)'], { template: '{}.' });
      const text = subject.towers.find((t) => t.tower === 'text')!;
      const h = await text.embed(null);
      const tok = await ClipTokenizer.fromDir(CLIP);
      const rows = ['tench.', 'kite (bird of prey).'].map((t) => truncateLocoopIds(tok.encode(t), 16));
      const length = Math.max(...rows.map((r) => r.length));
      const ids = new Int32Array(2 * length).fill(49407);
      rows.forEach((r, i) => ids.set(r, i * length));
      const pc = model.promptContext!;
      const c = { ctx: pc.value(), n: pc.n, width: pc.width, dtype: 'F32' as const, source: pc.source };
      assert.equal(h.chunks.length, 1, 'two prompts are one chunk');
      assert.deepEqual((h.chunks[0] as Tensor).data, locoopInputsEmbeds({ ids, batch: 2, length }, c, clip.textEmbeddingTables()).data);
      // its head at layer 0 gives the reference features of the class prompts
      const { tensors } = loadReference();
      const feats = await text.head(h, 0) as { data: Float32Array };
      assertRelMax(feats.data, (tensors.read('text_embeds_n16').data as Float64Array).subarray(0, 80), 'search text head', REL);
      tensors.close();
      await subject.release();
    } finally {
      await model.dispose();
      await clip.dispose();
    }
  });

  it('a LoCoOp model needs its context; a context file and a fresh one cannot be combined', async () => {
    await assert.rejects(locoopFamily.load(CLIP, {}), /a LoCoOp model needs its context: give locoopCkpt .* or locoopInit, besides the CLIP folder/);
    await assert.rejects(locoopFamily.load(CLIP, { locoopCkpt: DASSL_CHECKPOINT, locoopInit: { seed: 1 } }), /give a LoCoOp context file \(locoopCkpt\) or a fresh context \(locoopInit\), not both/);
  });

  it('a context whose width is not the text hidden size fails at load, naming both', async () => {
    const wide = join(dir, 'wide.pth.tar-3');
    writeTorchPickle(wide, dasslCheckpointValue({ ctx: { dtype: 'F32', shape: [4, 64], data: new Float32Array(256) }, epoch: 3 }));
    await assert.rejects(loadModel(CLIP, { locoopCkpt: wide }), /wide\.pth\.tar-3': the LoCoOp context has width 64, but this CLIP model's text hidden size \(text_config\.hidden_size\) is 48/);
  });

  it('run configs: --locoop-ckpt / "locoop_ckpt", --n-ctx / "n_ctx" and "model_type": "LoCoOp"', () => {
    const base = { model: CLIP, id: `toy=${join(dir, 'id')}`, ood: [`o=${join(dir, 'id')}`], out: join(dir, 'out') };
    const ev = resolveEvalConfig(null, { ...base, locoopCkpt: DASSL_CHECKPOINT });
    assert.equal(ev.locoop_ckpt, DASSL_CHECKPOINT);
    assert.equal(ev.n_ctx, 16);
    assert.equal(ev.template, '{}.');
    assert.equal(resolveEvalConfig(null, { ...base, locoopCkpt: DASSL_CHECKPOINT, template: 'a {}' }).template, 'a {}');
    assert.equal(resolveEvalConfig(null, base).template, 'a photo of a {}');
    // official keys
    const official = { model_type: 'LoCoOp', locoop_ckpt: DASSL_CHECKPOINT, n_ctx: 16 };
    assert.equal(resolveEvalConfig(official, base, 'lc.json').locoop_ckpt, DASSL_CHECKPOINT);
    // n_ctx disagreeing with the checkpoint: both numbers, and the flag or key the user used
    assert.throws(() => resolveEvalConfig(null, { ...base, locoopCkpt: DASSL_CHECKPOINT, nCtx: 4 }), /the checkpoint's context has 16 vectors \(n_ctx 16\), but --n-ctx 4 was given/);
    assert.throws(() => resolveEvalConfig({ ...official, n_ctx: 8 }, base, 'lc.json'), /the checkpoint's context has 16 vectors \(n_ctx 16\), but config key "n_ctx" 8 was given/);
    assert.throws(() => resolveEvalConfig(null, { ...base, nCtx: 4 }), /--n-ctx 4 needs a LoCoOp context: give --locoop-ckpt FILE \(or "locoop_ckpt" in the config\)/);
    assert.throws(() => resolveEvalConfig({ model_type: 'LoCoOp' }, base, 'lc.json'), /lc\.json: model_type "LoCoOp" needs a LoCoOp context \(--locoop-ckpt FILE or config key "locoop_ckpt".*\); '.*clip-tiny-a' alone is a CLIP model/);
    assert.throws(() => resolveEvalConfig({ model_type: 'CLIP', locoop_ckpt: DASSL_CHECKPOINT }, base, 'c.json'), /c\.json: "locoop_ckpt" is set but model_type is "CLIP"; the official code reads locoop_ckpt only for "model_type": "LoCoOp"/);
    assert.throws(() => resolveEvalConfig({ locoop_ckpt: 5 }, base, 'c.json'), /config key "locoop_ckpt" must be a checkpoint file path \(or null\), got 5/);
    assert.throws(() => resolveEvalConfig({ n_ctx: 'x' }, base, 'c.json'), /config key "n_ctx" must be a positive integer \(or null\), got "x"/);
    // a flag wins over a CLIP config's model_type
    assert.equal(resolveEvalConfig({ model_type: 'CLIP' }, { ...base, locoopCkpt: DASSL_CHECKPOINT }, 'c.json').n_ctx, 16);
    assert.throws(() => resolveEvalConfig(null, { ...base, locoopCkpt: join(dir, 'none.pth') }), /cannot open LoCoOp checkpoint '.*none\.pth'/);

    // the search writes the official keys back
    const s = resolveSearchConfig(null, { model: CLIP, id: `toy=${join(dir, 'id')}`, locoopCkpt: DASSL_CHECKPOINT, locoopTopK: 1, out: join(dir, 's') });
    assert.equal(s.official.model_type, 'LoCoOp');
    assert.equal(s.official.locoop_ckpt, DASSL_CHECKPOINT);
    assert.equal(s.official.n_ctx, 16);
    assert.equal(s.template, '{}.');
    assert.equal(s.arch, 'locoop');
    const again = resolveSearchConfig(s.official, { id: `toy=${join(dir, 'id')}`, out: join(dir, 's2') });
    assert.equal(again.locoop_ckpt, DASSL_CHECKPOINT);

    // fine-tuning a LoCoOp model keeps the context; the LoCoOp-only flags need --method locoop
    const ft = resolveFinetuneConfig(null, { model: CLIP, id: `toy=${join(dir, 'id')}`, locoopCkpt: DASSL_CHECKPOINT, loraSettings: [['text', 'W_up', 1, 0.25]], out: join(dir, 'ft') });
    assert.equal(ft.adapters.kind, 'setar');
    assert.equal(ft.locoop_ckpt, DASSL_CHECKPOINT);
    assert.equal(ft.template, '{}.');
    assert.throws(() => resolveFinetuneConfig(null, { model: CLIP, id: `toy=${join(dir, 'id')}`, loraR: 4, ctxInit: 'a photo of a', out: join(dir, 'ft') }), /--ctx-init applies to --method locoop \(training a LoCoOp context\), not lora/);
  });
});
