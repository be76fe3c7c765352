import type { OnnxModel, OnnxValueInfo } from './model-proto.js';

interface ShapedValue { type?: { tensor_type?: { shape?: { dim?: { dim_value?: number; dim_param?: string }[] } } } }

/**
 * Fixes the first (batch) dimension of every graph input and output to `size`, so a runtime
 * rejects any other batch with an error naming the input, instead of running it. For a model
 * whose results must not depend on what else shares its batch (an int8 model's activation scales
 * are per run): with size 1, each image runs alone. A first dimension already fixed to another
 * value is an error.
 */
export function setBatchSize(model: OnnxModel, size: number): OnnxModel {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`setBatchSize: size must be an integer >= 1, got ${size}`);
  const fix = (v: OnnxValueInfo, what: string): OnnxValueInfo => {
    const dims = (v as ShapedValue).type?.tensor_type?.shape?.dim;
    if (!dims?.length) throw new RangeError(`setBatchSize: graph ${what} '${v.name}' declares no shape`);
    const first = dims[0]!;
    if (first.dim_value !== undefined && first.dim_value !== size) throw new RangeError(`setBatchSize: graph ${what} '${v.name}' has a fixed first dimension ${first.dim_value}, not ${size}`);
    const t = (v as ShapedValue).type!.tensor_type!;
    return { ...v, type: { ...(v as ShapedValue).type, tensor_type: { ...t, shape: { ...t.shape, dim: [{ dim_value: size }, ...dims.slice(1)] } } } };
  };
  const g = model.graph;
  return { ...model, graph: { ...g, input: g.input.map((v) => fix(v, 'input')), output: g.output.map((v) => fix(v, 'output')) } };
}
