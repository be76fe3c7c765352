import { tensor, type Tensor } from '../../tensor.js';
import type { ClipModel } from '../clip/model.js';
import { CLIP_CONTEXT_LENGTH, type ClipTokenizer } from '../clip/tokenizer.js';
import { checkLocoopContext, type LocoopContext } from './context.js';
import { locoopInputsEmbeds, truncateLocoopIds } from './prompt.js';

/**
 * LoCoOp text features on a CLIP model: the context spliced into each prompt
 * ({@link locoopInputsEmbeds}), then the model's own text tower from layer 0
 * (`ClipModel.textFrom`), pooled at the end token's position + n.
 */

/** The positions a prompt of this model may use with the context: CLIP's 77, or fewer if the config has fewer. */
function textPositions(model: ClipModel): number {
  return Math.min(CLIP_CONTEXT_LENGTH, model.config.text_config.max_position_embeddings);
}

/**
 * Encodes prompts given as id rows (`[start, …, end]`, unpadded; longer ones are cut with
 * {@link truncateLocoopIds}) → `text_embeds` [N, P], not normalised. As `encodeTokenRows` does,
 * rows are sorted by length and batched, each batch padded only to its own longest row (with the
 * end token), and results come back in the original order.
 */
export async function encodeLocoopTokenRows(model: ClipModel, rows: readonly (readonly number[])[], c: LocoopContext): Promise<Tensor<'float32'>> {
  checkLocoopContext(c, model.config.text_config);
  const positions = textPositions(model);
  const cut = rows.map((r) => truncateLocoopIds(r, c.n, positions));
  const p = model.config.projection_dim;
  const out = new Float32Array(cut.length * p);
  const order = cut.map((_, i) => i).sort((a, b) => cut[a]!.length - cut[b]!.length || a - b);
  const chunk = 128; // rows padded together; textFrom splits further by the model's maxTextBatch
  const pad = model.config.text_config.eos_token_id;
  const tables = model.textEmbeddingTables();
  for (let start = 0; start < order.length; start += chunk) {
    const idx = order.slice(start, start + chunk);
    const length = Math.max(...idx.map((i) => cut[i]!.length));
    const ids = new Int32Array(idx.length * length).fill(pad);
    idx.forEach((r, b) => ids.set(cut[r]!, b * length));
    const t = { ids, batch: idx.length, length };
    const pool = model.poolPositions(t).map((x) => x + c.n);
    const emb = await model.textFrom(locoopInputsEmbeds(t, c, tables), 0, pool);
    idx.forEach((r, b) => out.set(emb.data.subarray(b * p, (b + 1) * p), r * p));
  }
  return tensor('float32', out, [cut.length, p], 'text_embeds');
}

/**
 * Prompts → LoCoOp `text_embeds` [N, P] (not normalised): tokenized, cut to 77 − n ids keeping
 * the end token, context spliced in after the start token.
 *
 * @example
 * const c = readLocoopContext('prompt_learner/model.pth.tar-50');
 * const text = await encodeLocoopTexts(model, tokenizer, locoopClassPrompts(['dog', 'cat']), c); // [2, 512]
 */
export function encodeLocoopTexts(model: ClipModel, tokenizer: ClipTokenizer, texts: readonly string[], c: LocoopContext): Promise<Tensor<'float32'>> {
  const rows = texts.map((t, i) => {
    if (typeof t !== 'string') throw new TypeError(`prompt ${i} is not a string`);
    return tokenizer.encode(t);
  });
  return encodeLocoopTokenRows(model, rows, c);
}
