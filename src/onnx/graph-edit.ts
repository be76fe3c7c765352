import { rawBytes, type OnnxAttribute, type OnnxGraph, type OnnxNode, type OnnxTensor } from './model-proto.js';
import { AttributeType } from './proto.js';

/** An INT attribute. */
export const intAttr = (name: string, i: number): OnnxAttribute => ({ name, type: AttributeType.INT, i });

/**
 * Rewrites a decoded graph node by node, in order: a pass `keep`s the nodes it leaves alone and
 * emits replacements with `op`, so the new node list stays topologically sorted. New value,
 * node and initializer names never clash with the graph's: `op('Mul', …, 'x_scale')` names its
 * output `x_scale`, or the first free `x_scale_1`, `x_scale_2`, …
 */
export class GraphEdit {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  private readonly used = new Set<string>();

  constructor(g: OnnxGraph) {
    for (const v of [...g.input, ...g.output, ...g.initializer]) this.used.add(v.name);
    for (const n of g.node) {
      for (const v of [...n.input, ...n.output]) this.used.add(v);
      if (n.name) this.used.add(n.name);
    }
  }

  /** `base` if unused, else the first free `base_<i>`; reserved from then on. */
  fresh(base: string): string {
    let name = base;
    for (let i = 1; this.used.has(name); i++) name = `${base}_${i}`;
    this.used.add(name);
    return name;
  }

  /** Keeps an original node as it is. */
  keep(n: OnnxNode): void {
    this.nodes.push(n);
  }

  /** Adds a standard-domain node with one output named after `out`; returns that name. */
  op(opType: string, inputs: string[], out: string, attribute: OnnxAttribute[] = []): string {
    return this.opN(opType, inputs, [out], attribute)[0]!;
  }

  /** Adds a node with several outputs named after `outs`. */
  opN(opType: string, inputs: string[], outs: string[], attribute: OnnxAttribute[] = []): string[] {
    const output = outs.map((o) => this.fresh(o));
    this.nodes.push({ op_type: opType, domain: '', name: this.fresh(`${output[0]}_node`), input: inputs, output, attribute });
    return output;
  }

  /** Adds a node whose output keeps an existing value name (the value it replaces). */
  opInto(opType: string, inputs: string[], output: string, attribute: OnnxAttribute[] = []): void {
    this.nodes.push({ op_type: opType, domain: '', name: this.fresh(`${output}_node`), input: inputs, output: [output], attribute });
  }

  /** Adds an initializer named after `base`. */
  constant(base: string, data: Float32Array | Uint16Array | Int8Array, dims: number[], dataType: number): string {
    const name = this.fresh(base);
    this.initializers.push({ name, dims, data_type: dataType, raw_data: rawBytes(data) });
    return name;
  }
}
