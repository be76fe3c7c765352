import { truncateLocoopIds } from './prompt.js';

/**
 * CoOp's fixed token vectors of each class prompt, as its PromptLearner registers them
 * (`token_prefix`, `token_suffix` of a LoCoOp checkpoint's state dict): the prompt
 * `"X … X {class prompt}"` with n placeholders is tokenized to 77 ids (clip.tokenize pads with 0)
 * and embedded with the token table only — no positions; `token_prefix` is row 0 (the start
 * token), `token_suffix` the rows after the n placeholders (class tokens, end token, padding).
 * Loaders (SeTAR, LoCoOp's Dassl `load_model`) drop both; they are written so the file has the
 * layout LoCoOp's own code expects.
 */
export interface CoopTokenBuffers {
  /** [classes, 1, width] */
  readonly tokenPrefix: Float32Array;
  /** [classes, positions − 1 − n, width] */
  readonly tokenSuffix: Float32Array;
  readonly classes: number;
  readonly suffixLength: number;
  readonly width: number;
}

/**
 * The buffers for class prompts given as id rows (`[start, …, end]`, e.g. the tokens of
 * `"{label}."`), with n context vectors; rows too long for 77 − n ids are cut as
 * {@link truncateLocoopIds} cuts them (CoOp itself would refuse them).
 *
 * @example
 * const b = coopTokenBuffers(rows, 16, model.textEmbeddingTables().token_embedding, 512);
 * // b.tokenPrefix: [C, 1, 512], b.tokenSuffix: [C, 60, 512]
 */
export function coopTokenBuffers(rows: readonly (readonly number[])[], n: number, tokenEmbedding: Float32Array, width: number, positions = 77): CoopTokenBuffers {
  const vocab = tokenEmbedding.length / width;
  if (!Number.isInteger(vocab)) throw new RangeError(`token table of ${tokenEmbedding.length} values is not [vocab, ${width}]`);
  const suffixLength = positions - 1 - n;
  const classes = rows.length;
  const tokenPrefix = new Float32Array(classes * width);
  const tokenSuffix = new Float32Array(classes * suffixLength * width);
  const row = (id: number, c: number, at: string) => {
    if (!(Number.isInteger(id) && id >= 0 && id < vocab)) throw new RangeError(`class prompt ${c}: id ${id} at ${at} is outside the vocabulary [0, ${vocab})`);
    return tokenEmbedding.subarray(id * width, (id + 1) * width);
  };
  rows.forEach((r, c) => {
    const ids = truncateLocoopIds(r, n, positions);
    tokenPrefix.set(row(ids[0]!, c, 'position 0'), c * width);
    for (let j = 0; j < suffixLength; j++) {
      const id = j + 1 < ids.length ? ids[j + 1]! : 0; // clip.tokenize's 0 padding
      tokenSuffix.set(row(id, c, `position ${j + 1}`), (c * suffixLength + j) * width);
    }
  });
  return { tokenPrefix, tokenSuffix, classes, suffixLength, width };
}
