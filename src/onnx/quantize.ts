import { GraphEdit, intAttr } from './graph-edit.js';
import { float32Data, opsetOf, type OnnxModel, type OnnxNode, type OnnxTensor } from './model-proto.js';
import { OnnxDataType } from './proto.js';
import { quantizeWeightPerColumn } from './quantize-weights.js';

/**
 * int8 dynamic quantisation of every MatMul whose B input is a rank-2 FLOAT initializer [K, N]
 * (the weight matrices; attention's activation × activation MatMuls, LayerNorm, Softmax, biases
 * and convolutions stay float32). Each such `Y = MatMul(A, W)` becomes
 *
 *   A_q, s_A, zp_A = DynamicQuantizeLinear(A)
 *   Y = Cast(MatMulInteger(A_q, W_q, zp_A), float) · (s_A · s_W)
 *
 * with W stored int8 per output channel (quantizeWeightPerColumn: w ≈ q · s_W[n], zero point 0,
 * MatMulInteger's default, so no `b_zero_point` is stored) and A quantised to uint8 at run time
 * by DynamicQuantizeLinear (ONNX opset 11):
 *
 *   s_A = (max(0, max A) − min(0, min A)) / 255   (1 when that range is 0, as ORT does),
 *   zp_A = saturate(round_half_even(−min(0, min A) / s_A)),
 *   A_q = saturate(round_half_even(A / s_A) + zp_A).
 *
 * MatMulInteger subtracts zp_A and sums the products exactly in int32, so an all-zero row of A
 * gives exactly 0. One DynamicQuantizeLinear per MatMul is the pattern ONNX Runtime fuses into its
 * DynamicQuantizeMatMul / MatMulIntegerToFloat kernels (the rescale applied in the GEMM's output
 * stage; a following bias Add is fused too).
 *
 * s_A and zp_A come from the whole tensor A: images run in one batch share them. See
 * onnx/batch-size.ts for a model that takes one image per run.
 *
 * A weight shared by several MatMuls is quantised once; its float32 initializer is dropped when
 * nothing else reads it.
 */
export function quantizeMatMuls(model: OnnxModel): OnnxModel {
  const opset = opsetOf(model) ?? 0;
  if (opset < 11) throw new RangeError(`quantizeMatMuls: the model imports opset ${opset}, DynamicQuantizeLinear needs >= 11`);
  const g = model.graph;
  const edit = new GraphEdit(g);
  const inits = new Map(g.initializer.map((t) => [t.name, t]));
  const graphInputs = new Set(g.input.map((i) => i.name));
  const weightOf = (n: OnnxNode): OnnxTensor | undefined => {
    const t = inits.get(n.input[1] ?? '');
    const ok = n.op_type === 'MatMul' && (n.domain ?? '') === '' && t?.data_type === OnnxDataType.FLOAT && t.dims.length === 2 && !graphInputs.has(t.name);
    return ok ? t : undefined;
  };
  const weights = new Map<string, { q: string; scale: string }>();
  for (const n of g.node) {
    const t = weightOf(n);
    if (!t) {
      edit.keep(n);
      continue;
    }
    let w = weights.get(t.name);
    if (!w) {
      const [k, cols] = t.dims as [number, number];
      const { q, scale } = quantizeWeightPerColumn(float32Data(t), k, cols);
      w = { q: edit.constant(`${t.name}_quantized`, q, [k, cols], OnnxDataType.INT8), scale: edit.constant(`${t.name}_scale`, scale, [cols], OnnxDataType.FLOAT) };
      weights.set(t.name, w);
    }
    const [a, y] = [n.input[0]!, n.output[0]!];
    const [aq, as, az] = edit.opN('DynamicQuantizeLinear', [a], [`${a}_quantized`, `${a}_scale`, `${a}_zero_point`]);
    const acc = edit.op('Cast', [edit.op('MatMulInteger', [aq!, w.q, az!], `${y}_int32`)], `${y}_float`, [intAttr('to', OnnxDataType.FLOAT)]);
    edit.opInto('Mul', [acc, edit.op('Mul', [as!, w.scale], `${y}_scale`)], y);
  }
  const read = new Set(edit.nodes.flatMap((n) => n.input));
  const initializer = [...g.initializer.filter((t) => !weights.has(t.name) || read.has(t.name)), ...edit.initializers];
  return { ...model, graph: { ...g, node: edit.nodes, initializer } };
}
