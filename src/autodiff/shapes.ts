import type { AttrValue, GraphBuilder, NodeView } from '../onnx/graph-builder.js';
import { OnnxDataType, type OnnxDataTypeName } from '../onnx/proto.js';

/**
 * Static type and shape information for a graph built with GraphBuilder, as far as it can be
 * known without running it. The gradient rules use it to decide at build time which axes a
 * broadcast gradient sums over and to fold shape arithmetic into constants; where a dimension
 * is not known they fall back to runtime Shape ops, so "unknown" is never wrong, only slower.
 */

/** A dimension: a size, a symbolic name (same name ⇒ same size), or null when unknown. */
export type SDim = number | string | null;

export interface ValueFacts {
  dtype?: OnnxDataTypeName;
  /** undefined: rank unknown. */
  shape?: SDim[];
  /**
   * Contents of a small int64/int32 tensor when known element by element (shapes, axes, the
   * results of Shape/Slice/Concat on them), so that e.g. Expand(x, Concat(Shape(y)[1:2], …))
   * still has a static rank and symbolic dims.
   */
  ints?: SDim[];
}

export type GraphFacts = Map<string, ValueFacts>;

const DTYPE_BY_CODE = new Map<number, OnnxDataTypeName>(Object.entries(OnnxDataType).map(([k, v]) => [v, k as OnnxDataTypeName]));

export function isFloatType(t: OnnxDataTypeName | undefined): boolean {
  return t === 'FLOAT' || t === 'DOUBLE' || t === 'FLOAT16';
}

export function attrInt(node: NodeView, name: string, dflt: number): number {
  const v = node.attrs[name];
  return typeof v === 'number' ? v : dflt;
}
export function attrInts(node: NodeView, name: string): number[] | undefined {
  const v = node.attrs[name];
  return Array.isArray(v) ? [...(v as number[])] : undefined;
}
export function attrFloat(node: NodeView, name: string, dflt: number): number {
  const v = node.attrs[name] as AttrValue | undefined;
  return v !== undefined && typeof v === 'object' && !Array.isArray(v) && (v as { kind: string }).kind === 'float' ? (v as { value: number }).value : dflt;
}
export function attrString(node: NodeView, name: string, dflt: string): string {
  const v = node.attrs[name];
  return typeof v === 'string' ? v : dflt;
}

/** Python-style axis normalisation. */
export function normAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

function product(dims: readonly SDim[]): number | null {
  let p = 1;
  for (const d of dims) {
    if (typeof d !== 'number') return null;
    p *= d;
  }
  return p;
}

/** numpy broadcasting of two dims, with symbols: a fixed size other than 1 wins over a symbol. */
function broadcastDim(a: SDim, b: SDim): SDim {
  if (a === b) return a;
  if (a === 1) return b;
  if (b === 1) return a;
  if (typeof a === 'number') return a;
  if (typeof b === 'number') return b;
  return null;
}

export function broadcastShapes(shapes: ReadonlyArray<readonly SDim[] | undefined>): SDim[] | undefined {
  if (shapes.some((s) => s === undefined)) return undefined;
  const rank = Math.max(0, ...shapes.map((s) => s!.length));
  const out: SDim[] = [];
  for (let i = 0; i < rank; i++) {
    let d: SDim = 1;
    for (const s of shapes) {
      const k = i - (rank - s!.length);
      if (k >= 0) d = broadcastDim(d, s![k]!);
    }
    out.push(d);
  }
  return out;
}

/** Infers dtype, shape and small int contents of every value of the graph. */
export function inferFacts(g: GraphBuilder, nodes: readonly NodeView[]): GraphFacts {
  const facts: GraphFacts = new Map();
  for (const name of g.inputNames()) {
    const spec = g.inputSpec(name)!;
    facts.set(name, { dtype: spec.dtype, shape: spec.shape.map((d) => d) });
  }
  const initFacts = (name: string): ValueFacts | undefined => {
    const init = g.initializerView(name);
    if (!init) return undefined;
    const f: ValueFacts = { dtype: init.dtype, shape: [...init.dims] };
    if ((init.dtype === 'INT64' || init.dtype === 'INT32') && init.data.length <= 64 && init.dims.length <= 1) {
      f.ints = Array.from(init.data as ArrayLike<number | bigint>, (v) => Number(v));
    }
    return f;
  };
  const get = (name: string): ValueFacts => {
    if (name === '') return {};
    let f = facts.get(name);
    if (!f) {
      f = initFacts(name) ?? {};
      facts.set(name, f);
    }
    return f;
  };
  for (const node of nodes) {
    const ins = node.inputs.map(get);
    const outs = inferNode(node, ins);
    node.outputs.forEach((o, i) => facts.set(o, outs[i] ?? {}));
  }
  return facts;
}

function sameAs(f: ValueFacts, dtype?: OnnxDataTypeName): ValueFacts {
  return { dtype: dtype ?? f.dtype, shape: f.shape && [...f.shape] };
}

/** The axes of a Reduce node (attribute before opset 18 except ReduceSum, input after). */
export function reduceAxesOf(node: NodeView, ins: readonly ValueFacts[]): number[] | undefined | 'unknown' {
  const attr = attrInts(node, 'axes');
  if (attr) return attr;
  const inp = node.inputs[1];
  if (!inp) return undefined;
  const ints = ins[1]?.ints;
  if (ints && ints.every((v) => typeof v === 'number')) return ints.length === 0 ? undefined : (ints as number[]);
  return 'unknown';
}

function inferNode(node: NodeView, ins: readonly ValueFacts[]): ValueFacts[] {
  const x = ins[0] ?? {};
  const rank = x.shape?.length;
  switch (node.opType) {
    case 'Identity': case 'Neg': case 'Abs': case 'Sigmoid': case 'Tanh': case 'Erf': case 'Relu': case 'Exp': case 'Log':
    case 'Sqrt': case 'Reciprocal': case 'Sign': case 'Floor': case 'Ceil': case 'Round': case 'Softmax': case 'LogSoftmax':
    case 'Trilu': case 'Clip': case 'LeakyRelu': case 'Elu': case 'Softplus': case 'HardSigmoid': case 'Sin': case 'Cos':
    case 'Dropout': {
      const f = sameAs(x);
      if (node.opType === 'Identity' && x.ints) f.ints = [...x.ints];
      return [f];
    }
    case 'Not': case 'IsNaN': case 'IsInf':
      return [{ dtype: 'BOOL', shape: x.shape && [...x.shape] }];
    case 'Cast': {
      const to = DTYPE_BY_CODE.get(attrInt(node, 'to', 0));
      const f = sameAs(x, to);
      if (x.ints && (to === 'INT64' || to === 'INT32')) f.ints = [...x.ints];
      return [f];
    }
    case 'CastLike':
      return [sameAs(x, ins[1]?.dtype)];
    case 'LayerNormalization': {
      const out: ValueFacts[] = [sameAs(x)];
      const stash: ValueFacts = { dtype: 'FLOAT' };
      if (x.shape) {
        const a = normAxis(attrInt(node, 'axis', -1), x.shape.length);
        stash.shape = x.shape.map((d, i) => (i < a ? d : 1));
      }
      return [...out, stash, { ...stash }];
    }
    case 'Add': case 'Sub': case 'Mul': case 'Div': case 'Pow': case 'Max': case 'Min': case 'Sum': case 'Mean': case 'Mod': case 'PRelu': {
      const f: ValueFacts = { dtype: x.dtype, shape: broadcastShapes(ins.map((i) => i.shape)) };
      if (ins.length === 2 && x.ints && ins[1]!.ints && ['Add', 'Sub', 'Mul'].includes(node.opType)) {
        const [a, b] = [x.ints, ins[1]!.ints];
        if (a.length === b.length || b.length === 1 || a.length === 1) {
          const n = Math.max(a.length, b.length);
          f.ints = Array.from({ length: n }, (_, i) => {
            const u = a[a.length === 1 ? 0 : i]!;
            const v = b[b.length === 1 ? 0 : i]!;
            if (typeof u !== 'number' || typeof v !== 'number') return null;
            return node.opType === 'Add' ? u + v : node.opType === 'Sub' ? u - v : u * v;
          });
        }
      }
      return [f];
    }
    case 'Equal': case 'Less': case 'Greater': case 'LessOrEqual': case 'GreaterOrEqual': case 'And': case 'Or': case 'Xor':
      return [{ dtype: 'BOOL', shape: broadcastShapes(ins.map((i) => i.shape)) }];
    case 'Where':
      return [{ dtype: ins[1]?.dtype, shape: broadcastShapes(ins.map((i) => i.shape)) }];
    case 'MatMul': {
      const a = x.shape;
      const b = ins[1]?.shape;
      if (!a || !b || a.length < 2 || b.length < 2) return [{ dtype: x.dtype }];
      const batch = broadcastShapes([a.slice(0, -2), b.slice(0, -2)])!;
      return [{ dtype: x.dtype, shape: [...batch, a[a.length - 2]!, b[b.length - 1]!] }];
    }
    case 'Gemm': {
      const a = x.shape;
      const b = ins[1]?.shape;
      if (!a || !b) return [{ dtype: x.dtype, shape: [null, null] }];
      const m = attrInt(node, 'transA', 0) ? a[1]! : a[0]!;
      const n = attrInt(node, 'transB', 0) ? b[0]! : b[1]!;
      return [{ dtype: x.dtype, shape: [m, n] }];
    }
    case 'Transpose': {
      if (!x.shape) return [{ dtype: x.dtype }];
      const perm = attrInts(node, 'perm') ?? x.shape.map((_, i) => x.shape!.length - 1 - i);
      return [{ dtype: x.dtype, shape: perm.map((p) => x.shape![p]!) }];
    }
    case 'Reshape': {
      const t = ins[1]?.ints;
      if (!t) {
        const n = ins[1]?.shape?.[0];
        return [{ dtype: x.dtype, shape: typeof n === 'number' ? Array<SDim>(n).fill(null) : undefined }];
      }
      const allowZero = attrInt(node, 'allowzero', 0) === 1;
      const shape = t.map((d, i) => (d === 0 && !allowZero ? (x.shape?.[i] ?? null) : d));
      const m = shape.indexOf(-1);
      if (m >= 0) {
        const total = x.shape ? product(x.shape) : null;
        const rest = product(shape.filter((_, i) => i !== m));
        shape[m] = total !== null && rest !== null && rest !== 0 ? total / rest : null;
        if (shape[m] === null && x.shape && rest !== null) {
          // [batch, tokens, d] → [-1, d]-style reshapes keep a lone symbol when the rest cancels.
          const sym = x.shape.filter((d) => typeof d !== 'number');
          const known = product(x.shape.filter((d) => typeof d === 'number'));
          if (sym.length === 1 && sym[0] !== null && known === rest) shape[m] = sym[0]!;
        }
      }
      return [{ dtype: x.dtype, shape, ints: x.ints && shape.length === 1 ? [...x.ints] : undefined }];
    }
    case 'Flatten': {
      if (!x.shape) return [{ dtype: x.dtype, shape: [null, null] }];
      const a = normAxis(attrInt(node, 'axis', 1), x.shape.length);
      const lead = x.shape.slice(0, a);
      const tail = x.shape.slice(a);
      const one = (d: SDim[]): SDim => (d.length === 0 ? 1 : d.length === 1 ? d[0]! : product(d));
      return [{ dtype: x.dtype, shape: [one(lead), one(tail)] }];
    }
    case 'Squeeze': {
      const axes = attrInts(node, 'axes') ?? (ins[1]?.ints as number[] | undefined);
      if (!x.shape) return [{ dtype: x.dtype }];
      if (node.inputs[1] && axes?.some((a) => typeof a !== 'number')) return [{ dtype: x.dtype }];
      let shape: SDim[];
      if (!axes || axes.length === 0) {
        if (x.shape.some((d) => typeof d !== 'number')) return [{ dtype: x.dtype }];
        shape = x.shape.filter((d) => d !== 1);
      } else {
        const drop = new Set(axes.map((a) => normAxis(a, x.shape!.length)));
        shape = x.shape.filter((_, i) => !drop.has(i));
      }
      return [{ dtype: x.dtype, shape, ints: x.ints ? [...x.ints] : undefined }];
    }
    case 'Unsqueeze': {
      const axes = attrInts(node, 'axes') ?? (ins[1]?.ints as number[] | undefined);
      if (!x.shape || !axes || axes.some((a) => typeof a !== 'number')) return [{ dtype: x.dtype }];
      const r = x.shape.length + axes.length;
      const at = new Set(axes.map((a) => normAxis(a, r)));
      const shape: SDim[] = [];
      let k = 0;
      for (let i = 0; i < r; i++) shape.push(at.has(i) ? 1 : x.shape[k++]!);
      return [{ dtype: x.dtype, shape, ints: x.ints ? [...x.ints] : undefined }];
    }
    case 'Expand': {
      const t = ins[1]?.ints;
      if (!t) {
        const n = ins[1]?.shape?.[0];
        if (typeof n !== 'number' || !x.shape) return [{ dtype: x.dtype }];
        return [{ dtype: x.dtype, shape: Array<SDim>(Math.max(n, x.shape.length)).fill(null) }];
      }
      return [{ dtype: x.dtype, shape: broadcastShapes([x.shape, t]) }];
    }
    case 'Slice': return [inferSlice(x, ins)];
    case 'Gather': {
      const idx = ins[1] ?? {};
      const f: ValueFacts = { dtype: x.dtype };
      if (x.shape && idx.shape) {
        const a = normAxis(attrInt(node, 'axis', 0), x.shape.length);
        f.shape = [...x.shape.slice(0, a), ...idx.shape, ...x.shape.slice(a + 1)];
      }
      if (x.ints && idx.ints && x.shape?.length === 1 && idx.shape && idx.shape.length <= 1) {
        f.ints = idx.ints.map((i) => (typeof i === 'number' ? (x.ints![i < 0 ? i + x.ints!.length : i] ?? null) : null));
      }
      return [f];
    }
    case 'GatherElements':
      return [{ dtype: x.dtype, shape: ins[1]?.shape && [...ins[1].shape] }];
    case 'ScatterND': case 'ScatterElements':
      return [sameAs(x)];
    case 'Concat': {
      if (ins.some((i) => !i.shape)) return [{ dtype: x.dtype }];
      const r = ins[0]!.shape!.length;
      const a = normAxis(attrInt(node, 'axis', 0), r);
      const shape = ins[0]!.shape!.map((d, i) => (i === a ? d : ins.reduce<SDim>((acc, f) => broadcastDim(acc, f.shape![i]!), d)));
      const sizes = ins.map((f) => f.shape![a]!);
      shape[a] = sizes.every((s) => typeof s === 'number') ? (sizes as number[]).reduce((p, q) => p + q, 0) : null;
      const f: ValueFacts = { dtype: x.dtype, shape };
      if (r === 1 && ins.every((i) => i.ints)) f.ints = ins.flatMap((i) => i.ints!);
      return [f];
    }
    case 'Split': {
      const n = node.outputs.length;
      if (!x.shape) return Array.from({ length: n }, () => ({ dtype: x.dtype }));
      const a = normAxis(attrInt(node, 'axis', 0), x.shape.length);
      const split = ins[1]?.ints ?? attrInts(node, 'split');
      const total = x.shape[a]!;
      return Array.from({ length: n }, (_, i) => {
        let d: SDim = null;
        if (split) d = split[i] ?? null;
        else if (typeof total === 'number') d = total % n === 0 ? total / n : null;
        return { dtype: x.dtype, shape: x.shape!.map((s, k) => (k === a ? d : s)) };
      });
    }
    case 'Pad': {
      const pads = ins[1]?.ints;
      if (!x.shape || !pads || node.inputs[3]) return [{ dtype: x.dtype, shape: x.shape && x.shape.map(() => null) }];
      const r = x.shape.length;
      return [{ dtype: x.dtype, shape: x.shape.map((d, i) => (typeof d === 'number' && typeof pads[i] === 'number' && typeof pads[i + r] === 'number' ? d + (pads[i] as number) + (pads[i + r] as number) : pads[i] === 0 && pads[i + r] === 0 ? d : null)) }];
    }
    case 'Tile': {
      const reps = ins[1]?.ints;
      if (!x.shape || !reps) return [{ dtype: x.dtype }];
      return [{ dtype: x.dtype, shape: x.shape.map((d, i) => (reps[i] === 1 ? d : typeof d === 'number' && typeof reps[i] === 'number' ? d * (reps[i] as number) : null)) }];
    }
    case 'ReduceSum': case 'ReduceMean': case 'ReduceMax': case 'ReduceMin': case 'ReduceProd': case 'ReduceL1': case 'ReduceL2':
    case 'ReduceSumSquare': case 'ReduceLogSumExp': case 'ReduceLogSum': {
      const axes = reduceAxesOf(node, ins);
      const keep = attrInt(node, 'keepdims', 1) === 1;
      const noop = attrInt(node, 'noop_with_empty_axes', 0) === 1;
      if (axes === undefined && !keep && !noop) return [{ dtype: x.dtype, shape: [] }];
      if (rank === undefined) return [{ dtype: x.dtype }];
      if (axes === 'unknown') {
        const k = ins[1]?.shape?.[0];
        return [{ dtype: x.dtype, shape: keep ? x.shape!.map(() => null) : typeof k === 'number' ? Array<SDim>(rank - k).fill(null) : undefined }];
      }
      if (axes === undefined && noop) return [sameAs(x)];
      const set = new Set((axes ?? x.shape!.map((_, i) => i)).map((a) => normAxis(a, rank)));
      return [{ dtype: x.dtype, shape: keep ? x.shape!.map((d, i) => (set.has(i) ? 1 : d)) : x.shape!.filter((_, i) => !set.has(i)) }];
    }
    case 'ArgMax': case 'ArgMin': {
      if (rank === undefined) return [{ dtype: 'INT64' }];
      const a = normAxis(attrInt(node, 'axis', 0), rank);
      const keep = attrInt(node, 'keepdims', 1) === 1;
      return [{ dtype: 'INT64', shape: keep ? x.shape!.map((d, i) => (i === a ? 1 : d)) : x.shape!.filter((_, i) => i !== a) }];
    }
    case 'TopK': {
      const k = ins[1]?.ints?.[0] ?? null;
      const shape = x.shape && x.shape.map((d, i) => (i === normAxis(attrInt(node, 'axis', -1), x.shape!.length) ? k : d));
      return [{ dtype: x.dtype, shape }, { dtype: 'INT64', shape: shape && [...shape] }];
    }
    case 'Shape': {
      if (rank === undefined) return [{ dtype: 'INT64', shape: [null] }];
      let start = normAxis(attrInt(node, 'start', 0), rank);
      let end = node.attrs.end === undefined ? rank : normAxis(attrInt(node, 'end', rank), rank);
      start = Math.min(Math.max(start, 0), rank);
      end = Math.min(Math.max(end, 0), rank);
      const ints = x.shape!.slice(start, end);
      return [{ dtype: 'INT64', shape: [ints.length], ints }];
    }
    case 'Size': {
      const n = x.shape ? product(x.shape) : null;
      return [{ dtype: 'INT64', shape: [], ints: [n] }];
    }
    case 'ConstantOfShape': {
      const t = ins[0]?.ints;
      const n = ins[0]?.shape?.[0];
      return [{ dtype: 'FLOAT', shape: t ? [...t] : typeof n === 'number' ? Array<SDim>(n).fill(null) : undefined }];
    }
    case 'Range':
      return [{ dtype: x.dtype, shape: [null] }];
    case 'NonZero':
      return [{ dtype: 'INT64', shape: [rank ?? null, null] }];
    case 'OneHot': {
      const depth = ins[1]?.ints?.[0] ?? null;
      if (!x.shape) return [{ dtype: ins[2]?.dtype }];
      const r = x.shape.length + 1;
      const a = normAxis(attrInt(node, 'axis', -1), r);
      const shape = [...x.shape];
      shape.splice(a, 0, depth);
      return [{ dtype: ins[2]?.dtype, shape }];
    }
    case 'Conv': return [inferConv(node, x, ins[1] ?? {})];
    case 'GlobalAveragePool': case 'GlobalMaxPool':
      return [{ dtype: x.dtype, shape: x.shape && x.shape.map((d, i) => (i < 2 ? d : 1)) }];
    default:
      return node.outputs.map(() => ({ dtype: x.dtype }));
  }
}

/** Clamped [start, end) and count of a Slice along one axis of static size d (ONNX's rules, step ≠ 0). */
export function sliceRange(s: number, e: number, step: number, d: number): { start: number; count: number } {
  if (step > 0) {
    const start = s < 0 ? Math.max(0, s + d) : Math.min(s, d);
    const end = e < 0 ? Math.max(0, e + d) : Math.min(e, d);
    return { start, count: Math.max(0, Math.ceil((end - start) / step)) };
  }
  const start = s < 0 ? Math.max(-1, s + d) : Math.min(s, d - 1);
  const end = e < 0 ? Math.max(-1, e + d) : Math.min(e, d - 1);
  return { start, count: Math.max(0, Math.ceil((end - start) / step)) };
}

function inferSlice(x: ValueFacts, ins: readonly ValueFacts[]): ValueFacts {
  const f: ValueFacts = { dtype: x.dtype };
  if (!x.shape) return f;
  const r = x.shape.length;
  const starts = ins[1]?.ints;
  const ends = ins[2]?.ints;
  const axes = ins[3]?.ints ?? starts?.map((_, i) => i);
  const steps = ins[4]?.ints ?? starts?.map(() => 1);
  if (!starts || !ends || !axes || !steps || [starts, ends, axes, steps].some((v) => v.some((d) => typeof d !== 'number'))) {
    f.shape = x.shape.map(() => null);
    return f;
  }
  const shape = [...x.shape];
  const ints = x.ints ? [...x.ints] : undefined;
  let intsOk = ints !== undefined && r === 1;
  axes.forEach((axis, i) => {
    const a = normAxis(axis as number, r);
    const [s, e, st] = [starts[i] as number, ends[i] as number, steps[i] as number];
    const d = x.shape![a]!;
    if (typeof d === 'number') {
      const { start, count } = sliceRange(s, e, st, d);
      shape[a] = count;
      if (intsOk && a === 0) {
        const picked: SDim[] = [];
        for (let k = 0; k < count; k++) picked.push(ints![start + k * st]!);
        ints!.splice(0, ints!.length, ...picked);
      }
    } else {
      // A symbolic dim stays itself only for a full slice.
      shape[a] = s === 0 && st === 1 && e >= 2 ** 31 - 1 ? d : null;
      intsOk = false;
    }
  });
  f.shape = shape;
  if (intsOk) f.ints = ints;
  return f;
}

function inferConv(node: NodeView, x: ValueFacts, w: ValueFacts): ValueFacts {
  const f: ValueFacts = { dtype: x.dtype };
  if (!x.shape || !w.shape) return f;
  const s = x.shape.length - 2;
  const k = attrInts(node, 'kernel_shape') ?? w.shape.slice(2);
  const strides = attrInts(node, 'strides') ?? Array<number>(s).fill(1);
  const dil = attrInts(node, 'dilations') ?? Array<number>(s).fill(1);
  const pads = attrInts(node, 'pads') ?? Array<number>(2 * s).fill(0);
  const auto = attrString(node, 'auto_pad', 'NOTSET');
  const spatial: SDim[] = x.shape.slice(2).map((d, i) => {
    const ki = k[i];
    if (typeof d !== 'number' || typeof ki !== 'number') return null;
    if (auto === 'SAME_UPPER' || auto === 'SAME_LOWER') return Math.ceil(d / strides[i]!);
    const [pb, pe] = auto === 'VALID' ? [0, 0] : [pads[i]!, pads[i + s]!];
    return Math.floor((d + pb + pe - dil[i]! * (ki - 1) - 1) / strides[i]!) + 1;
  });
  f.shape = [x.shape[0]!, w.shape[0]!, ...spatial];
  return f;
}
