import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClipModel } from '../../../src/models/clip/model.js';
import { ClipTokenizer } from '../../../src/models/clip/tokenizer.js';
import { readLocoopContext, type LocoopContext } from '../../../src/models/locoop/context.js';
import { locoopClassPrompts, locoopInputsEmbeds, truncateLocoopIds } from '../../../src/models/locoop/prompt.js';
import { encodeLocoopTexts, encodeLocoopTokenRows } from '../../../src/models/locoop/text.js';
import type { SafetensorsFile } from '../../../src/io/safetensors.js';
import { fixture } from '../../helpers/fixtures.js';
import { assertRelMax, maxAbs } from '../../helpers/close.js';
import { dasslCheckpointValue, writeTorchPickle } from '../../helpers/torch-zip.js';
import { DASSL_CHECKPOINT, loadReference, type LocoopReference } from './fixture.js';

// The clip-tiny-a criterion (its README): a float32 implementation against a float64 reference,
// per tensor, max |x − ref| ≤ 1e-5 · max |ref|; PyTorch's own float32 CLIP run reaches ≤ 1.2e-6.
const REL = 1e-5;

describe('LoCoOp text tower: parity with the float64 reference (clip-tiny-a)', () => {
  let model: ClipModel;
  let tokenizer: ClipTokenizer;
  let meta: LocoopReference;
  let ref: SafetensorsFile;
  const contexts = new Map<number, LocoopContext>();

  before(async () => {
    model = await ClipModel.load(fixture('clip-tiny-a'), { threads: 1 });
    tokenizer = await ClipTokenizer.fromDir(fixture('clip-tiny-a'));
    ({ meta, tensors: ref } = loadReference());
    for (const n of [4, 16]) {
      contexts.set(n, { ctx: ref.read(`ctx_n${n}`).data as Float32Array, n, width: 48, dtype: 'F32', source: `reference ctx_n${n}` });
    }
  });
  after(async () => {
    await model.dispose();
    ref.close();
  });

  it('the reference\'s own CLIP text tower matched the fixture\'s OpenAI float64 outputs', () => {
    assert.ok(meta.clip_text_check.max_abs_error_over_max_abs < 1e-12);
  });

  it('tokenizes the reference prompts to the reference\'s ids (the over-long one to 91 ids)', () => {
    assert.equal(meta.prompts[5]!.ids.length, 91);
    for (const p of meta.prompts) {
      if (p.text === null) continue;
      assert.deepEqual(tokenizer.encode(p.text), p.ids, p.text);
    }
  });

  it('truncation keeps the first 76 − n ids and the end token; the end lands on position 76', () => {
    for (const p of meta.prompts) {
      for (const n of [4, 16]) {
        const t = truncateLocoopIds(p.ids, n);
        assert.deepEqual(t, p.truncated_ids[String(n)], `${p.note ?? p.text} n=${n}`);
        assert.equal(t.length - 1 + n, p.pool_position[String(n)]);
      }
    }
    const long = meta.prompts[5]!.ids;
    assert.equal(truncateLocoopIds(long, 16).length, 61);
    assert.equal(truncateLocoopIds(long, 16)[60], 49407);
    assert.equal(truncateLocoopIds(long, 4).length - 1 + 4, 76);
    assert.throws(() => truncateLocoopIds(long, 76), /n_ctx 76 must be an integer in \[0, 75\] to leave room for the start and end tokens in 77 positions/);
    assert.throws(() => truncateLocoopIds([49406], 4), /need at least a start and an end token/);
  });

  it('inputs to layer 0: start, context, shifted tokens, each with its position (the over-long prompt)', () => {
    for (const n of [4, 16]) {
      const ids = truncateLocoopIds(meta.prompts[5]!.ids, n);
      const h = locoopInputsEmbeds({ ids: Int32Array.from(ids), batch: 1, length: ids.length }, contexts.get(n)!, model.textEmbeddingTables());
      assert.deepEqual(h.dims, [1, 77, 48]);
      const expected = ref.read(`inputs_embeds_n${n}`).data as Float64Array;
      // one float32 addition per element: within half an ulp of the float64 sum of two float32 values
      assertRelMax(h.data, expected, `inputs_embeds_n${n}`, 1e-7);
    }
    assert.throws(() => locoopInputsEmbeds({ ids: new Int32Array(75).fill(320), batch: 1, length: 75 }, contexts.get(4)!, model.textEmbeddingTables()),
      /'input_ids' length 75 plus n_ctx 4 exceeds the 77 text positions; cut prompts with truncateLocoopIds/);
    assert.throws(() => locoopInputsEmbeds({ ids: Int32Array.of(49406, 49408), batch: 1, length: 2 }, contexts.get(4)!, model.textEmbeddingTables()),
      /'input_ids' holds id 49408 at \[0, 1\]; allowed \[0, 49408\)/);
  });

  for (const n of [4, 16]) {
    it(`text features with n = ${n}: class prompts, the empty and the over-long prompt, the 77-position boundary`, async (t) => {
      const c = contexts.get(n)!;
      const texts = meta.prompts.filter((p) => p.text !== null).map((p) => p.text!);
      const rows = meta.prompts.filter((p) => p.text === null).map((p) => p.ids);
      const fromTexts = await encodeLocoopTexts(model, tokenizer, texts, c);
      const fromRows = await encodeLocoopTokenRows(model, rows, c);
      assert.deepEqual(fromTexts.dims, [texts.length, 40]);
      const all = new Float32Array([...fromTexts.data, ...fromRows.data]);
      const expected = ref.read(`text_embeds_n${n}`).data as Float64Array;
      t.diagnostic(`text_embeds_n${n}: max |x − ref| / max |ref| = ${assertRelMax(all, expected, `text_embeds_n${n}`, REL).toExponential(2)}`);
      // each prompt alone, too: the empty prompt (index 4) and the over-long one (5) are no batch artefact
      for (const i of [4, 5]) {
        const one = await encodeLocoopTexts(model, tokenizer, [texts[i]!], c);
        assertRelMax(one.data, expected.subarray(i * 40, (i + 1) * 40), `prompt ${i} alone, n=${n}`, REL);
      }
      // the context matters: plain CLIP features of the same prompts are far from these
      const plain = await model.encodeTokenRows(meta.prompts.slice(0, 3).map((p) => p.ids));
      let diff = 0;
      for (let i = 0; i < plain.data.length; i++) diff = Math.max(diff, Math.abs(plain.data[i]! - expected[i]!));
      assert.ok(diff > 0.1 * maxAbs(expected), `LoCoOp and CLIP features differ by ${diff}`);
    });
  }

  it('the real Dassl checkpoint (n = 16) gives the reference features through the file reader', async (t) => {
    const c = readLocoopContext(DASSL_CHECKPOINT, { nCtx: 16 });
    const texts = locoopClassPrompts(['tench', 'kite (bird of prey)']);
    assert.deepEqual(texts, ['tench.', 'kite (bird of prey).']);
    const out = await encodeLocoopTexts(model, tokenizer, texts, c);
    const r = assertRelMax(out.data, (ref.read('text_embeds_n16').data as Float64Array).subarray(0, 80), 'class prompts from the Dassl file', REL);
    t.diagnostic(`Dassl file, class prompts: ${r.toExponential(2)}`);
  });

  it('a Dassl checkpoint of ctx_n4 written by the test helper (pickled scheduler and SGD objects) gives the n = 4 features', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'setar-locoop-n4-'));
    try {
      const file = join(dir, 'model.pth.tar-50');
      writeTorchPickle(file, dasslCheckpointValue({ ctx: { dtype: 'F32', shape: [4, 48], data: contexts.get(4)!.ctx }, epoch: 50, valResult: { float: 12.5 } }));
      const c = readLocoopContext(file, { nCtx: 4 });
      assert.equal(c.epoch, 50);
      const texts = meta.prompts.filter((p) => p.text !== null).map((p) => p.text!);
      const out = await encodeLocoopTexts(model, tokenizer, texts, c);
      const r = assertRelMax(out.data, (ref.read('text_embeds_n4').data as Float64Array).subarray(0, texts.length * 40), 'text_embeds_n4 from a Dassl file', REL);
      t.diagnostic(`helper-written Dassl file, n = 4: ${r.toExponential(2)}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('class prompts: "{label}." unless a template is given', () => {
    assert.deepEqual(locoopClassPrompts(['dog', 'sea lion']), ['dog.', 'sea lion.']);
    assert.deepEqual(locoopClassPrompts(['dog'], 'a photo of a {}'), ['a photo of a dog']);
    assert.throws(() => locoopClassPrompts(['dog'], 'no placeholder'), /has no '\{\}' placeholder/);
  });

  it('a context of another width is refused before anything runs', async () => {
    const wide: LocoopContext = { ctx: new Float32Array(4 * 64), n: 4, width: 64, dtype: 'F32', source: 'wide.pth.tar-1' };
    await assert.rejects(encodeLocoopTexts(model, tokenizer, ['dog.'], wide), /'wide\.pth\.tar-1': the LoCoOp context has width 64, but this CLIP model's text hidden size \(text_config\.hidden_size\) is 48/);
  });
});
