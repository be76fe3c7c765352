import type { ClipPipeline } from '../clip/pipeline.js';
import { padTokenRows, type ClipPromptEncoder } from '../clip/prompts.js';
import { CLIP_CONTEXT_LENGTH } from '../clip/tokenizer.js';
import type { LocoopContext } from './context.js';
import { locoopInputsEmbeds, truncateLocoopIds } from './prompt.js';
import { encodeLocoopTexts } from './text.js';

/**
 * LoCoOp's prompts on a CLIP model (SPEC §9): each prompt's ids cut to 77 − n keeping the end
 * token, the context (read from `context()` at each call, so a trained context takes effect at
 * once) spliced in after the start token with positions shifted by n, pooled at the end
 * token's position + n.
 */
export function locoopPromptEncoder(clip: ClipPipeline, context: () => LocoopContext): ClipPromptEncoder {
  const model = clip.model;
  const positions = Math.min(CLIP_CONTEXT_LENGTH, model.config.text_config.max_position_embeddings);
  return {
    encode: (texts) => encodeLocoopTexts(model, clip.tokenizer, texts, context()),
    async layer0(texts) {
      const c = context();
      const rows = texts.map((t, i) => {
        if (typeof t !== 'string') throw new TypeError(`prompt ${i} is not a string`);
        return truncateLocoopIds(clip.tokenizer.encode(t), c.n, positions);
      });
      const tokens = padTokenRows(rows, model.config.text_config.eos_token_id);
      return {
        hidden: locoopInputsEmbeds(tokens, c, model.textEmbeddingTables()),
        positions: model.poolPositions(tokens).map((p) => p + c.n),
      };
    },
  };
}
