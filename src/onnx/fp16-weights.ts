import { toFloat16Array } from './float16.js';
import { GraphEdit, intAttr } from './graph-edit.js';
import { float32Data, type OnnxModel, type OnnxTensor } from './model-proto.js';
import { OnnxDataType } from './proto.js';

/** Options of {@link weightsToFloat16}. */
export interface Float16WeightsOptions {
  /**
   * Only initializers of at least this many elements are stored in half precision (default 1024):
   * they are what weighs; scalars and small vectors (epsilons, LayerNorm parameters) stay exact.
   */
  readonly minElements?: number;
}

/**
 * fp16 storage, fp32 compute: every large FLOAT initializer is stored as FLOAT16 under
 * `<name>_fp16` and a `Cast(to=FLOAT)` node at the top of the graph gives its consumers the value
 * `<name>` back in float32, so every operator still runs in float32 (on ONNX Runtime's CPU and
 * wasm backends alike; ORT folds the Casts into float32 constants once, when the session loads).
 * An initializer with a value beyond the half range (|x| ≥ 65520 would become ±Infinity) stays
 * float32, as does one that is also a graph input (its value may be overridden at run time).
 * The only change to the computation is rounding each weight to 11 significant bits (relative
 * error at most 2^-11 for normal values; below 2^-14 the error is at most 2^-25 absolute).
 */
export function weightsToFloat16(model: OnnxModel, options: Float16WeightsOptions = {}): OnnxModel {
  const minElements = options.minElements ?? 1024;
  const g = model.graph;
  const edit = new GraphEdit(g);
  const inputs = new Set(g.input.map((i) => i.name));
  const kept: OnnxTensor[] = [];
  for (const t of g.initializer) {
    const n = t.dims.reduce((a, b) => a * b, 1);
    const half = t.data_type === OnnxDataType.FLOAT && n >= minElements && !inputs.has(t.name) ? toFloat16Array(float32Data(t)) : undefined;
    if (!half || half.some((h) => (h & 0x7c00) === 0x7c00)) { // not converted, or out of range (or NaN)
      kept.push(t);
      continue;
    }
    edit.opInto('Cast', [edit.constant(`${t.name}_fp16`, half, t.dims, OnnxDataType.FLOAT16)], t.name, [intAttr('to', OnnxDataType.FLOAT)]);
  }
  for (const n of g.node) edit.keep(n);
  return { ...model, graph: { ...g, initializer: [...kept, ...edit.initializers], node: edit.nodes } };
}
