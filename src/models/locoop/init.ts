import { SeededRng } from '../../rng.js';
import type { TextEmbeddingsWeights } from '../clip/graph.js';
import type { ClipTokenizer } from '../clip/tokenizer.js';
import type { LocoopContext } from './context.js';

/** CoOp's number of context vectors when neither a phrase nor n_ctx says otherwise (SPEC §9). */
export const DEFAULT_N_CTX = 16;

/** CoOp's random initialisation: N(0, std²) with std 0.02. */
export const CTX_INIT_STD = 0.02;

/** How {@link initLocoopContext} starts a context. */
export interface LocoopContextInit {
  /** A phrase whose token embeddings become the context (`"a photo of a"` → 4 vectors); null or absent: random. */
  readonly phrase?: string | null;
  /** The number of vectors; with a phrase it must equal the phrase's token count. */
  readonly nCtx?: number;
  /** How the caller spelled nCtx, for messages (default `n_ctx`). */
  readonly nCtxName?: string;
  /** Seed of the random initialisation. */
  readonly seed: number;
}

/**
 * A fresh LoCoOp context, as CoOp's PromptLearner initialises one: from a phrase, the rows of its
 * tokens (ids 1 … n of `[start, t1 … tn, end]`) in the token table — token embeddings only, the
 * positions are added when prompts are built; otherwise `nCtx` (default 16) vectors drawn from
 * N(0, 0.02²) with the seed (Box–Muller over a seeded mulberry32).
 *
 * @example
 * const c = initLocoopContext(tokenizer, model.textEmbeddingTables(), 512, { phrase: 'a photo of a', seed: 1 });
 * // c.n = 4: the embeddings of "a", "photo", "of", "a"
 */
export function initLocoopContext(tokenizer: ClipTokenizer, tables: TextEmbeddingsWeights, width: number, init: LocoopContextInit): LocoopContext {
  const name = init.nCtxName ?? 'n_ctx';
  if (init.nCtx !== undefined && !(Number.isInteger(init.nCtx) && init.nCtx >= 1)) throw new RangeError(`${name} must be a positive integer, got ${init.nCtx}`);
  if (init.phrase !== undefined && init.phrase !== null) {
    const ids = tokenizer.encode(init.phrase);
    const n = ids.length - 2;
    if (n < 1) throw new RangeError(`the context phrase ${JSON.stringify(init.phrase)} has no tokens; give words such as "a photo of a"`);
    if (init.nCtx !== undefined && init.nCtx !== n) {
      throw new RangeError(`the context phrase ${JSON.stringify(init.phrase)} has ${n} tokens (n_ctx ${n}), but ${name} ${init.nCtx} was given; n_ctx comes from the phrase`);
    }
    const tok = tables.token_embedding;
    const ctx = new Float32Array(n * width);
    for (let k = 0; k < n; k++) ctx.set(tok.subarray(ids[k + 1]! * width, (ids[k + 1]! + 1) * width), k * width);
    return { ctx, n, width, dtype: 'F32', source: `the phrase ${JSON.stringify(init.phrase)}` };
  }
  const n = init.nCtx ?? DEFAULT_N_CTX;
  const rng = new SeededRng(init.seed);
  const ctx = new Float32Array(n * width);
  for (let i = 0; i < ctx.length; i += 2) {
    // Box–Muller: two independent standard normals from two uniforms in (0, 1]
    const r = Math.sqrt(-2 * Math.log(1 - rng.next()));
    const a = 2 * Math.PI * rng.next();
    ctx[i] = CTX_INIT_STD * r * Math.cos(a);
    if (i + 1 < ctx.length) ctx[i + 1] = CTX_INIT_STD * r * Math.sin(a);
  }
  return { ctx, n, width, dtype: 'F32', source: `a random context (N(0, ${CTX_INIT_STD}²), seed ${init.seed})` };
}
