import type { AttrValue, GraphBuilder, NodeView } from '../onnx/graph-builder.js';
import type { OnnxDataTypeName } from '../onnx/proto.js';
import type { GraphFacts, SDim } from './shapes.js';

/**
 * An integer known at build time (a number) or only at run time (an int64 [1] tensor). Slice,
 * Concat and Conv gradients compute offsets and pads with these, so static shapes fold into
 * constants while symbolic ones ('batch', 'tokens') still work.
 */
export type IntVal = number | { readonly rt: string };

/**
 * A gradient rule. `dys[k]` is the gradient of output k (undefined when no gradient reaches it);
 * `needs[i]` says whether input i needs a gradient. Returns one gradient per input, each with
 * that input's exact shape (undefined where not needed).
 */
export type GradRule = (ctx: GradContext, node: NodeView, dys: readonly (string | undefined)[], needs: readonly boolean[]) => ReadonlyArray<string | undefined>;

/** What the gradient rules use to emit backward nodes into the forward graph. */
export class GradContext {
  private readonly scalars = new Map<string, string>();
  private readonly intConsts = new Map<string, string>();
  private readonly shapeOps = new Map<string, string>();
  private readonly dimOps = new Map<string, string>();

  constructor(
    readonly g: GraphBuilder,
    private readonly facts: GraphFacts,
    private readonly producers: ReadonlyMap<string, NodeView>,
  ) {}

  op(type: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}): string {
    return this.g.op(type, inputs, attrs);
  }

  /** An error about `node` that names it, its op type and the value concerned. */
  error(node: NodeView, value: string, what: string): Error {
    return new Error(`addGradients: ${node.opType} node '${node.name}' (value '${value}'): ${what}`);
  }

  dtype(v: string): OnnxDataTypeName {
    const t = this.facts.get(v)?.dtype;
    if (!t) throw new Error(`addGradients: element type of '${v}' is unknown`);
    return t;
  }

  /** Static shape, or undefined when even the rank is unknown. */
  shape(v: string): readonly SDim[] | undefined {
    return this.facts.get(v)?.shape;
  }

  rank(v: string, node: NodeView): number {
    const s = this.shape(v);
    if (!s) throw this.error(node, v, 'its rank cannot be inferred statically, which this gradient needs');
    return s.length;
  }

  /** All dims as numbers, or undefined. */
  staticDims(v: string): number[] | undefined {
    const s = this.shape(v);
    return s && s.every((d) => typeof d === 'number') ? (s as number[]) : undefined;
  }

  producer(v: string): NodeView | undefined {
    return this.producers.get(v);
  }

  /** Contents of an int tensor known at build time (an initializer or shape arithmetic on one). */
  constInts(v: string): number[] | undefined {
    if (!v) return undefined;
    const ints = this.facts.get(v)?.ints;
    if (ints && ints.every((d) => typeof d === 'number')) return ints as number[];
    const init = this.g.initializerView(v);
    if (init && (init.dtype === 'INT64' || init.dtype === 'INT32')) return Array.from(init.data as ArrayLike<number | bigint>, (x) => Number(x));
    return undefined;
  }

  /** Contents of a float initializer. */
  constFloats(v: string): number[] | undefined {
    if (!v) return undefined;
    const init = this.g.initializerView(v);
    if (!init) return undefined;
    return Array.from(init.data as ArrayLike<number | bigint>, (x) => Number(x));
  }

  /** A scalar constant of the given element type (shared by every rule that asks for it). */
  scalar(value: number, dtype: OnnxDataTypeName): string {
    const key = `${dtype}:${Object.is(value, -0) ? '-0' : value}`;
    let name = this.scalars.get(key);
    if (!name) {
      let data: Float32Array | Float64Array;
      if (dtype === 'FLOAT') data = Float32Array.of(value);
      else if (dtype === 'DOUBLE') data = Float64Array.of(value);
      else throw new Error(`addGradients: gradients of ${dtype} values are not supported (FLOAT and DOUBLE only)`);
      name = this.g.initializer(this.g.uniqueName('grad_const'), data, []);
      this.scalars.set(key, name);
    }
    return name;
  }

  /** A scalar constant with the element type of `like`. */
  scalarLike(value: number, like: string): string {
    return this.scalar(value, this.dtype(like));
  }

  /** An int64 vector constant (shared). */
  ints(values: readonly number[]): string {
    const key = values.join(',');
    let name = this.intConsts.get(key);
    if (!name) {
      name = this.g.constInt64(values, 'grad_ints');
      this.intConsts.set(key, name);
    }
    return name;
  }

  /** The shape of `v` as an int64 vector: a constant when static, else one Shape op per value. */
  shapeOf(v: string): string {
    const dims = this.staticDims(v);
    if (dims) return this.ints(dims);
    let s = this.shapeOps.get(v);
    if (!s) {
      s = this.op('Shape', [v]);
      this.shapeOps.set(v, s);
    }
    return s;
  }

  /** Dim `axis` (normalised) of `v`. */
  dim(v: string, axis: number): IntVal {
    const d = this.shape(v)?.[axis];
    if (typeof d === 'number') return d;
    const key = `${v}#${axis}`;
    let name = this.dimOps.get(key);
    if (!name) {
      name = this.op('Gather', [this.shapeOf(v), this.ints([axis])], { axis: 0 });
      this.dimOps.set(key, name);
    }
    return { rt: name };
  }

  /** Zeros with the shape and type of `like`; Expand of a scalar, so no big initializer is stored. */
  zerosLike(like: string): string {
    return this.op('Expand', [this.scalarLike(0, like), this.shapeOf(like)]);
  }

  /** ReduceSum over static axes (all when undefined). */
  reduceSum(x: string, axes: readonly number[] | undefined, keepdims: boolean): string {
    const inputs = axes === undefined ? [x] : [x, this.ints(axes)];
    return this.op('ReduceSum', inputs, { keepdims: keepdims ? 1 : 0 });
  }

  /** ReduceMean over static axes (an attribute before opset 18, an input from 18). */
  reduceMean(x: string, axes: readonly number[], keepdims: boolean): string {
    if (this.g.opset >= 18) return this.op('ReduceMean', [x, this.ints(axes)], { keepdims: keepdims ? 1 : 0 });
    return this.op('ReduceMean', [x], { axes: [...axes], keepdims: keepdims ? 1 : 0 });
  }

  /**
   * Sums a gradient of shape `gradShape` (the broadcast result) down to the shape of `target`:
   * over the leading axes `target` lacks and over the axes where `target` has size 1. Axes whose
   * size-1-ness is not known statically are selected at run time (Shape → Equal → Compress), so a
   * symbolic dim that turns out to be 1 is still reduced.
   */
  unbroadcast(grad: string, gradShape: readonly SDim[] | undefined, target: string, node: NodeView): string {
    const ts = this.shape(target);
    if (!ts) throw this.error(node, target, 'its rank cannot be inferred statically, which a broadcasting gradient needs');
    if (!gradShape) throw this.error(node, node.outputs[0]!, 'its rank cannot be inferred statically, which a broadcasting gradient needs');
    const k = gradShape.length - ts.length;
    if (k < 0) throw this.error(node, target, `rank ${ts.length} exceeds the gradient's rank ${gradShape.length}`);
    const sure: number[] = [];
    for (let i = 0; i < k; i++) sure.push(i);
    const maybe: number[] = [];
    ts.forEach((td, i) => {
      const od = gradShape[k + i]!;
      if (td === 1) {
        if (od !== 1) sure.push(k + i);
      } else if (typeof td === 'number' || (td !== null && td === od) || od === 1) {
        // a fixed size other than 1, or the same symbol as the output: never broadcast
      } else {
        maybe.push(i);
      }
    });
    if (sure.length === 0 && maybe.length === 0) return grad;
    if (maybe.length === 0) {
      if (sure.length === k) return this.reduceSum(grad, sure, false);
      return this.op('Reshape', [this.reduceSum(grad, sure, true), this.shapeOf(target)]);
    }
    const picked = this.op('Compress', [
      this.ints(maybe.map((i) => k + i)),
      this.op('Equal', [this.op('Gather', [this.shapeOf(target), this.ints(maybe)], { axis: 0 }), this.ints([1])]),
    ], { axis: 0 });
    const axes = sure.length ? this.op('Concat', [this.ints(sure), picked], { axis: 0 }) : picked;
    const summed = this.op('ReduceSum', [grad, axes], { keepdims: 1, noop_with_empty_axes: 1 });
    return this.op('Reshape', [summed, this.shapeOf(target)]);
  }

  // ---- integer arithmetic, folded when static -------------------------------------------------

  private rt(v: IntVal): string {
    return typeof v === 'number' ? this.ints([v]) : v.rt;
  }

  private binary(op: string, a: IntVal, b: IntVal, f: (x: number, y: number) => number): IntVal {
    if (typeof a === 'number' && typeof b === 'number') return f(a, b);
    return { rt: this.op(op, [this.rt(a), this.rt(b)]) };
  }

  iadd(a: IntVal, b: IntVal): IntVal {
    if (b === 0) return a;
    if (a === 0) return b;
    return this.binary('Add', a, b, (x, y) => x + y);
  }
  isub(a: IntVal, b: IntVal): IntVal {
    if (b === 0) return a;
    return this.binary('Sub', a, b, (x, y) => x - y);
  }
  imul(a: IntVal, b: IntVal): IntVal {
    if (b === 1) return a;
    if (a === 1) return b;
    return this.binary('Mul', a, b, (x, y) => x * y);
  }
  imin(a: IntVal, b: IntVal): IntVal {
    return this.binary('Min', a, b, Math.min);
  }
  imax(a: IntVal, b: IntVal): IntVal {
    return this.binary('Max', a, b, Math.max);
  }
  /** Floor division for a ≥ 0, b > 0 (ONNX Div on int64 truncates, which is floor there). */
  idiv(a: IntVal, b: IntVal): IntVal {
    if (b === 1) return a;
    return this.binary('Div', a, b, (x, y) => Math.floor(x / y));
  }
  imod(a: IntVal, b: IntVal): IntVal {
    if (b === 1) return 0;
    return this.binary('Mod', a, b, (x, y) => ((x % y) + y) % y);
  }

  /** An int64 vector from parts, one Concat only when some part is a runtime value. */
  intVector(parts: readonly IntVal[]): string {
    if (parts.every((p) => typeof p === 'number')) return this.ints(parts as number[]);
    const pieces: string[] = [];
    let run: number[] = [];
    for (const p of parts) {
      if (typeof p === 'number') run.push(p);
      else {
        if (run.length) pieces.push(this.ints(run));
        run = [];
        pieces.push(p.rt);
      }
    }
    if (run.length) pieces.push(this.ints(run));
    return pieces.length === 1 ? pieces[0]! : this.op('Concat', pieces, { axis: 0 });
  }
}
