import type { GraphBuilder } from '../../onnx/graph-builder.js';
import { tensor, type Tensor } from '../../tensor.js';
import type { TrainTextInput } from '../clip/train-graph.js';
import type { TextLayer0 } from '../clip/prompts.js';

/**
 * The text side of the LoCoOp training graph (SPEC §9; CoOp's PromptLearner.forward): the
 * trainable input `ctx` [n, D] plus the constant position rows 1 … n, broadcast to every class
 * [C, n, D] and put between the fed fixed parts of the class prompts — `text_prefix` [C, 1, D]
 * (start token + position 0) and `text_suffix` [C, L − 1 − n, D] (the prompt's tokens with
 * positions n + 1 …) — along the sequence axis. The graph then runs CLIP's frozen text tower on
 * it, and the context's gradient comes back through every layer.
 *
 * @param positionEmbedding the model's position table [positions, D]
 */
export function locoopTrainText(positionEmbedding: Float32Array, n: number, width: number): TrainTextInput {
  return {
    params: new Map([['ctx', [n, width]]]),
    build(g: GraphBuilder): string {
      const ctx = g.input('ctx', 'FLOAT', [n, width]);
      const prefix = g.input('text_prefix', 'FLOAT', ['classes', 1, width]);
      const suffix = g.input('text_suffix', 'FLOAT', ['classes', 'suffix', width]);
      const positions = g.initializer('ctx_positions', positionEmbedding.slice(width, (1 + n) * width), [n, width]);
      const rows = g.op('Unsqueeze', [g.op('Add', [ctx, positions]), g.constInt64([0])]);
      // [1, n, D] broadcast against prefix's shape [C, 1, D] → [C, n, D]
      const perClass = g.op('Expand', [rows, g.op('Shape', [prefix])]);
      return g.op('Concat', [prefix, perClass, suffix], { axis: 1 });
    },
  };
}

/**
 * The fixed feeds of {@link locoopTrainText} cut from the class prompts' layer-0 hidden states
 * (which hold the current context in rows 1 … n): `text_prefix`, `text_suffix`.
 */
export function locoopTrainFeeds(prompts: TextLayer0, n: number): Record<string, Tensor<'float32'>> {
  const [c, l, d] = prompts.hidden.dims as [number, number, number];
  const h = prompts.hidden.data;
  const prefix = new Float32Array(c * d);
  const suffix = new Float32Array(c * (l - 1 - n) * d);
  for (let i = 0; i < c; i++) {
    prefix.set(h.subarray(i * l * d, (i * l + 1) * d), i * d);
    suffix.set(h.subarray((i * l + 1 + n) * d, (i + 1) * l * d), i * (l - 1 - n) * d);
  }
  return {
    text_prefix: tensor('float32', prefix, [c, 1, d], 'text_prefix'),
    text_suffix: tensor('float32', suffix, [c, l - 1 - n, d], 'text_suffix'),
  };
}
