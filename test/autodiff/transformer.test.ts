import { describe, it } from 'node:test';
import { GraphBuilder, float } from '../../src/onnx/graph-builder.js';
import { parseClipConfig } from '../../src/models/clip/config.js';
import type { HiddenAct, LoraAdapter } from '../../src/models/common/layers.js';
import { textTower, visionEmbeddings, visionTower, type LayerRun } from '../../src/models/clip/graph.js';
import { mulberry32 } from '../../src/models/clip/random.js';
import {
  encoderLayerWeights, expectedClipTensors, layerTensorName, textHeadWeights, visionEmbeddingsWeights, visionHeadWeights, type Tower,
} from '../../src/models/clip/weights.js';
import { constOf, gradCheck, randomValues } from './gradcheck.js';

/** Composite checks: a transformer block with a cross-entropy loss, and the CLIP graphs themselves. */

describe('autodiff: composite graphs', () => {
  it('pre-LN transformer block (causal attention, QuickGELU) + LogSoftmax cross-entropy, float64: d/dWq, d/dW1 (and d/dx)', async () => {
    const [b, s, d, heads, f, classes] = [2, 4, 8, 2, 16, 3];
    const hd = d / heads;
    const rand = mulberry32(42);
    const mat = (rows: number, cols: number) => randomValues(rows * cols, rand, -1 / Math.sqrt(rows), 1 / Math.sqrt(rows));
    const fixed = { Wk: mat(d, d), Wv: mat(d, d), Wo: mat(d, d), W2: mat(f, d), Wc: mat(d, classes) };
    await gradCheck('block', {
      dtype: 'DOUBLE',
      inputs: [
        { name: 'x', shape: [b, s, d], declared: ['batch', 'tokens', d] },
        { name: 'onehot', shape: [b, classes], declared: ['batch', classes], data: [0, 1, 0, 0, 0, 1], wrt: false },
        { name: 'Wq', shape: [d, d], data: mat(d, d) },
        { name: 'W1', shape: [d, f], data: mat(d, f) },
      ],
      build: (g, v) => {
        const c = (values: readonly number[], dims: readonly number[] = []) => constOf(g, 'DOUBLE', values, dims);
        const w = Object.fromEntries(Object.entries(fixed).map(([k, x]) => [k, c(x, k === 'W2' ? [f, d] : k === 'Wc' ? [d, classes] : [d, d])]));
        const ln = (x: string) => g.op('LayerNormalization', [x, c(randomValues(d, mulberry32(3), 0.5, 1.5), [d]), c(randomValues(d, mulberry32(4), -0.1, 0.1), [d])], { axis: -1, epsilon: float(1e-5) });
        const heads4 = (x: string, perm: number[]) => g.op('Transpose', [g.op('Reshape', [x, g.constInt64([0, 0, heads, hd])])], { perm });
        const x = v.x!;
        const h = ln(x);
        const q = g.op('Mul', [g.op('MatMul', [h, v.Wq!]), c([hd ** -0.5])]);
        const kt = heads4(g.op('MatMul', [h, w.Wk!]), [0, 2, 3, 1]);
        const vh = heads4(g.op('MatMul', [h, w.Wv!]), [0, 2, 1, 3]);
        // Causal mask as CLIP builds it: the strict upper triangle of a [S, S] matrix of lowest values.
        const len = g.op('Slice', [g.op('Shape', [x]), g.constInt64([1]), g.constInt64([2])]);
        const full = g.op('Expand', [c([-3.4028234663852886e38]), g.op('Concat', [len, len], { axis: 0 })]);
        const mask = g.op('Trilu', [full, g.constInt64([1])], { upper: 1 });
        const probs = g.op('Softmax', [g.op('Add', [g.op('MatMul', [heads4(q, [0, 2, 1, 3]), kt]), mask])], { axis: -1 });
        const ctx = g.op('Reshape', [g.op('Transpose', [g.op('MatMul', [probs, vh])], { perm: [0, 2, 1, 3] }), g.constInt64([0, 0, d])]);
        const h1 = g.op('Add', [x, g.op('MatMul', [ctx, w.Wo!])]);
        const u = g.op('MatMul', [ln(h1), v.W1!]);
        // QuickGELU u·σ(1.702u). The constant is [1, 1, 1], not a scalar: ONNX Runtime 1.30 fuses
        // the scalar form into com.microsoft.QuickGelu even in double graphs, which it cannot run.
        const gelu = g.op('Mul', [u, g.op('Sigmoid', [g.op('Mul', [u, c([1.702], [1, 1, 1])])])]);
        const h2 = g.op('Add', [h1, g.op('MatMul', [gelu, w.W2!])]);
        const logits = g.op('MatMul', [g.op('ReduceMean', [h2], { axes: [1], keepdims: 0 }), w.Wc!]);
        const ll = g.op('ReduceSum', [g.op('Mul', [v.onehot!, g.op('LogSoftmax', [logits], { axis: -1 })]), g.constInt64([-1])], { keepdims: 0 });
        return g.op('Neg', [g.op('ReduceMean', [ll], { keepdims: 0 })]);
      },
    });
  });

  it('CLIP graphs from src/models/clip/graph.ts (vision with GL-MCM local features, causal text, LoRA adapters), float32', async () => {
    const c = parseClipConfig({
      projection_dim: 6,
      text_config: { hidden_size: 8, intermediate_size: 16, num_attention_heads: 2, num_hidden_layers: 2, max_position_embeddings: 5, vocab_size: 10 },
      vision_config: { hidden_size: 8, intermediate_size: 16, num_attention_heads: 2, num_hidden_layers: 2, image_size: 8, patch_size: 4 },
    });
    const shapes = expectedClipTensors(c);
    const rand = mulberry32(7);
    const cache = new Map<string, Float32Array>();
    const src = (name: string): Float32Array => {
      let t = cache.get(name);
      if (!t) {
        const shape = shapes.get(name)!;
        const n = shape.reduce((a, b) => a * b, 1);
        const norm = /norm\d?\.weight$|layrnorm\.weight$/.test(name);
        t = Float32Array.from({ length: n }, () => (norm ? 1 + 0.2 * (rand() - 0.5) : (rand() * 2 - 1) * (name.endsWith('bias') ? 0.1 : Math.sqrt(3 / (shape[shape.length - 1] ?? 1)))));
        cache.set(name, t);
      }
      return t;
    };
    const run = (tower: Tower, n: number): LayerRun => ({
      layers: Array.from({ length: n }, (_, i) => encoderLayerWeights(src, c, tower, i)),
      prefixes: Array.from({ length: n }, (_, i) => layerTensorName(tower, i, '').slice(0, -1)),
    });
    const lora = new Map<string, LoraAdapter>([
      ['vision_model.encoder.layers.1.self_attn.q_proj', { rank: 2, scaling: 2 }],
      ['vision_model.encoder.layers.0.mlp.fc1', { rank: 2, scaling: 2 }],
      ['text_model.encoder.layers.1.self_attn.v_proj', { rank: 2, scaling: 2 }],
      ['visual_projection', { rank: 2, scaling: 2 }],
    ]);
    const v = c.vision_config;
    const t = c.text_config;
    const grid = v.image_size / v.patch_size;
    const opts = (tc: typeof v | typeof t, causal: boolean) => ({ heads: tc.num_attention_heads, eps: tc.layer_norm_eps, act: tc.hidden_act as HiddenAct, causal, lora });
    const adapterInputs = [...lora.keys()].flatMap((k) => [`${k}.lora_A`, `${k}.lora_B`]);
    await gradCheck('clip', {
      dtype: 'FLOAT',
      inputs: [
        { name: 'pixel_values', shape: [2, 3, 8, 8], declared: ['batch', 3, 8, 8] },
        { name: 'text_hidden', shape: [3, 5, 8], declared: ['classes', 'length', 8] },
        { name: 'pool_index', dtype: 'INT64', shape: [3], declared: ['classes'], data: [4, 7, 14] },
      ],
      build: (g: GraphBuilder, inp) => {
        const h0 = visionEmbeddings(g, inp.pixel_values!, visionEmbeddingsWeights(src), { hidden: v.hidden_size, channels: v.num_channels, patch: v.patch_size, grid, eps: v.layer_norm_eps });
        const img = visionTower(g, h0, run('vision', 2), visionHeadWeights(src, c), opts(v, false), { grid, local: true });
        const text = textTower(g, inp.text_hidden!, inp.pool_index!, run('text', 2), textHeadWeights(src, c), opts(t, true));
        const flat = (x: string) => g.op('Reshape', [x, g.constInt64([-1])]);
        return g.op('Concat', [flat(img.image_embeds), flat(img.image_embeds_local!), flat(text)], { axis: 0 });
      },
      implicit: { wrt: [...adapterInputs, 'vision_model.encoder.layers.0.mlp.fc2.weight', 'text_model.encoder.layers.0.self_attn.k_proj.weight'] },
      maxElements: 12,
      // float32 tolerances (gradcheck.ts TOL) with a smaller step: the largest error seen is ~2e-4
      // for gradients up to ~5.
      tol: { h: 5e-3 },
    });
  });
});
