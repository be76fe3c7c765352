import type { Tensor } from '../../tensor.js';
import type { ClipPipeline } from './pipeline.js';
import type { TokenIds } from './model.js';

/**
 * How prompts enter a CLIP text tower. Plain CLIP embeds their token ids; a model that carries a
 * learned context (LoCoOp, models/locoop/) splices it in after the start token. Everything the
 * CLIP family computes from class prompts — zero-shot logits, `embed --texts`, the search's text
 * tower, the training graph's text side, bundles — goes through one of these.
 */
export interface ClipPromptEncoder {
  /** Prompts → `text_embeds` [N, P], not normalised. */
  encode(texts: readonly string[]): Promise<Tensor<'float32'>>;
  /** Prompts as one padded batch: the hidden states entering text layer 0, and where each is pooled. */
  layer0(texts: readonly string[]): Promise<TextLayer0>;
}

/** A padded batch of prompts at the entry of text layer 0. */
export interface TextLayer0 {
  /** [N, L, D] */
  readonly hidden: Tensor<'float32'>;
  /** [N]: the row of each prompt that is pooled (its end token). */
  readonly positions: Int32Array;
}

/** Unpadded id rows → one batch padded with `pad` to the longest row. */
export function padTokenRows(rows: readonly (readonly number[])[], pad: number): TokenIds {
  const length = Math.max(...rows.map((r) => r.length));
  const ids = new Int32Array(rows.length * length).fill(pad);
  rows.forEach((r, i) => ids.set(r, i * length));
  return { ids, batch: rows.length, length };
}

/** CLIP's own prompts: token + position embeddings of the ids (cut to 77 keeping the end token), pooled at the end token. */
export function plainPromptEncoder(clip: ClipPipeline): ClipPromptEncoder {
  const model = clip.model;
  return {
    encode: (texts) => clip.encodeTexts(texts),
    async layer0(texts) {
      const tokens = padTokenRows(clip.tokenize(texts), model.config.text_config.eos_token_id);
      return { hidden: await model.textEmbeddings(tokens), positions: model.poolPositions(tokens) };
    },
  };
}
