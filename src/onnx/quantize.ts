import { GraphEdit, intAttr, intsAttr } from './graph-edit.js';
import { float32Data, opsetOf, type OnnxModel, type OnnxNode, type OnnxTensor } from './model-proto.js';
import { OnnxDataType } from './proto.js';
import { quantizeWeightPerColumn } from './quantize-weights.js';

/**
 * Which activations share a scale and zero point (DynamicQuantizeLinear's rule either way):
 * - `per-image` (default): each index of the MatMul input's first axis — one image, or one of its
 *   attention windows — so an image's result never depends on the other images of its batch;
 * - `per-tensor`: the whole input tensor, with ONNX `DynamicQuantizeLinear` itself (ORT fuses it
 *   and the MatMulInteger into one kernel); a batch's images then share one scale.
 */
export type ActivationQuantization = 'per-image' | 'per-tensor';

/** Options of {@link quantizeMatMuls}. */
export interface QuantizeOptions {
  readonly activations?: ActivationQuantization;
}

interface Weight { q: string; scale: string; colsum: string; k: number; n: number }
interface Activation { q: string; scale: string; zpScaled: string; leadDims: string }

/**
 * int8 dynamic quantisation of every MatMul whose B input is a rank-2 FLOAT initializer [K, N]
 * (the weight matrices; attention's activation × activation MatMuls, LayerNorm, Softmax, biases
 * and convolutions stay float32). The weight is stored int8 per output channel
 * (quantizeWeightPerColumn: zero point 0) and the activation A quantised to uint8 at run time by
 * DynamicQuantizeLinear's rule, over the whole tensor or per image ({@link ActivationQuantization}):
 *
 *   scale = (max(0, max A) − min(0, min A)) / 255   (1 when that range is 0, as ORT does),
 *   zero_point = saturate(round_half_even(−min(0, min A) / scale)),
 *   A_q = saturate(round_half_even(A / scale) + zero_point),
 *
 * then Y = float(Σ_k (A_q − zero_point) · W_q) · scale · scale_W[n], the sum exact in int32.
 * A weight shared by several MatMuls is quantised once; its float32 initializer is dropped when
 * nothing else reads it.
 */
export function quantizeMatMuls(model: OnnxModel, options: QuantizeOptions = {}): OnnxModel {
  const mode = options.activations ?? 'per-image';
  const opset = opsetOf(model) ?? 0;
  const need = mode === 'per-image' ? 13 : 11; // QuantizeLinear with axis: 13; DynamicQuantizeLinear: 11
  if (opset < need) throw new RangeError(`quantizeMatMuls: the model imports opset ${opset}, '${mode}' int8 quantisation needs >= ${need}`);
  const g = model.graph;
  const edit = new GraphEdit(g);
  const inits = new Map(g.initializer.map((t) => [t.name, t]));
  const graphInputs = new Set(g.input.map((i) => i.name));
  const graphOutputs = new Set(g.output.map((o) => o.name));
  const readers = new Map<string, OnnxNode[]>();
  for (const n of g.node) for (const i of n.input) readers.set(i, [...(readers.get(i) ?? []), n]);
  const weightOf = (n: OnnxNode): OnnxTensor | undefined => {
    const t = inits.get(n.input[1] ?? '');
    const ok = n.op_type === 'MatMul' && (n.domain ?? '') === '' && t?.data_type === OnnxDataType.FLOAT && t.dims.length === 2 && !graphInputs.has(t.name);
    return ok ? t : undefined;
  };
  /** The bias Add that is y's only reader (Add(y, b), b a FLOAT [N] initializer), if any. */
  const biasAfter = (y: string): { node: OnnxNode; bias: string } | undefined => {
    const r = readers.get(y);
    if (!r || r.length !== 1 || graphOutputs.has(y) || r[0]!.op_type !== 'Add' || (r[0]!.domain ?? '') !== '') return undefined;
    const other = r[0]!.input[0] === y ? r[0]!.input[1]! : r[0]!.input[0]!;
    const t = inits.get(other);
    return t?.data_type === OnnxDataType.FLOAT && t.dims.length === 1 ? { node: r[0]!, bias: other } : undefined;
  };

  const weights = new Map<string, Weight>();
  const quantizeWeight = (t: OnnxTensor): Weight => {
    const known = weights.get(t.name);
    if (known) return known;
    const [k, n] = t.dims as [number, number];
    const { q, scale } = quantizeWeightPerColumn(float32Data(t), k, n);
    // Σ_k q[k, n] · scale[n]: the per-image zero-point correction (see below)
    const colsum = new Float32Array(n);
    for (let i = 0; i < k; i++) for (let j = 0; j < n; j++) colsum[j] = colsum[j]! + q[i * n + j]!;
    for (let j = 0; j < n; j++) colsum[j] = colsum[j]! * scale[j]!;
    const w: Weight = {
      q: edit.constant(`${t.name}_quantized`, q, [k, n], OnnxDataType.INT8),
      scale: edit.constant(`${t.name}_scale`, scale, [n], OnnxDataType.FLOAT),
      colsum: mode === 'per-image' ? edit.constant(`${t.name}_colsum`, colsum, [n], OnnxDataType.FLOAT) : '',
      k,
      n,
    };
    weights.set(t.name, w);
    return w;
  };

  // Per image, A is viewed as [B, rows, K] and gets a scale and zero point per b. MatMulInteger
  // takes A's zero point as a scalar only, so it runs without one and the zero point is applied
  // afterwards: Σ_k (A_q − zp)·W_q = acc − zp·Σ_k W_q[k, n], hence
  //   Y = acc · (scale_b · scale_W[n]) − (zp_b · scale_b) · (Σ_k W_q[k, n] · scale_W[n]).
  // One quantised copy of each activation serves all its MatMuls (q, k and v share theirs).
  const activations = new Map<string, Activation>();
  const i64 = (key: string, v: readonly number[]) => edit.sharedConstant(key, BigInt64Array.from(v, BigInt), [v.length], OnnxDataType.INT64);
  const f32 = (key: string, v: number) => edit.sharedConstant(key, Float32Array.of(v), [], OnnxDataType.FLOAT);
  // opset 18 moved ReduceMax/ReduceMin's axes from an attribute to an input
  const reduce = (op: string, x: string, out: string): string => opset >= 18
    ? edit.op(op, [x, i64('quant_axes_1_2', [1, 2])], out, [intAttr('keepdims', 1)])
    : edit.op(op, [x], out, [intsAttr('axes', [1, 2]), intAttr('keepdims', 1)]);
  const quantizePerImage = (a: string, k: number): Activation => {
    const known = activations.get(`${a}|${k}`);
    if (known) return known;
    const a3 = edit.op('Reshape', [a, i64(`quant_shape_b_rows_${k}`, [0, -1, k])], `${a}_b_rows_k`);
    const hi = edit.op('Max', [reduce('ReduceMax', a3, `${a}_max`), f32('quant_0f', 0)], `${a}_max0`);
    const lo = edit.op('Min', [reduce('ReduceMin', a3, `${a}_min`), f32('quant_0f', 0)], `${a}_min0`);
    const range = edit.op('Sub', [hi, lo], `${a}_range`);
    const scale = edit.op('Where', [
      edit.op('Equal', [range, f32('quant_0f', 0)], `${a}_range_is_0`),
      f32('quant_1f', 1),
      edit.op('Div', [range, f32('quant_255f', 255)], `${a}_range_255`),
    ], `${a}_scale`); // [B, 1, 1]
    // −min/scale lies in [0, 255], so rounding alone is DynamicQuantizeLinear's saturate(round(·))
    const zp = edit.op('Round', [edit.op('Div', [edit.op('Neg', [lo], `${a}_neg_min`), scale], `${a}_zp_exact`)], `${a}_zp_float`);
    const zpU8 = edit.op('Cast', [edit.op('Reshape', [zp, i64('quant_shape_b', [-1])], `${a}_zp_b`)], `${a}_zero_point`, [intAttr('to', OnnxDataType.UINT8)]);
    const q = edit.op('QuantizeLinear', [a3, edit.op('Reshape', [scale, i64('quant_shape_b', [-1])], `${a}_scale_b`), zpU8], `${a}_quantized`, [intAttr('axis', 0)]);
    const leadDims = edit.op('Slice', [edit.op('Shape', [a], `${a}_shape`), i64('quant_0', [0]), i64('quant_minus_1', [-1])], `${a}_lead_dims`);
    const act = { q, scale, zpScaled: edit.op('Mul', [zp, scale], `${a}_zp_scaled`), leadDims };
    activations.set(`${a}|${k}`, act);
    return act;
  };

  const skip = new Set<OnnxNode>();
  for (const n of g.node) {
    if (skip.has(n)) continue;
    const t = weightOf(n);
    if (!t) {
      edit.keep(n);
      continue;
    }
    const w = quantizeWeight(t);
    const [a, y] = [n.input[0]!, n.output[0]!];
    if (mode === 'per-tensor') {
      // one DynamicQuantizeLinear per MatMul, in the pattern ORT fuses (DynamicQuantizeMatMul)
      const [aq, as, az] = edit.opN('DynamicQuantizeLinear', [a], [`${a}_quantized`, `${a}_scale`, `${a}_zero_point`]);
      const acc = edit.op('Cast', [edit.op('MatMulInteger', [aq!, w.q, az!], `${y}_int32`)], `${y}_float`, [intAttr('to', OnnxDataType.FLOAT)]);
      edit.opInto('Mul', [acc, edit.op('Mul', [as!, w.scale], `${y}_scale`)], y);
      continue;
    }
    const act = quantizePerImage(a, w.k);
    const acc = edit.op('Cast', [edit.op('MatMulInteger', [act.q, w.q], `${y}_int32`)], `${y}_float`, [intAttr('to', OnnxDataType.FLOAT)]);
    let correction = edit.op('Mul', [act.zpScaled, w.colsum], `${y}_zp_correction`); // [B, 1, N]
    let out = y;
    const bias = biasAfter(y);
    if (bias) {
      // the bias joins the correction: one pass over Y instead of two
      correction = edit.op('Sub', [correction, bias.bias], `${y}_zp_correction_minus_bias`);
      skip.add(bias.node);
      out = bias.node.output[0]!;
    }
    const scaled = edit.op('Mul', [acc, edit.op('Mul', [act.scale, w.scale], `${y}_scale`)], `${y}_scaled`);
    const shape = edit.op('Concat', [act.leadDims, i64(`quant_n_${w.n}`, [w.n])], `${y}_shape`, [intAttr('axis', 0)]);
    edit.opInto('Reshape', [edit.op('Sub', [scaled, correction], `${y}_b_rows_n`), shape], out);
  }
  const read = new Set(edit.nodes.flatMap((n) => n.input));
  const initializer = [...g.initializer.filter((t) => !weights.has(t.name) || read.has(t.name)), ...edit.initializers];
  return { ...model, graph: { ...g, node: edit.nodes, initializer } };
}
