import { SafetensorsError } from '../../io/safetensors.js';
import { openTensorSource as openSource, type TensorSource } from '../../io/tensor-source.js';
import { mlpDim, numLabels, stageDim, type SwinV2Config } from './config.js';
import { show, WEIGHT_TYPES, type LowRankSetting, type WeightSlot, type WeightType } from '../../lowrank/settings.js';

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

/** Hugging Face module of each weight type inside a Swin V2 block. */
const SWIN_MODULE: Record<Exclude<WeightType, 'W_p'>, string> = {
  W_q: 'attention.self.query',
  W_k: 'attention.self.key',
  W_v: 'attention.self.value',
  W_o: 'attention.output.dense',
  W_up: 'intermediate.dense',
  W_down: 'output.dense',
};

/**
 * The Swin V2 (Hugging Face layout) tensor a setting modifies, e.g.
 * `['visual', 'W_up', [3, 1], 0.1]` → `swinv2.encoder.layers.3.blocks.1.intermediate.dense.weight`.
 *
 * @param depths blocks per stage (config `depths`).
 * @throws TypeError for a text-tower, `W_p` or non-[stage, block] setting; RangeError when the stage or block is out of range.
 */
export function swinWeightName(setting: LowRankSetting, depths: readonly number[]): string {
  const [tower, weight, layer] = setting;
  if (tower !== 'visual') throw new TypeError(`${show(setting)}: Swin V2 has only the "visual" tower, got ${show(tower)}`);
  if (weight === 'W_p') throw new TypeError(`${show(setting)}: Swin V2 has no projection (W_p); weights: ${WEIGHT_TYPES.filter((w) => w !== 'W_p').map(show).join(', ')}`);
  const module = SWIN_MODULE[weight];
  if (module === undefined) throw new TypeError(`weight ${show(weight)} is not one of ${WEIGHT_TYPES.map(show).join(', ')}`);
  if (!Array.isArray(layer) || layer.length !== 2) {
    throw new TypeError(`layer ${show(layer)} of ${show(setting)} is not a Swin [stage, block] index`);
  }
  const [stage, block] = layer as readonly [number, number];
  if (!Number.isInteger(stage) || stage < 0 || stage >= depths.length) {
    throw new RangeError(`stage ${stage} of ${show(setting)} is out of range: the model has ${depths.length} stages, allowed [0, ${depths.length - 1}]`);
  }
  const nb = depths[stage]!;
  if (!Number.isInteger(block) || block < 0 || block >= nb) {
    throw new RangeError(`block ${block} of ${show(setting)} is out of range: stage ${stage} has ${nb} blocks, allowed [0, ${nb - 1}]`);
  }
  return `swinv2.encoder.layers.${stage}.blocks.${block}.${module}.weight`;
}

/**
 * The slots of `visual_only_swin` (SPEC §6): `[stage, block]` from the last stage and, within a
 * stage, the last block first ([3,1], [3,0], [2,17], …, [0,0] for Swin V2-B).
 * @param depths blocks per stage
 */
export function swinSearchSlots(weight: WeightType, depths: readonly number[]): WeightSlot[] {
  const slots: WeightSlot[] = [];
  for (let s = depths.length - 1; s >= 0; s--) for (let b = depths[s]! - 1; b >= 0; b--) slots.push({ tower: 'visual', weight, layer: [s, b] });
  return slots;
}

/**
 * The block Linear layers (HF prefixes) that PEFT-style `target_modules` select: a prefix equal to
 * a target or ending with `.<target>`, except that `dense` alone is ambiguous and `output.dense`
 * means the MLP's, not `attention.output.dense`. Throws naming the targets that match nothing.
 */
export function matchSwinTargetModules(depths: readonly number[], targets: readonly string[]): string[] {
  const prefixes: string[] = [];
  depths.forEach((n, s) => {
    for (let b = 0; b < n; b++) {
      for (const m of ['attention.self.query', 'attention.self.key', 'attention.self.value', 'attention.output.dense', 'intermediate.dense', 'output.dense']) prefixes.push(`${blockPrefix(s, b)}.${m}`);
    }
  });
  const hit = (p: string, t: string) => p === t || (p.endsWith(`.${t}`) && !(t === 'dense' || (t === 'output.dense' && p.endsWith('attention.output.dense'))));
  const chosen = prefixes.filter((p) => targets.some((t) => hit(p, t)));
  const unmatched = targets.filter((t) => !prefixes.some((p) => hit(p, t)));
  if (unmatched.length) throw new RangeError(`target_modules ${unmatched.map((t) => `"${t}"`).join(', ')} match no layer of this Swin V2 model (e.g. "intermediate.dense", "output.dense", "attention.self.query")`);
  return chosen;
}
