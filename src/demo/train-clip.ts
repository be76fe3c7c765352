import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DIGIT_CLASSES, FASHION_CLASSES, splitOf, type Gray28 } from './datasets.js';
import { CLIP_MEAN, CLIP_STD } from '../image/preprocess.js';
import { writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { parseClipConfig, type ClipConfig } from '../models/clip/config.js';
import { transpose } from '../models/common/layers.js';
import { randomClipTensors } from '../models/clip/random.js';
import { ClipTokenizer } from '../models/clip/tokenizer.js';
import { dataFile } from '../paths.js';
import { SeededRng } from '../rng.js';
import { Session } from '../runtime/session.js';
import { tensor, type Tensor } from '../tensor.js';
import { clipContrastiveGraph } from './clip-contrastive-graph.js';
import { AdamW, type Param } from '../train/optimizer.js';
import { learningRate } from '../train/schedule.js';

/** The demo CLIP's architecture: 28-pixel images in 4x4 patches of 7, small towers, CLIP's real tokenizer. */
export const DEMO_CLIP_CONFIG = {
  architectures: ['CLIPModel'],
  model_type: 'clip',
  projection_dim: 64,
  logit_scale_init_value: 2.6592,
  text_config: { vocab_size: 49408, hidden_size: 64, intermediate_size: 256, num_hidden_layers: 3, num_attention_heads: 4, max_position_embeddings: 16, hidden_act: 'quick_gelu', bos_token_id: 49406, eos_token_id: 49407, pad_token_id: 1 },
  vision_config: { image_size: 28, patch_size: 7, num_channels: 3, hidden_size: 64, intermediate_size: 256, num_hidden_layers: 4, num_attention_heads: 4, hidden_act: 'quick_gelu' },
} as const;

/** Caption templates; each training pair draws one. */
export const CAPTION_TEMPLATES = ['a photo of a {}', 'a picture of a {}', 'an image of a {}', 'a {}', 'a small {}', 'a drawing of a {}'];

/** Options of {@link trainDemoClip}. */
export interface TrainClipOptions {
  readonly out: string;
  readonly steps: number;
  readonly batchSize: number;
  readonly learningRate: number;
  readonly seed: number;
  readonly threads?: number;
  readonly log?: (line: string) => void;
}

/** Grey 28x28 → CLIP-normalised RGB CHW, exactly as the evaluation pipeline sees its 28x28 PNGs. */
export function grayToPixels(img: Gray28, out: Float32Array, offset: number): void {
  for (let c = 0; c < 3; c++) {
    for (let i = 0; i < 784; i++) out[offset + c * 784 + i] = Math.fround(Math.fround(Math.fround(img[i]! / 255) - Math.fround(CLIP_MEAN[c]!)) / Math.fround(CLIP_STD[c]!));
  }
}

/**
 * Trains the demo CLIP from scratch, contrastively, on image/caption pairs of all 20 classes
 * (Fashion-MNIST clothes and MNIST digits, training split only; captions from the class name and
 * a random template) with AdamW and a cosine schedule, then writes it in HF layout (F16 weights,
 * CLIP's tokenizer files) to `out`.
 */
export async function trainDemoClip(o: TrainClipOptions): Promise<{ finalLoss: number; config: ClipConfig }> {
  const log = o.log ?? (() => undefined);
  const config = parseClipConfig(DEMO_CLIP_CONFIG);
  const values = randomClipTensors(config, o.seed);
  values.get('logit_scale')!.data[0] = Math.log(1 / 0.07); // CLIP's initial temperature
  const src = (name: string) => values.get(name)!.data;
  const graph = clipContrastiveGraph(config, src);
  const session = await Session.create(graph.bytes, 'clip_contrastive', { memoryArena: true, threads: o.threads });

  // Trainable values as fed: matrices in MatMul layout, the rest with the graph's dims.
  const fed = new Map<string, { value: Float32Array; dims: readonly number[] }>();
  for (const name of graph.matrices) {
    const [out, inn] = values.get(name)!.shape as [number, number];
    fed.set(name, { value: transpose(values.get(name)!.data, out, inn), dims: [inn, out] });
  }
  for (const [name, dims] of graph.params) fed.set(name, { value: values.get(name)!.data, dims });
  const params: Param[] = [...fed].map(([name, f]) => ({ name, value: f.value, decay: f.dims.length >= 2 && !name.includes('position') }));
  const opt = new AdamW(params, { beta1: 0.9, beta2: 0.98, eps: 1e-6, weightDecay: 0.1 });

  // Training pairs: every class's training split.
  const classes = [...FASHION_CLASSES, ...DIGIT_CLASSES];
  const images = [...splitOf('fashion', 'train'), ...splitOf('digits', 'train')];
  const tokenizer = await ClipTokenizer.fromDir(dataFile('clip-tokenizer'));
  const captions = classes.map((c) => CAPTION_TEMPLATES.map((t) => tokenizer.encode(t.replace('{}', c))));
  const longest = Math.max(...captions.flat().map((r) => r.length));
  if (longest > config.text_config.max_position_embeddings) throw new Error(`a caption has ${longest} tokens, more than the model's ${config.text_config.max_position_embeddings} positions`);
  const rng = new SeededRng(o.seed + 1);
  const B = o.batchSize;
  const warmup = Math.min(100, Math.floor(o.steps / 10));
  let finalLoss = NaN;
  const t0 = performance.now();
  for (let step = 0; step < o.steps; step++) {
    const px = new Float32Array(B * 3 * 784);
    const cls: number[] = [];
    const rows: number[][] = [];
    for (let b = 0; b < B; b++) {
      const c = Math.floor(rng.next() * classes.length);
      const pool = images[c]!;
      grayToPixels(pool[Math.floor(rng.next() * pool.length)]!, px, b * 3 * 784);
      cls.push(c);
      rows.push(captions[c]![Math.floor(rng.next() * CAPTION_TEMPLATES.length)]!);
    }
    const L = config.text_config.max_position_embeddings;
    const ids = new BigInt64Array(B * L).fill(49407n);
    const poolIndex = new BigInt64Array(B);
    rows.forEach((r, b) => {
      r.forEach((id, i) => (ids[b * L + i] = BigInt(id)));
      poolIndex[b] = BigInt(b * L + r.length - 1);
    });
    // pairs of the same class share the target mass: no false negatives within a batch
    const targets = new Float32Array(B * B);
    for (let i = 0; i < B; i++) {
      const same = cls.filter((c) => c === cls[i]).length;
      for (let j = 0; j < B; j++) if (cls[j] === cls[i]) targets[i * B + j] = 1 / same;
    }
    const feeds: Record<string, Tensor> = {
      pixel_values: tensor('float32', px, [B, 3, 28, 28], 'pixel_values'),
      input_ids: tensor('int64', ids, [B, L], 'input_ids'),
      pool_index: tensor('int64', poolIndex, [B], 'pool_index'),
      targets: tensor('float32', targets, [B, B], 'targets'),
    };
    for (const [name, f] of fed) feeds[name] = tensor('float32', f.value, f.dims, name);
    const out = await session.run(feeds);
    finalLoss = (out.loss!.data as Float32Array)[0]!;
    if (!Number.isFinite(finalLoss)) throw new Error(`the contrastive loss became ${finalLoss} at step ${step}; lower the learning rate`);
    opt.step(new Map([...graph.gradients].map(([n, g]) => [n, out[g]!.data as Float32Array])), learningRate('cosine', o.learningRate, step, o.steps, warmup));
    const ls = fed.get('logit_scale')!.value;
    ls[0] = Math.min(ls[0]!, Math.log(100)); // CLIP clamps its temperature at 100
    if (step % 50 === 0 || step === o.steps - 1) log(`step ${step}/${o.steps}: loss ${finalLoss.toFixed(4)}, logit scale ${Math.exp(ls[0]!).toFixed(1)}, ${((performance.now() - t0) / 1000).toFixed(0)} s`);
  }
  await session.release();

  // HF layout: matrices back to [out, in], F16 storage (logit_scale stays F32, as in OpenAI's checkpoints).
  mkdirSync(o.out, { recursive: true });
  const tensors: Record<string, TensorToWrite> = {};
  for (const [name, t] of values) {
    const f = fed.get(name)!;
    const data = graph.matrices.includes(name) ? transpose(f.value, f.dims[0]!, f.dims[1]!) : f.value;
    tensors[name] = { dtype: name === 'logit_scale' ? 'F32' : 'F16', shape: t.shape, data };
  }
  writeSafetensors(join(o.out, 'model.safetensors'), tensors);
  writeFileSync(join(o.out, 'config.json'), JSON.stringify({ ...DEMO_CLIP_CONFIG, torch_dtype: 'float16' }, null, 2) + '\n');
  for (const f of ['vocab.json', 'merges.txt', 'special_tokens_map.json', 'tokenizer_config.json']) copyFileSync(dataFile(`clip-tokenizer/${f}`), join(o.out, f));
  return { finalLoss, config };
}
