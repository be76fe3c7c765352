import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createBundle, Detector, type BundleManifest } from '../../src/bundle/bundle.js';
import { loadImageBatches, type LoaderOptions } from '../../src/data/loader.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { swinPreprocess } from '../../src/models/swinv2/preprocess.js';
import { loadSwinV2Config } from '../../src/models/swinv2/config.js';
import { decodeModel } from '../../src/onnx/model-proto.js';
import type { Precision } from '../../src/onnx/precision.js';
import { OnnxDataType } from '../../src/onnx/proto.js';
import { runSingly } from '../../src/runtime/run-singly.js';
import { Session } from '../../src/runtime/session.js';
import type { Tensor } from '../../src/tensor.js';
import { fixture } from '../helpers/fixtures.js';
import { writeTestImage } from '../helpers/images.js';

const PRECISIONS: readonly Precision[] = ['fp32', 'fp16', 'int8'];

/** The encoder's outputs for a batch of preprocessed images, one image per run where the model asks for it. */
async function encode(bundle: string, px: Tensor<'float32'>): Promise<Record<string, Float32Array>> {
  const s = await Session.create(new Uint8Array(readFileSync(join(bundle, 'image_encoder.onnx'))), 'precision_test', { threads: 1 });
  try {
    const out = s.inputShape('pixel_values')?.[0] === 1 ? await runSingly(s, { pixel_values: px }) : await s.run({ pixel_values: px });
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, v.data as Float32Array]));
  } finally {
    await s.release();
  }
}

/** Rows of `a` and `b` ([rows, p] each): 1 − cos of each pair. */
function oneMinusCos(a: Float32Array, b: Float32Array, p: number): number[] {
  const out: number[] = [];
  for (let r = 0; r < a.length / p; r++) {
    let ab = 0, aa = 0, bb = 0;
    for (let k = 0; k < p; k++) {
      ab += a[r * p + k]! * b[r * p + k]!;
      aa += a[r * p + k]! ** 2;
      bb += b[r * p + k]! ** 2;
    }
    out.push(1 - ab / Math.sqrt(aa * bb));
  }
  return out;
}

function initializerTypes(bundle: string): { float32Elements: number; types: Set<number> } {
  const m = decodeModel(new Uint8Array(readFileSync(join(bundle, 'image_encoder.onnx'))));
  let float32Elements = 0;
  for (const t of m.graph.initializer) if (t.data_type === OnnxDataType.FLOAT) float32Elements += t.dims.reduce((a, b) => a * b, 1);
  return { float32Elements, types: new Set(m.graph.initializer.map((t) => t.data_type)) };
}

/** Each bundle's verdicts on the validation images (batched as `setar bundle` does), and the check that its threshold is its own. */
async function verdicts(bundle: string, files: readonly string[], m: BundleManifest, preprocess: LoaderOptions['preprocess']) {
  const d = await Detector.load(bundle, { threads: 1 });
  try {
    const v = [];
    for await (const b of loadImageBatches(files, { batchSize: 32, preprocess })) v.push(...(await d.scoreBatch(b.pixelValues)));
    // the threshold is re-chosen with this bundle's own encoder: it accepts ceil(tpr · n) images
    assert.equal(v.filter((x) => x.scores[m.scorer]! <= m.threshold).length, Math.ceil(m.tpr * files.length), `${m.precision} threshold`);
    return v;
  } finally {
    await d.release();
  }
}

describe('setar bundle --precision fp32 | fp16 | int8', () => {
  let dir = '';
  let val = '';
  let files: string[] = [];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-precision-'));
    process.env.SETAR_CACHE_DIR = join(dir, 'cache');
    val = join(dir, 'val');
    let k = 0;
    for (const c of ['c0', 'c1', 'c2', 'c3', 'c4', 'c5', 'c6']) for (let i = 0; i < 3; i++) await writeTestImage(join(val, c, `${i}.jpg`), k++);
    files = readdirSync(val, { recursive: true }).map(String).filter((f) => f.endsWith('.jpg')).sort().map((f) => join(val, f));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('CLIP: records the precision, shrinks the file, keeps the scores within the bounds of its rounding', async (t) => {
    const model = fixture('clip-tiny-a');
    const labels = ['bird', 'cat', 'dog', 'fish', 'frog', 'horse', 'ship'];
    const m: Partial<Record<Precision, BundleManifest>> = {};
    for (const precision of PRECISIONS) {
      m[precision] = await createBundle({ model, id: { kind: 'folder', name: 'toy', root: val }, labels, precision, tpr: 0.9, out: join(dir, `clip-${precision}`), threads: 1 });
      const onDisk = JSON.parse(readFileSync(join(dir, `clip-${precision}`, 'bundle.json'), 'utf8')) as BundleManifest;
      assert.equal(onDisk.precision, precision);
      assert.equal((JSON.parse(readFileSync(join(dir, `clip-${precision}`, 'recipe.json'), 'utf8')) as { precision: string }).precision, precision);
    }
    const size = (p: Precision) => statSync(join(dir, `clip-${p}`, 'image_encoder.onnx')).size;
    // a tiny model: its graph and the unquantised parts (patch conv, positions, norms) weigh more
    // than in ViT-B/16 (bench/precision.ts: 0.50x and 0.26x there)
    assert.ok(size('fp16') < 0.55 * size('fp32'), `fp16 ${size('fp16')} vs fp32 ${size('fp32')}`);
    assert.ok(size('int8') < 0.45 * size('fp32'), `int8 ${size('int8')} vs fp32 ${size('fp32')}`);
    const fp16 = initializerTypes(join(dir, 'clip-fp16'));
    assert.ok(fp16.types.has(OnnxDataType.FLOAT16));
    assert.ok(fp16.float32Elements < 1024 * 20, 'only small initializers stay float32');
    assert.ok(initializerTypes(join(dir, 'clip-int8')).types.has(OnnxDataType.INT8));

    // the encoders on the same pixels: embeddings, then what the scores can do with them
    let px: Tensor<'float32'> | undefined;
    for await (const b of loadImageBatches(files, { batchSize: files.length, preprocess: { size: 32 } })) px = b.pixelValues;
    const emb = Object.fromEntries(await Promise.all(PRECISIONS.map(async (p) => [p, await encode(join(dir, `clip-${p}`), px!)] as const)));
    const v = Object.fromEntries(await Promise.all(PRECISIONS.map(async (p) => [p, await verdicts(join(dir, `clip-${p}`), files, m[p]!, { size: 32 })] as const)));
    // 1 − cos between fp32 and the other embeddings. fp16 rounds each weight by ≤ 2^-11 relative,
    // moving a 2-layer tower's output by ~1e-3 relative: 1 − cos ~ 1e-6. int8 rounds weights to
    // ±127 steps of their column's max and activations to 255 steps of their range: ~1% per
    // MatMul, ~3% through the tower's 14: 1 − cos ~ 5e-4.
    const limit = { fp16: 1e-5, int8: 5e-3 };
    const tf = SafetensorsFile.open(join(dir, 'clip-fp32', 'text_features.safetensors'));
    const scale = Math.exp(tf.readFloat32('logit_scale')[0]!);
    tf.close();
    const maxDelta = { fp16: 0, int8: 0 };
    for (const p of ['fp16', 'int8'] as const) {
      const global = oneMinusCos(emb.fp32!.image_embeds!, emb[p]!.image_embeds!, 40);
      const local = oneMinusCos(emb.fp32!.image_embeds_local!, emb[p]!.image_embeds_local!, 40);
      assert.ok(Math.max(...global, ...local) < limit[p], `${p}: max 1 − cos ${Math.max(...global, ...local)} ≥ ${limit[p]}`);
      // Scores: z = logits / T = (scale / T) · cos(image, text). An image's cosine with any unit
      // vector moves by at most ‖ê' − ê‖ = √(2(1 − cos)) =: θ, so each z by at most (scale/T)·θ;
      // a softmax probability moves by at most ½·max|Δz| (its gradient's ℓ1 norm is
      // 2p(1 − p) ≤ ½), and so does a max of them. Hence |Δ MCM| ≤ ½(scale/T)·θ_global and
      // |Δ GL-MCM| ≤ ½(scale/T)·(θ_global + θ_worst patch) (+ 1e-6 for float32 rounding).
      v[p]!.forEach((x, i) => {
        const ref = v.fp32![i]!;
        const thetaG = Math.sqrt(2 * Math.max(0, global[i]!));
        const thetaL = Math.sqrt(2 * Math.max(0, ...local.slice(i * 16, (i + 1) * 16)));
        const k = scale / 100 / 2;
        assert.ok(Math.abs(x.scores.mcm_score! - ref.scores.mcm_score!) <= k * thetaG + 1e-6, `${p} image ${i} mcm`);
        assert.ok(Math.abs(x.scores.gl_mcm_score! - ref.scores.gl_mcm_score!) <= k * (thetaG + thetaL) + 1e-6, `${p} image ${i} gl_mcm`);
        maxDelta[p] = Math.max(maxDelta[p], Math.abs(x.scores.gl_mcm_score! - ref.scores.gl_mcm_score!));
      });
      t.diagnostic(`${p}: max 1 − cos ${Math.max(...global, ...local).toExponential(2)}, max |Δ gl_mcm_score| ${maxDelta[p].toExponential(2)}`);
    }
  });

  it('int8: a batch scores exactly as its images one by one (one image per encoder run)', async () => {
    const d = await Detector.load(join(dir, 'clip-int8'), { threads: 1 });
    try {
      let px: Tensor<'float32'> | undefined;
      for await (const b of loadImageBatches(files.slice(0, 5), { batchSize: 5, preprocess: { size: 32 } })) px = b.pixelValues;
      const batched = await d.scoreBatch(px!);
      const n = 3 * 32 * 32;
      for (let i = 0; i < 5; i++) {
        const [alone] = await d.scoreBatch({ dtype: 'float32', data: px!.data.subarray(i * n, (i + 1) * n), dims: [1, 3, 32, 32] });
        assert.deepEqual(batched[i], alone);
      }
      // the encoder itself refuses a batch: its activation scales would be shared
      const s = await Session.create(new Uint8Array(readFileSync(join(dir, 'clip-int8', 'image_encoder.onnx'))), 'int8', { threads: 1 });
      await assert.rejects(s.run({ pixel_values: px! }), /pixel_values[\s\S]*index: 0 Got: 5 Expected: 1/);
      await s.release();
    } finally {
      await d.release();
    }
  });

  it('Swin V2 (the whole classifier baked): each precision bundles, scores and keeps its logits near fp32', async (t) => {
    const model = fixture('swinv2-tiny-a');
    const m: Partial<Record<Precision, BundleManifest>> = {};
    for (const precision of PRECISIONS) {
      m[precision] = await createBundle({ model, id: { kind: 'folder', name: 'toy', root: val }, precision, scorer: 'mcm_score', tpr: 0.9, out: join(dir, `swin-${precision}`), threads: 1 });
      assert.equal(m[precision]!.precision, precision);
      assert.equal(m[precision]!.head, 'classifier');
    }
    const size = (p: Precision) => statSync(join(dir, `swin-${p}`, 'image_encoder.onnx')).size;
    assert.ok(size('fp16') < 0.55 * size('fp32') && size('int8') < 0.4 * size('fp32'), `sizes ${PRECISIONS.map(size).join(', ')}`);
    const preprocess = swinPreprocess(await loadSwinV2Config(model));
    let px: Tensor<'float32'> | undefined;
    for await (const b of loadImageBatches(files, { batchSize: files.length, preprocess })) px = b.pixelValues;
    const out = Object.fromEntries(await Promise.all(PRECISIONS.map(async (p) => [p, await encode(join(dir, `swin-${p}`), px!)] as const)));
    const relRms = (a: Float32Array, b: Float32Array) => Math.sqrt(a.reduce((s, x, i) => s + (x - b[i]!) ** 2, 0) / b.reduce((s, x) => s + x * x, 0));
    // Relative rms change of the logits. fp16: ~2^-11 per weight, a few times that at the end.
    // int8: ~1% per MatMul (measured on these inputs, MatMul by MatMul), amplified through this
    // random-weight classifier's 57 MatMuls and its scaled cosine attention (logit scale up to
    // 100 sharpens the softmax): measured 5% on the logits, 10% on the local logits.
    const limit = { fp16: { logits: 1e-2, logits_local: 3e-2 }, int8: { logits: 0.2, logits_local: 0.4 } };
    for (const p of ['fp16', 'int8'] as const) {
      for (const name of ['logits', 'logits_local'] as const) {
        const e = relRms(out[p]![name]!, out.fp32![name]!);
        assert.ok(e < limit[p][name], `${p} ${name}: relative rms change ${e} ≥ ${limit[p][name]}`);
        t.diagnostic(`${p} ${name}: relative rms change ${e.toExponential(2)}`);
      }
      const v = await verdicts(join(dir, `swin-${p}`), files, m[p]!, preprocess);
      assert.equal(v.length, files.length);
      assert.ok(v.every((x) => Number.isFinite(x.scores.mcm_score!)));
    }
  });
});
