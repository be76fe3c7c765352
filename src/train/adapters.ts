import { loraSplit, type PruneMode } from '../lowrank/lowrank.js';
import type { LowRankSetting, LowRankTarget } from '../lowrank/settings.js';
import { getSvd } from '../lowrank/svd-cache.js';
import { transpose } from '../models/common/layers.js';
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

/** What adapters need of a model: the weight a setting names, HF-layout weights and shapes, its Linear layers. */
export interface AdaptableModel extends Pick<LowRankTarget, 'weightName' | 'getOriginalWeight' | 'weightShape'> {
  /** The Linear layers (HF prefixes) that PEFT-style `target_modules` select. */
  matchTargetModules(targets: readonly string[]): string[];
}

/**
 * SeTAR+FT's adapters (SPEC §7): for each setting with a rank r > 0, base = the pruned W' and
 * A/B the dropped minor part, A = diag(√s)·Vᵀ, B = U·diag(√s), scaling 1 — so base + B·A = W
 * at step 0.
 */
export async function setarAdapters(model: Pick<AdaptableModel, 'weightName' | 'getOriginalWeight' | 'weightShape'>, settings: readonly LowRankSetting[], options: { mode?: PruneMode; seed?: number } = {}): Promise<Adapter[]> {
  const out: Adapter[] = [];
  for (const s of settings) {
    if (s[3] === 0) continue;
    const name = model.weightName(s);
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

/**
 * Plain LoRA (PEFT's initialisation) on the Linear layers `targetModules` select:
 * A ~ U(−1/√in, 1/√in) (kaiming-uniform with a = √5), B = 0, scaling alpha / r, base = the
 * original weight.
 */
export function loraAdapters(model: Pick<AdaptableModel, 'matchTargetModules' | 'getOriginalWeight' | 'weightShape'>, options: { r: number; alpha: number; targetModules: readonly string[]; rng: Rng }): Adapter[] {
  return loraAdaptersOf(model, model.matchTargetModules(options.targetModules), options);
}

function loraAdaptersOf(model: Pick<AdaptableModel, 'getOriginalWeight' | 'weightShape'>, prefixes: readonly string[], options: { r: number; alpha: number; rng: Rng }): Adapter[] {
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
