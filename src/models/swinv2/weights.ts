import { SafetensorsError } from '../../io/safetensors.js';
import { openTensorSource as openSource, type TensorSource } from '../../io/tensor-source.js';
import { mlpDim, numLabels, stageDim, type SwinV2Config } from './config.js';

export type { TensorSource };

/** HF name prefix of block `b` of stage `s`. */
export function blockPrefix(s: number, b: number): string {
  return `swinv2.encoder.layers.${s}.blocks.${b}`;
}

/** SeTAR's `W_up` of Swin V2 at [stage, block]: the block's `intermediate.dense.weight`. */
export function wUpName(s: number, b: number): string {
  return `${blockPrefix(s, b)}.intermediate.dense.weight`;
}

const SWAPPABLE = /^swinv2\.encoder\.layers\.\d+\.blocks\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|intermediate\.dense|output\.dense)\.weight$/;

/** Whether a tensor is a block Linear weight, fed to the graph at each run in [in, out] layout. */
export function isSwappable(name: string): boolean {
  return SWAPPABLE.test(name);
}

/** Non-persistent buffers that older checkpoints may carry; they are recomputed, never read. */
export function isIgnoredBuffer(name: string): boolean {
  return /\.(relative_coords_table|relative_position_index)$/.test(name);
}

/** Every tensor a `Swinv2ForImageClassification` checkpoint holds for this config, with its HF shape. */
export function expectedSwinV2Tensors(c: SwinV2Config): Map<string, number[]> {
  const m = new Map<string, number[]>();
  const e = c.embed_dim;
  m.set('swinv2.embeddings.patch_embeddings.projection.weight', [e, c.num_channels, c.patch_size[0], c.patch_size[1]]);
  m.set('swinv2.embeddings.patch_embeddings.projection.bias', [e]);
  m.set('swinv2.embeddings.norm.weight', [e]);
  m.set('swinv2.embeddings.norm.bias', [e]);
  const stages = c.depths.length;
  for (let s = 0; s < stages; s++) {
    const d = stageDim(c, s);
    const h = c.num_heads[s]!;
    const f = mlpDim(c, s);
    for (let b = 0; b < c.depths[s]!; b++) {
      const p = blockPrefix(s, b);
      m.set(`${p}.attention.self.logit_scale`, [h, 1, 1]);
      m.set(`${p}.attention.self.continuous_position_bias_mlp.0.weight`, [512, 2]);
      m.set(`${p}.attention.self.continuous_position_bias_mlp.0.bias`, [512]);
      m.set(`${p}.attention.self.continuous_position_bias_mlp.2.weight`, [h, 512]);
      m.set(`${p}.attention.self.query.weight`, [d, d]);
      if (c.qkv_bias) m.set(`${p}.attention.self.query.bias`, [d]);
      m.set(`${p}.attention.self.key.weight`, [d, d]);
      m.set(`${p}.attention.self.value.weight`, [d, d]);
      if (c.qkv_bias) m.set(`${p}.attention.self.value.bias`, [d]);
      m.set(`${p}.attention.output.dense.weight`, [d, d]);
      m.set(`${p}.attention.output.dense.bias`, [d]);
      m.set(`${p}.layernorm_before.weight`, [d]);
      m.set(`${p}.layernorm_before.bias`, [d]);
      m.set(`${p}.intermediate.dense.weight`, [f, d]);
      m.set(`${p}.intermediate.dense.bias`, [f]);
      m.set(`${p}.output.dense.weight`, [d, f]);
      m.set(`${p}.output.dense.bias`, [d]);
      m.set(`${p}.layernorm_after.weight`, [d]);
      m.set(`${p}.layernorm_after.bias`, [d]);
    }
    if (s < stages - 1) {
      m.set(`swinv2.encoder.layers.${s}.downsample.reduction.weight`, [2 * d, 4 * d]);
      m.set(`swinv2.encoder.layers.${s}.downsample.norm.weight`, [2 * d]);
      m.set(`swinv2.encoder.layers.${s}.downsample.norm.bias`, [2 * d]);
    }
  }
  const last = stageDim(c, stages - 1);
  m.set('swinv2.layernorm.weight', [last]);
  m.set('swinv2.layernorm.bias', [last]);
  m.set('classifier.weight', [numLabels(c), last]);
  m.set('classifier.bias', [numLabels(c)]);
  return m;
}

/** Checks that every expected tensor is present with its shape and a float dtype (extra tensors are ignored). */
export function validateSwinV2Checkpoint(cp: TensorSource, expected: ReadonlyMap<string, readonly number[]>): void {
  const missing = [...expected.keys()].filter((n) => !cp.has(n));
  if (missing.length) {
    throw new SafetensorsError(
      `checkpoint in '${cp.dir}' lacks ${missing.length} Swin V2 tensor(s), e.g. '${missing[0]}'${missing.length > 1 ? ` and '${missing[missing.length - 1]}'` : ''}`, cp.dir, missing[0]);
  }
  for (const [n, shape] of expected) {
    const e = cp.entry(n);
    if (e.shape.length !== shape.length || e.shape.some((v, i) => v !== shape[i])) {
      throw new SafetensorsError(`tensor '${n}' in '${cp.dir}' has shape [${e.shape.join(', ')}], expected [${shape.join(', ')}]`, cp.dir, n);
    }
    if (!['F32', 'F16', 'BF16', 'F64'].includes(e.dtype)) {
      throw new SafetensorsError(`tensor '${n}' in '${cp.dir}' has dtype ${e.dtype}, expected a float dtype`, cp.dir, n);
    }
  }
}

/** `model.safetensors` (or its index) if present, else `pytorch_model.bin` (or its index); recomputed buffers are left out. */
export async function openTensorSource(dir: string): Promise<TensorSource> {
  return openSource(dir, { ignore: isIgnoredBuffer });
}
