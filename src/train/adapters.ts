import type { ClipModel } from '../models/clip/model.js';
import { transpose } from '../models/clip/graph.js';
import { loraSplit, type PruneMode } from '../lowrank/lowrank.js';
import { clipWeightName, swinWeightName, type LoraSetting } from '../lowrank/settings.js';
import type { SwinV2Model } from '../models/swinv2/model.js';
import { getSvd } from '../lowrank/svd-cache.js';
import type { Rng } from './augment.js';

/**
 * A LoRA adapter on one linear layer. `A` [in, r] and `B` [r, out] are MatMul layouts of PEFT's
 * `lora_A` [r, in] and `lora_B` [out, r]; the layer computes x·baseᵀ + scaling·(x·A)·B.
 */
export interface Adapter {
  /** HF name prefix of the layer, e.g. `vision_model.encoder.layers.11.mlp.fc1`. */
  readonly prefix: string;
  /** `[out, in]` */
  readonly shape: readonly [number, number];
  readonly rank: number;
  readonly scaling: number;
  /** Frozen base weight, HF layout [out, in]: the pruned W' (SeTAR+FT) or the original W (LoRA). */
  readonly base: Float32Array;
  readonly A: Float32Array;
  readonly B: Float32Array;
}

/**
 * SeTAR+FT's adapters (SPEC §7): for each setting with a rank r > 0, base = the pruned W' and
 * A/B the dropped minor part, A = diag(√s)·Vᵀ, B = U·diag(√s), scaling 1 — so base + B·A = W
 * at step 0.
 */
export async function setarAdapters(model: ClipModel, settings: readonly LoraSetting[], options: { mode?: PruneMode; seed?: number } = {}): Promise<Adapter[]> {
  const depth = { visual: model.visionLayerCount, text: model.textLayerCount };
  return setarAdaptersOf(model, settings, (s) => clipWeightName(s, depth), options);
}

/** What adapters need of a model: HF-layout weights and shapes by name. */
interface AdaptableModel {
  getOriginalWeight(name: string): Float32Array;
  weightShape(name: string): readonly number[];
}

/** {@link setarAdapters} for a Swin V2 classifier: settings `["visual", W, [stage, block], r]`. */
export async function swinSetarAdapters(model: SwinV2Model, settings: readonly LoraSetting[], options: { mode?: PruneMode; seed?: number } = {}): Promise<Adapter[]> {
  return setarAdaptersOf(model, settings, (s) => swinWeightName(s, model.config.depths), options);
}

async function setarAdaptersOf(model: AdaptableModel, settings: readonly LoraSetting[], weightName: (s: LoraSetting) => string, options: { mode?: PruneMode; seed?: number }): Promise<Adapter[]> {
  const out: Adapter[] = [];
  for (const s of settings) {
    if (s[3] === 0) continue;
    const name = weightName(s);
    const weight = model.getOriginalWeight(name);
    const shape = model.weightShape(name) as [number, number];
    const split = loraSplit({ weight, shape, ratio: s[3], mode: options.mode, seed: options.seed, factors: await getSvd(weight, shape), name });
    const r = split.rank;
    out.push({
      prefix: name.replace(/\.weight$/, ''), shape, rank: r, scaling: 1, base: split.pruned,
      A: transpose(split.loraA, r, shape[1]), B: transpose(split.loraB, shape[0], r),
    });
  }
  if (out.length === 0) throw new RangeError('the lora settings drop nothing (every ratio is 0): there is no minor part to fine-tune');
  return out;
}

/** Names of a model's linear layers that `target` (PEFT's `target_modules` entry) selects: the prefix itself or any ending with `.<target>`. */
export function matchTargetModules(model: ClipModel, targets: readonly string[]): string[] {
  const prefixes: string[] = [];
  for (const tower of ['vision_model', 'text_model']) {
    const n = tower === 'vision_model' ? model.visionLayerCount : model.textLayerCount;
    for (let i = 0; i < n; i++) {
      for (const m of ['self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.out_proj', 'mlp.fc1', 'mlp.fc2']) prefixes.push(`${tower}.encoder.layers.${i}.${m}`);
    }
  }
  prefixes.push('visual_projection', 'text_projection');
  const chosen = prefixes.filter((p) => targets.some((t) => p === t || p.endsWith(`.${t}`)));
  const unmatched = targets.filter((t) => !prefixes.some((p) => p === t || p.endsWith(`.${t}`)));
  if (unmatched.length) throw new RangeError(`target_modules ${unmatched.map((t) => `"${t}"`).join(', ')} match no layer of this CLIP model (e.g. "mlp.fc1", "self_attn.q_proj", "visual_projection")`);
  return chosen;
}

/**
 * Plain LoRA (PEFT's initialisation): A ~ U(−1/√in, 1/√in) (kaiming-uniform with a = √5),
 * B = 0, scaling alpha / r, base = the original weight.
 */
export function loraAdapters(model: ClipModel, options: { r: number; alpha: number; targetModules: readonly string[]; rng: Rng }): Adapter[] {
  return loraAdaptersOf(model, matchTargetModules(model, options.targetModules), options);
}

/** Block Linear layers of a Swin V2 model that `targets` select (e.g. `intermediate.dense`). */
export function matchSwinTargetModules(model: SwinV2Model, targets: readonly string[]): string[] {
  const prefixes: string[] = [];
  model.config.depths.forEach((n, s) => {
    for (let b = 0; b < n; b++) {
      for (const m of ['attention.self.query', 'attention.self.key', 'attention.self.value', 'attention.output.dense', 'intermediate.dense', 'output.dense']) prefixes.push(`swinv2.encoder.layers.${s}.blocks.${b}.${m}`);
    }
  });
  const hit = (p: string, t: string) => p === t || (p.endsWith(`.${t}`) && !(t === 'dense' || (t === 'output.dense' && p.endsWith('attention.output.dense'))));
  const chosen = prefixes.filter((p) => targets.some((t) => hit(p, t)));
  const unmatched = targets.filter((t) => !prefixes.some((p) => hit(p, t)));
  if (unmatched.length) throw new RangeError(`target_modules ${unmatched.map((t) => `"${t}"`).join(', ')} match no layer of this Swin V2 model (e.g. "intermediate.dense", "output.dense", "attention.self.query")`);
  return chosen;
}

/** {@link loraAdapters} for a Swin V2 classifier (block Linear layers only). */
export function swinLoraAdapters(model: SwinV2Model, options: { r: number; alpha: number; targetModules: readonly string[]; rng: Rng }): Adapter[] {
  return loraAdaptersOf(model, matchSwinTargetModules(model, options.targetModules), options);
}

function loraAdaptersOf(model: AdaptableModel, prefixes: readonly string[], options: { r: number; alpha: number; rng: Rng }): Adapter[] {
  return prefixes.map((prefix) => {
    const shape = model.weightShape(`${prefix}.weight`) as [number, number];
    const [out, inn] = shape;
    if (!Number.isInteger(options.r) || options.r < 1 || options.r > Math.min(out, inn)) {
      throw new RangeError(`lora_r ${options.r} for '${prefix}' [${out}, ${inn}] must be an integer in [1, ${Math.min(out, inn)}]`);
    }
    const bound = 1 / Math.sqrt(inn);
    const A = new Float32Array(inn * options.r);
    for (let i = 0; i < A.length; i++) A[i] = (options.rng() * 2 - 1) * bound;
    return { prefix, shape, rank: options.r, scaling: options.alpha / options.r, base: model.getOriginalWeight(`${prefix}.weight`), A, B: new Float32Array(options.r * out) };
  });
}

/** base + scaling·(A·B)ᵀ in HF layout [out, in], computed in float64 per element. */
export function mergeAdapter(a: Adapter): Float32Array {
  const [out, inn] = a.shape;
  const r = a.rank;
  const w = new Float32Array(out * inn);
  for (let o = 0; o < out; o++) {
    for (let i = 0; i < inn; i++) {
      let s = 0;
      for (let k = 0; k < r; k++) s += a.A[i * r + k]! * a.B[k * out + o]!;
      w[o * inn + i] = a.base[o * inn + i]! + a.scaling * s;
    }
  }
  return w;
}
