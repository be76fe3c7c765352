import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadAndPreprocess } from '../../src/image/preprocess.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { writeRandomClip } from '../../src/models/clip/random.js';
import { ClipTokenizer } from '../../src/models/clip/tokenizer.js';
import { readLocoopContext } from '../../src/models/locoop/context.js';
import { SeededRng } from '../../src/rng.js';
import { assertRelMax, maxAbs } from '../helpers/close.js';
import { ClipF64, logitsF64, mcmScoresF64 } from '../helpers/clip-f64.js';
import { copyClipTinySideFiles } from '../helpers/clip-tiny.js';
import { fixture, REPO_ROOT } from '../helpers/fixtures.js';
import { writeTestImage } from '../helpers/images.js';
import { dasslCheckpointValue, writeTorchPickle } from '../helpers/torch-zip.js';
import { DASSL_CHECKPOINT } from '../models/locoop/fixture.js';

// float32 against the float64 reference, per tensor: max |x − ref| ≤ 1e-5 · max |ref| (clip-tiny-a's README)
const REL = 1e-5;

/**
 * A CLIP no fixture or earlier test has used, unlike clip-tiny-a in every dimension: text width 32,
 * 3 layers, 2 heads and only 40 positions (so LoCoOp's truncation cuts at 40 − n, not 77 − n);
 * vision 24 px in patches of 6, width 40, 3 layers, 5 heads; projection 24.
 */
const HELD_OUT_CLIP = {
  architectures: ['CLIPModel'], model_type: 'clip', projection_dim: 24, logit_scale_init_value: 2.6592,
  text_config: { vocab_size: 49408, hidden_size: 32, intermediate_size: 80, num_hidden_layers: 3, num_attention_heads: 2, max_position_embeddings: 40, hidden_act: 'quick_gelu', bos_token_id: 49406, eos_token_id: 49407, pad_token_id: 1 },
  vision_config: { image_size: 24, patch_size: 6, num_channels: 3, hidden_size: 40, intermediate_size: 96, num_hidden_layers: 3, num_attention_heads: 5, hidden_act: 'quick_gelu' },
};

const LONG = 'In the early morning light, a small brown dog with a red collar ran across the wet green field, chasing a bright yellow tennis ball that bounced unpredictably between the tall grass, the muddy puddles, and the old wooden fence, while its owner, wearing a heavy blue raincoat and rubber boots, laughed and called out its name again and again, hoping it would eventually come back home before the storm arrived over the distant hills.';
const PROMPTS = ['tench.', 'kite (bird of prey).', '', 'a photo of a dog', LONG];
const LABELS = ['goldfish', 'kite', 'tabby cat'];

let dir = '';
function setar(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'setar.js'), ...args], { encoding: 'utf8', env: { ...process.env, SETAR_CACHE_DIR: join(dir, 'cache') } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** SPEC §9's cut, written out here: at most P − n ids, else the first P − n − 1 and the end token. */
function cut(ids: number[], n: number, positions: number): number[] {
  return ids.length <= positions - n ? ids : [...ids.slice(0, positions - n - 1), ids.at(-1)!];
}

function readScores(file: string): Map<string, Record<string, number>> {
  const [head, ...rows] = readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split(','));
  return new Map(rows.map((r) => [r[0]!, Object.fromEntries(head!.slice(1).map((h, i) => [h, Number(r[i + 1])]))]));
}

describe('LoCoOp models through the command line: parity with a float64 reference', () => {
  let heldOut = '';
  let heldOutCkpt = '';
  let id = '';
  let ood = '';
  let tokenizer: ClipTokenizer;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-locoop-cli-'));
    heldOut = join(dir, 'held-out-clip');
    writeRandomClip(heldOut, HELD_OUT_CLIP, { seed: 2024 });
    copyClipTinySideFiles(heldOut);
    // its LoCoOp checkpoint, as Dassl saves one: pickled CosineAnnealingLR and SGD objects inside
    const rng = new SeededRng(99);
    heldOutCkpt = join(dir, 'prompt_learner', 'model.pth.tar-25');
    mkdirSync(join(dir, 'prompt_learner'));
    writeTorchPickle(heldOutCkpt, dasslCheckpointValue({ ctx: { dtype: 'F32', shape: [6, 32], data: Float32Array.from({ length: 6 * 32 }, () => (rng.next() * 2 - 1) * 0.3) }, epoch: 25 }));
    id = join(dir, 'id');
    ood = join(dir, 'ood');
    let k = 0;
    for (const l of LABELS) for (let i = 0; i < 2; i++) await writeTestImage(join(id, l, `${i}.png`), k++);
    for (let i = 0; i < 4; i++) await writeTestImage(join(ood, `${i}.png`), 40 + i);
    tokenizer = await ClipTokenizer.fromDir(fixture('clip-tiny-a'));
    writeFileSync(join(dir, 'prompts.json'), JSON.stringify(PROMPTS));
    writeFileSync(join(dir, 'labels.json'), JSON.stringify(LABELS));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const cases = () => [
    { name: 'clip-tiny-a with the real torch.save Dassl checkpoint (n = 16)', model: fixture('clip-tiny-a'), ckpt: DASSL_CHECKPOINT, n: 16 },
    { name: 'a held-out CLIP (other widths, depths, 40 positions) with a Dassl checkpoint holding pickled scheduler and SGD objects (n = 6)', model: heldOut, ckpt: heldOutCkpt, n: 6 },
  ];

  for (const which of [0, 1]) {
    it(`embed --texts and eval: LoCoOp text features and MCM / GL-MCM scores (${which === 0 ? 'clip-tiny-a' : 'held-out CLIP'})`, async (t) => {
      const c = cases()[which]!;
      t.diagnostic(c.name);
      const ref = new ClipF64(c.model);
      const positions = Math.min(77, ref.text.max_position_embeddings);
      const ctx = readLocoopContext(c.ckpt).ctx;
      const locoopText = (p: string) => ref.locoopTextEmbeds(cut(tokenizer.encode(p), c.n, positions), ctx, c.n);

      // embed --texts: the LoCoOp features of the given prompts (the empty and the over-long one included)
      const out = join(dir, `embed-${which}.safetensors`);
      const r = setar('embed', '--model', c.model, '--locoop-ckpt', c.ckpt, '--n-ctx', String(c.n), '--texts', join(dir, 'prompts.json'), '--out', out);
      assert.equal(r.code, 0, r.stderr);
      const f = SafetensorsFile.open(out);
      const expected = Float64Array.from(PROMPTS.flatMap((p) => [...locoopText(p)]));
      t.diagnostic(`embed --texts: max |x − ref| / max |ref| = ${assertRelMax(f.readFloat32('text_embeds'), expected, 'text_embeds', REL).toExponential(2)}`);
      f.close();

      // eval: the class prompts are "{label}."; scores from the float64 towers on setar's preprocessed pixels
      const evalOut = join(dir, `eval-${which}`);
      const e = setar('eval', '--model', c.model, '--locoop-ckpt', c.ckpt, '--id', `ID=${id}`, '--ood', `OOD=${ood}`, '--scorers', 'mcm_score,gl_mcm_score', '--threads', '1', '--out', evalOut);
      assert.equal(e.code, 0, e.stderr);
      const text = LABELS.map((l) => locoopText(`${l}.`));
      const plainText = LABELS.map((l) => ref.textEmbeds(cut(tokenizer.encode(`a photo of a ${l}`), 0, positions)));
      const size = ref.vision.image_size;
      for (const [name, root] of [['ID', id], ['OOD', ood]] as const) {
        const got = readScores(join(evalOut, `scores_${name}_test.csv`));
        const want: number[] = [];
        const plain: number[] = [];
        const have: number[] = [];
        for (const [rel, s] of got) {
          const px = await loadAndPreprocess(join(root, rel), { size });
          const img = ref.imageEmbeds(px);
          const sc = mcmScoresF64(logitsF64(img.global, text, ref.logitScale), logitsF64(img.local, text, ref.logitScale), LABELS.length, 100);
          const pl = mcmScoresF64(logitsF64(img.global, plainText, ref.logitScale), logitsF64(img.local, plainText, ref.logitScale), LABELS.length, 100);
          want.push(sc.mcm, sc.gl_mcm);
          plain.push(pl.mcm, pl.gl_mcm);
          have.push(s.mcm_score!, s.gl_mcm_score!);
        }
        assert.equal(got.size, name === 'ID' ? 6 : 4);
        t.diagnostic(`eval scores ${name}: max |x − ref| / max |ref| = ${assertRelMax(Float64Array.from(have), Float64Array.from(want), `${name} scores`, REL).toExponential(2)}`);
        // the context matters: CLIP's own prompts score these images differently, by far more than the tolerance
        const diff = Math.max(...plain.map((p, i) => Math.abs(p - want[i]!)));
        assert.ok(diff > 100 * REL * maxAbs(want), `LoCoOp and CLIP scores differ by ${diff}`);
      }
    });
  }

  it('classify and bundle use the LoCoOp prompts; recipe.json records the context file and its sha256', async () => {
    const model = fixture('clip-tiny-a');
    const ref = new ClipF64(model);
    const ctx = readLocoopContext(DASSL_CHECKPOINT).ctx;
    const text = LABELS.map((l) => ref.locoopTextEmbeds(cut(tokenizer.encode(`${l}.`), 16, 77), ctx, 16));

    const img = join(id, 'kite', '0.png');
    const cl = setar('classify', '--model', model, '--locoop-ckpt', DASSL_CHECKPOINT, '--labels', join(dir, 'labels.json'), '--json', '--top', '3', img);
    assert.equal(cl.code, 0, cl.stderr);
    const top = (JSON.parse(cl.stdout) as { top: { label: string; probability: number }[] }[])[0]!.top;
    const logits = logitsF64(ref.imageEmbeds(await loadAndPreprocess(img, { size: 32 })).global, text, ref.logitScale);
    const m = Math.max(...logits);
    const e = Array.from(logits, (x) => Math.exp(x - m));
    const sum = e.reduce((a, b) => a + b, 0);
    for (const p of top) assert.ok(Math.abs(p.probability - e[LABELS.indexOf(p.label)]! / sum) < 1e-5, `${p.label}: ${p.probability}`);

    const bundle = join(dir, 'bundle');
    const b = setar('bundle', '--model', model, '--locoop-ckpt', DASSL_CHECKPOINT, '--id', `ID=${id}`, '--threads', '1', '--out', bundle);
    assert.equal(b.code, 0, b.stderr);
    const manifest = JSON.parse(readFileSync(join(bundle, 'bundle.json'), 'utf8')) as { templates: string[] };
    assert.deepEqual(manifest.templates, ['{}.']);
    const recipe = JSON.parse(readFileSync(join(bundle, 'recipe.json'), 'utf8')) as { locoop_ckpt: { file: string; sha256: string; n_ctx: number } };
    assert.deepEqual(recipe.locoop_ckpt, { file: DASSL_CHECKPOINT, sha256: createHash('sha256').update(readFileSync(DASSL_CHECKPOINT)).digest('hex'), n_ctx: 16 });
    const f = SafetensorsFile.open(join(bundle, 'text_features.safetensors'));
    const normalised = text.flatMap((v) => {
      const n = Math.sqrt(v.reduce((a, x) => a + x * x, 0));
      return [...v].map((x) => x / n);
    });
    assertRelMax(f.readFloat32('text_features'), Float64Array.from(normalised), 'bundle text_features', REL);
    f.close();
  });

  it('bad input: an --n-ctx the checkpoint contradicts (both numbers), --n-ctx alone, a context on a Swin V2 model', () => {
    const r = setar('embed', '--model', fixture('clip-tiny-a'), '--locoop-ckpt', DASSL_CHECKPOINT, '--n-ctx', '4', '--texts', join(dir, 'prompts.json'), '--out', join(dir, 'x.safetensors'));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /setar: error: '.*model\.pth\.tar-2': the checkpoint's context has 16 vectors \(n_ctx 16\), but --n-ctx 4 was given/);
    const alone = setar('classify', '--model', fixture('clip-tiny-a'), '--n-ctx', '4', '--labels', join(dir, 'labels.json'), join(id, 'kite', '0.png'));
    assert.match(alone.stderr, /--n-ctx 4 needs a LoCoOp context: give --locoop-ckpt FILE/);
    const swin = setar('embed', '--model', fixture('swinv2-tiny-a'), '--locoop-ckpt', DASSL_CHECKPOINT, '--texts', join(dir, 'prompts.json'), '--out', join(dir, 'x.safetensors'));
    assert.match(swin.stderr, /makes a LoCoOp model, which needs a CLIP model, but '.*swinv2-tiny-a' holds a Swin V2 model/);
  });

  it('search on a LoCoOp model writes the official LoCoOp keys and evaluates with the same context', () => {
    const out = join(dir, 'search');
    const r = setar('search', '--model', fixture('clip-tiny-a'), '--locoop-ckpt', DASSL_CHECKPOINT, '--id', `ID=${id}`, '--searcher', 'text_only', '--candi-ratios', '0,0.25',
      '--locoop-top-k', '2', '--test-id', `ID=${id}`, '--test-ood', `OOD=${ood}`, '--threads', '1', '--out', out);
    assert.equal(r.code, 0, r.stderr);
    const best = JSON.parse(readFileSync(join(out, 'config_best.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(best.model_type, 'LoCoOp');
    assert.equal(best.locoop_ckpt, DASSL_CHECKPOINT);
    assert.equal(best.n_ctx, 16);
    const evalConfig = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(evalConfig.locoop_ckpt, DASSL_CHECKPOINT);
    assert.equal(evalConfig.template, '{}.');
    // config_best.json evaluates as it is
    const again = setar('eval', '--config', join(out, 'config_best.json'), '--id', `ID=${id}`, '--ood', `OOD=${ood}`, '--threads', '1', '--out', join(dir, 'eval-best'));
    assert.equal(again.code, 0, again.stderr);
    assert.equal(readFileSync(join(dir, 'eval-best', 'scores_OOD_test.csv'), 'utf8'), readFileSync(join(out, 'scores_OOD_test.csv'), 'utf8'));
  });
});
