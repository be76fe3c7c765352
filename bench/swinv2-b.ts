/**
 * Random-weight Swin V2-B (patch 4, window 16, 256 px; HF microsoft/swinv2-base-patch4-window16-256's
 * shapes) on ONNX Runtime: images/s at batch 8 and 32, and the GFLOP/s that implies
 * (2 FLOPs per multiply-add of the Linear layers, attention matmuls and patch merging).
 *   npm run bench:swin
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeSafetensors, type TensorToWrite } from '../src/io/safetensors.js';
import { parseSwinV2Config, stageDim, mlpDim } from '../src/models/swinv2/config.js';
import { expectedSwinV2Tensors } from '../src/models/swinv2/weights.js';
import { SwinV2Model } from '../src/models/swinv2/model.js';
import { mulberry32 } from '../src/models/clip/random.js';
import { defaultThreads } from '../src/runtime/session.js';
import { tensor } from '../src/tensor.js';

const CONFIG = {
  model_type: 'swinv2', image_size: 256, patch_size: 4, embed_dim: 128, depths: [2, 2, 18, 2], num_heads: [4, 8, 16, 32],
  window_size: 16, pretrained_window_sizes: [0, 0, 0, 0], num_labels: 1000,
};

/** Multiply-adds of one 256-px image. */
function macs(): number {
  const c = parseSwinV2Config(CONFIG);
  let side = c.image_size[0] / c.patch_size[0];
  let total = side * side * c.embed_dim * 3 * c.patch_size[0] * c.patch_size[1];
  for (let s = 0; s < c.depths.length; s++) {
    const d = stageDim(c, s);
    const f = mlpDim(c, s);
    const win = Math.min(c.window_size, side);
    const tokens = Math.ceil(side / win) ** 2 * win * win; // padded
    const perBlock = tokens * (4 * d * d + 2 * d * f) + 2 * tokens * win * win * d;
    total += c.depths[s]! * perBlock;
    if (s < c.depths.length - 1) {
      side /= 2;
      total += side * side * 4 * d * 2 * d;
    }
  }
  return total + stageDim(c, c.depths.length - 1) * 1000;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'setar-bench-swin-'));
  try {
    writeFileSync(join(dir, 'config.json'), JSON.stringify(CONFIG));
    const rand = mulberry32(1);
    const tensors: Record<string, TensorToWrite> = {};
    for (const [name, shape] of expectedSwinV2Tensors(parseSwinV2Config(CONFIG))) {
      const n = shape.reduce((a, b) => a * b, 1);
      const data = new Float32Array(n);
      if (name.endsWith('logit_scale')) data.fill(Math.log(10));
      else if (/norm.*weight$|layernorm.*weight$/.test(name)) data.fill(1);
      else if (!name.endsWith('bias')) for (let i = 0; i < n; i++) data[i] = (rand() * 2 - 1) * 0.035;
      tensors[name] = { dtype: 'F32', shape, data };
    }
    writeSafetensors(join(dir, 'model.safetensors'), tensors);
    const model = await SwinV2Model.load(dir);
    const gmac = macs() / 1e9;
    console.log(`Swin V2-B 256 px, random weights, ${defaultThreads()} threads; ${gmac.toFixed(2)} GMAC (${(2 * gmac).toFixed(2)} GFLOP) per image`);
    for (const batch of [8, 32]) {
      const px = new Float32Array(batch * 3 * 256 * 256);
      for (let i = 0; i < px.length; i++) px[i] = rand() * 2 - 1;
      const input = tensor('float32', px, [batch, 3, 256, 256], 'pixel_values');
      await model.classify(input); // warm-up (graph build + first run)
      const runs = batch === 8 ? 3 : 2;
      const t0 = performance.now();
      for (let r = 0; r < runs; r++) await model.classify(input);
      const s = (performance.now() - t0) / 1000;
      const ips = (batch * runs) / s;
      console.log(`batch ${batch}: ${ips.toFixed(2)} images/s, ${(ips * 2 * gmac).toFixed(1)} GFLOP/s`);
    }
    await model.dispose();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

await main();
