import { tensor, type Tensor } from '../../tensor.js';
import type { TextEmbeddingsWeights } from '../clip/graph.js';
import type { TokenIds } from '../clip/model.js';
import { fillTemplate } from '../clip/pipeline.js';
import type { LocoopContext } from './context.js';

/**
 * LoCoOp's text input (SPEC §9; official SeTAR `modeling_locoop`, CoOp's PromptLearner): the
 * context vectors go right after the start token and every later token moves n positions on.
 * For ids `[start, t1 … tk, end]` the hidden states entering text layer 0 are
 *   [emb(start)+pos0, ctx_1+pos1, …, ctx_n+pos_n, emb(t1)+pos_{n+1}, …, emb(end)+pos_{n+k+1}]
 * and the prompt is pooled at its end token's position + n.
 */

/** LoCoOp's class prompt: the label and a period; the context takes the place of "a photo of a" (SPEC §9). */
export const LOCOOP_CLASS_TEMPLATE = '{}.';

/** Class prompts of a LoCoOp model: `"{label}."`, or the given template filled with each label. */
export function locoopClassPrompts(labels: readonly string[], template: string = LOCOOP_CLASS_TEMPLATE): string[] {
  return labels.map((l) => fillTemplate(template, l));
}

/**
 * Cuts a prompt's ids so that they and `n` context vectors fit in `positions` (77 for CLIP):
 * at most `positions − n` ids; a longer prompt keeps its first `positions − n − 1` ids (start token
 * included) and its end token — CoOp's layout `[start, X×n, tokens…, end]` truncated to 77 as
 * `clip.tokenize(truncate=True)` truncates, with the n placeholders spliced out.
 *
 * @example
 * truncateLocoopIds([49406, ...Array(90).fill(320), 49407], 16).length; // 61 = 77 − 16
 */
export function truncateLocoopIds(ids: readonly number[], n: number, positions = 77): number[] {
  const max = positions - n;
  if (!(Number.isInteger(n) && n >= 0 && max >= 2)) {
    throw new RangeError(`n_ctx ${n} must be an integer in [0, ${positions - 2}] to leave room for the start and end tokens in ${positions} positions`);
  }
  if (ids.length < 2) throw new RangeError(`prompt ids [${ids.join(', ')}] need at least a start and an end token`);
  return ids.length <= max ? [...ids] : [...ids.slice(0, max - 1), ids[ids.length - 1]!];
}

/**
 * The hidden states entering text layer 0 for a padded batch of prompt ids with the LoCoOp
 * context spliced in: `t` [B, L] → [B, L + n, D] float32 (layout in the module comment; padding
 * ids after the end token are embedded like any token, and the causal mask keeps them from
 * reaching the end token). Needs L + n ≤ the position table's rows: cut long prompts with
 * {@link truncateLocoopIds} first.
 */
export function locoopInputsEmbeds(t: TokenIds, c: LocoopContext, tables: TextEmbeddingsWeights): Tensor<'float32'> {
  const { token_embedding: tok, position_embedding: pos } = tables;
  const d = c.width;
  const positions = pos.length / d;
  const vocab = tok.length / d;
  if (!Number.isInteger(positions) || !Number.isInteger(vocab)) {
    throw new RangeError(`LoCoOp context width ${d} does not divide the text embedding tables (${tok.length} and ${pos.length} values); check it with checkLocoopContext`);
  }
  if (t.ids.length !== t.batch * t.length || t.length < 1) throw new RangeError(`'input_ids': ${t.ids.length} ids for [${t.batch}, ${t.length}]`);
  const n = c.n;
  const len = t.length + n;
  if (len > positions) {
    throw new RangeError(`'input_ids' length ${t.length} plus n_ctx ${n} exceeds the ${positions} text positions; cut prompts with truncateLocoopIds`);
  }
  const out = new Float32Array(t.batch * len * d);
  for (let b = 0; b < t.batch; b++) {
    for (let j = 0; j < t.length; j++) {
      const id = Number(t.ids[b * t.length + j]);
      if (!(Number.isInteger(id) && id >= 0 && id < vocab)) throw new RangeError(`'input_ids' holds id ${id} at [${b}, ${j}]; allowed [0, ${vocab})`);
      const p = j === 0 ? 0 : j + n;
      const o = (b * len + p) * d;
      for (let i = 0; i < d; i++) out[o + i] = tok[id * d + i]! + pos[p * d + i]!;
    }
    for (let k = 0; k < n; k++) {
      const o = (b * len + 1 + k) * d;
      for (let i = 0; i < d; i++) out[o + i] = c.ctx[k * d + i]! + pos[(1 + k) * d + i]!;
    }
  }
  return tensor('float32', out, [t.batch, len, d], 'inputs_embeds');
}
