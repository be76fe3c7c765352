import type { GraphBuilder, NodeView } from '../onnx/graph-builder.js';
import { GradContext } from './context.js';
import { GRADIENT_RULES, ZERO_GRADIENT_OPS } from './rules.js';
import { inferFacts, isFloatType } from './shapes.js';

/**
 * Reverse-mode differentiation of a GraphBuilder graph, emitted as more nodes of the same graph,
 * so that one session run returns the loss and its gradients (onnxruntime-node has no training
 * API). Rules per op live in grads/ and are gathered in rules.ts.
 */

/**
 * Appends d(loss)/d(wrt[i]) to the graph; returns the gradient value names (same shape as each
 * wrt value). Expose them with `g.output(...)` as any other value.
 *
 * - `loss` must be a float (FLOAT or DOUBLE) value with a static shape of one element ([] or
 *   [1, …]); its gradient is seeded with 1.
 * - `wrt` values are usually graph inputs (trainable parameters fed each step), but may be
 *   initializers or intermediate values; for an intermediate value the result is the total
 *   derivative through all of its uses.
 * - Only nodes on a path from some wrt value to the loss through float values are
 *   differentiated: constants, shapes, indices and masks (int/bool values, and Floor, Ceil,
 *   Round, Sign outputs) never receive gradients, so any op may appear off the path.
 * - An op on the path without a rule throws an Error naming the op type, the node and the value.
 * - A wrt value the loss does not depend on (through float values) gets zeros.
 * - Gradients of a value used several times are summed with Add.
 */
export function addGradients(g: GraphBuilder, loss: string, wrt: readonly string[]): string[] {
  if (g.opset < 13) throw new Error(`addGradients: graph '${g.name}' uses opset ${g.opset}; gradients are emitted for opset ≥ 13`);
  const nodes = g.nodeViews();
  const producers = new Map<string, NodeView>();
  const position = new Map<string, number>();
  nodes.forEach((n, i) => n.outputs.forEach((o) => {
    producers.set(o, n);
    position.set(o, i);
  }));
  nodes.forEach((n, i) => {
    for (const v of n.inputs) {
      if ((position.get(v) ?? -1) >= i) throw new Error(`addGradients: node '${n.name}' uses '${v}' before the node that produces it; nodes must be added in topological order`);
    }
  });
  for (const v of [loss, ...wrt]) {
    if (!v || !g.has(v)) throw new Error(`addGradients: graph '${g.name}' has no value '${v}'`);
  }
  const facts = inferFacts(g, nodes);
  const lossFacts = facts.get(loss) ?? {};
  if (!isFloatType(lossFacts.dtype)) throw new Error(`addGradients: loss '${loss}' must be a float value (it is ${lossFacts.dtype ?? 'of unknown type'})`);
  const lossDims = lossFacts.shape;
  if (!lossDims || !lossDims.every((d) => d === 1)) {
    throw new Error(`addGradients: loss '${loss}' must be a scalar (static shape with one element); its shape is ${lossDims ? `[${lossDims.join(', ')}]` : 'unknown'}`);
  }
  for (const w of wrt) {
    if (!isFloatType(facts.get(w)?.dtype)) throw new Error(`addGradients: wrt value '${w}' must be a float value (it is ${facts.get(w)?.dtype ?? 'of unknown type'})`);
  }

  // Values that depend on some wrt value through float values…
  const active = new Set<string>(wrt);
  for (const n of nodes) {
    if (ZERO_GRADIENT_OPS.has(n.opType) || !n.inputs.some((v) => active.has(v))) continue;
    for (const o of n.outputs) if (isFloatType(facts.get(o)?.dtype)) active.add(o);
  }
  // …and that the loss depends on through such values: the path to differentiate.
  const onPath = new Set<string>();
  if (active.has(loss)) onPath.add(loss);
  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i]!;
    if (n.outputs.some((o) => onPath.has(o))) for (const v of n.inputs) if (active.has(v)) onPath.add(v);
  }

  const ctx = new GradContext(g, facts, producers);
  const contributions = new Map<string, string[]>();
  const totals = new Map<string, string>();
  const total = (v: string): string | undefined => {
    let t = totals.get(v);
    if (t === undefined) {
      const parts = contributions.get(v);
      if (!parts?.length) return undefined;
      t = parts.reduce((acc, p) => g.op('Add', [acc, p]));
      totals.set(v, t);
    }
    return t;
  };
  if (onPath.has(loss)) {
    const dtype = lossFacts.dtype!;
    const dims = lossDims as number[];
    const seed = dims.length === 0
      ? ctx.scalar(1, dtype)
      : g.initializer(g.uniqueName('grad_seed'), dtype === 'DOUBLE' ? Float64Array.of(1) : Float32Array.of(1), dims);
    contributions.set(loss, [seed]);
  }

  for (let i = nodes.length - 1; i >= 0; i--) {
    const n = nodes[i]!;
    if (!n.outputs.some((o) => onPath.has(o))) continue;
    const dys = n.outputs.map((o) => (onPath.has(o) ? total(o) : undefined));
    if (dys.every((d) => d === undefined)) continue;
    const needs = n.inputs.map((v) => v !== '' && onPath.has(v));
    const rule = n.domain === '' || n.domain === 'ai.onnx' ? GRADIENT_RULES[n.opType] : undefined;
    const from = n.inputs.find((v, k) => needs[k])!;
    if (!rule) {
      const op = n.domain ? `${n.domain}.${n.opType}` : n.opType;
      throw new Error(`addGradients: no gradient rule for op '${op}' (node '${n.name}', value '${from}' → '${n.outputs.find((o) => onPath.has(o))}', on the path from [${wrt.join(', ')}] to '${loss}')`);
    }
    const grads = rule(ctx, n, dys, needs);
    const got = new Set<string>();
    n.inputs.forEach((v, k) => {
      const d = grads[k];
      if (!needs[k] || d === undefined) return;
      let list = contributions.get(v);
      if (!list) contributions.set(v, (list = []));
      list.push(d);
      got.add(v);
    });
    const missing = n.inputs.find((v, k) => needs[k] && !got.has(v));
    if (missing !== undefined) throw new Error(`addGradients: internal error: the ${n.opType} rule returned no gradient for '${missing}' (node '${n.name}')`);
  }
  return wrt.map((w) => total(w) ?? ctx.zerosLike(w));
}
