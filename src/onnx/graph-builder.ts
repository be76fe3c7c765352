import { AttributeType, ModelProto, OnnxDataType, type OnnxDataTypeName } from './proto.js';

/** A dimension: a fixed size, or a symbolic name (`'batch'`) that ORT resolves at run time. */
export type Dim = number | string;

/** A float attribute value; plain numbers are INT attributes, so floats are wrapped explicitly. */
export interface FloatAttr { readonly kind: 'float'; readonly value: number }
/** A list-of-floats attribute value. */
export interface FloatsAttr { readonly kind: 'floats'; readonly value: readonly number[] }
export type AttrValue = number | readonly number[] | string | FloatAttr | FloatsAttr;

/** Marks `value` as a FLOAT attribute (`epsilon`, `alpha`, `scale`…). */
export function float(value: number): FloatAttr {
  return { kind: 'float', value };
}
/** Marks `value` as a FLOATS attribute. */
export function floats(value: readonly number[]): FloatsAttr {
  return { kind: 'floats', value };
}

type InitData = Float32Array | Int32Array | BigInt64Array | Uint8Array | Float64Array;

const DTYPE_OF: Array<[new (...a: never[]) => InitData, OnnxDataTypeName]> = [
  [Float32Array, 'FLOAT'],
  [Float64Array, 'DOUBLE'],
  [Int32Array, 'INT32'],
  [BigInt64Array, 'INT64'],
  [Uint8Array, 'UINT8'],
];

interface ValueInfo { name: string; type: { tensor_type: { elem_type: number; shape: { dim: object[] } } } }

function valueInfo(name: string, dtype: OnnxDataTypeName, shape: readonly Dim[]): ValueInfo {
  return {
    name,
    type: {
      tensor_type: {
        elem_type: OnnxDataType[dtype],
        shape: { dim: shape.map((d) => (typeof d === 'number' ? { dim_value: d } : { dim_param: d })) },
      },
    },
  };
}

/** A node as added, attributes decoded back to builder values (see {@link GraphBuilder.nodeViews}). */
export interface NodeView {
  readonly opType: string;
  readonly domain: string;
  readonly name: string;
  readonly inputs: readonly string[];
  readonly outputs: readonly string[];
  readonly attrs: Readonly<Record<string, AttrValue>>;
}

/** Element type and declared shape of a graph input or output. */
export interface ValueSpec {
  readonly dtype: OnnxDataTypeName;
  readonly shape: readonly Dim[];
}

/** An initializer's element type, dims and data (a view of the array given to {@link GraphBuilder.initializer}). */
export interface InitializerView {
  readonly dtype: OnnxDataTypeName;
  readonly dims: readonly number[];
  readonly data: InitData;
}

/** Options of {@link GraphBuilder.op}. */
export interface OpOptions {
  /** Operator domain: '' for standard ONNX, 'com.microsoft' for ONNX Runtime's contrib ops. */
  readonly domain?: string;
  /** Number of outputs to create (default 1). */
  readonly outputs?: number;
}

/**
 * Builds an ONNX model in code, node by node, so that every graph setar runs is readable
 * TypeScript rather than an opaque file. Values are referred to by name; `op` returns the
 * names of the new node's outputs.
 *
 * @example
 * const g = new GraphBuilder('affine');
 * const x = g.input('x', 'FLOAT', ['batch', 4]);
 * const w = g.initializer('w', new Float32Array(8), [4, 2]);
 * g.output(g.op('MatMul', [x, w]), 'y', 'FLOAT', ['batch', 2]);
 * const bytes = g.toBytes(); // Uint8Array for InferenceSession.create
 */
export class GraphBuilder {
  private readonly nodes: object[] = [];
  private readonly inputs: ValueInfo[] = [];
  private readonly outputs: ValueInfo[] = [];
  private readonly initializers: object[] = [];
  private readonly usedNames = new Set<string>();
  private counter = 0;
  private readonly domains = new Set<string>(['']);

  /**
   * Named initializers turned into graph inputs when `paramsAsInputs` selects them, with their
   * values kept here: a trainer feeds every parameter and asks for its gradient.
   */
  readonly params = new Map<string, { data: InitData; dims: readonly number[] }>();

  /**
   * When set, weight matrices that graphs normally take as inputs (see `linear` in the CLIP
   * graphs) are baked in as initializers with these values instead: a standalone, exportable model.
   */
  bakeWeights?: (name: string) => Float32Array;

  constructor(readonly name: string, readonly opset = 17, private readonly paramsAsInputs?: (name: string) => boolean) {}

  /** A name not used yet (not reserved: the caller claims it by using it). */
  private fresh(base: string): string {
    let n = `${base}_${this.counter++}`;
    while (this.usedNames.has(n)) n = `${base}_${this.counter++}`;
    return n;
  }

  private claim(name: string): string {
    if (this.usedNames.has(name)) throw new Error(`graph '${this.name}': value name '${name}' is already used`);
    this.usedNames.add(name);
    return name;
  }

  /** Declares a graph input. */
  input(name: string, dtype: OnnxDataTypeName, shape: readonly Dim[]): string {
    this.inputs.push(valueInfo(this.claim(name), dtype, shape));
    return name;
  }

  /**
   * Adds a constant tensor (weights, shapes, axes). The typed array is referenced, not copied,
   * until {@link toBytes} serialises it.
   */
  initializer(name: string, data: InitData, dims: readonly number[]): string {
    const n = dims.reduce((a, b) => a * b, 1);
    if (data.length !== n) {
      throw new RangeError(`graph '${this.name}': initializer '${name}' has ${data.length} elements, dims [${dims.join(', ')}] need ${n}`);
    }
    const entry = DTYPE_OF.find(([ctor]) => data instanceof ctor);
    if (!entry) throw new TypeError(`graph '${this.name}': initializer '${name}' has an unsupported array type`);
    if (this.paramsAsInputs?.(name)) {
      this.params.set(name, { data, dims });
      return this.input(name, entry[1], dims);
    }
    this.initializers.push({
      name: this.claim(name),
      dims: [...dims],
      data_type: OnnxDataType[entry[1]],
      raw_data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    });
    return name;
  }

  /** Whether a value (input, initializer or node output) of this name exists. */
  has(name: string): boolean {
    return this.usedNames.has(name);
  }

  /** A small int64 constant such as a Reshape target or Unsqueeze axes. */
  constInt64(values: readonly number[], base = 'const'): string {
    return this.initializer(this.fresh(base), BigInt64Array.from(values.map((v) => BigInt(v))), [values.length]);
  }

  /** A float32 constant of the given dims (scalar when dims is []). */
  constFloat(values: readonly number[], dims: readonly number[] = [], base = 'constf'): string {
    return this.initializer(this.fresh(base), Float32Array.from(values), dims);
  }

  /** Adds a node; returns its single output name (or all of them with `outputs > 1`, via {@link opN}). */
  op(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, options: OpOptions = {}): string {
    return this.opN(opType, inputs, attrs, { ...options, outputs: 1 })[0]!;
  }

  /** Adds a node with `options.outputs` outputs and returns their names. */
  opN(opType: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, options: OpOptions = {}): string[] {
    const domain = options.domain ?? '';
    this.domains.add(domain);
    const outputs = Array.from({ length: options.outputs ?? 1 }, () => this.claim(this.fresh(opType.toLowerCase())));
    const attribute = Object.entries(attrs).map(([name, v]) => encodeAttr(name, v));
    this.nodes.push({ op_type: opType, domain, input: [...inputs], output: outputs, name: this.fresh(`n_${opType}`), attribute });
    return outputs;
  }

  /** Names a value as a graph output (inserting an Identity so any value, even an input, can be exposed). */
  output(value: string, name: string, dtype: OnnxDataTypeName, shape: readonly Dim[]): void {
    this.claim(name);
    this.nodes.push({ op_type: 'Identity', domain: '', input: [value], output: [name], name: this.fresh('n_out'), attribute: [] });
    this.outputs.push(valueInfo(name, dtype, shape));
  }

  // ---- read-only views, for graph transforms (autodiff) ---------------------------------

  /** A fresh value name that is not used yet (claimed when a value of that name is added). */
  uniqueName(base: string): string {
    return this.fresh(base);
  }

  /** The nodes so far, in the order they were added, with attributes decoded. */
  nodeViews(): NodeView[] {
    return (this.nodes as ProtoNode[]).map(viewOfNode);
  }

  /** The node that produces `value`, or undefined for inputs, initializers and unknown names. */
  producer(value: string): NodeView | undefined {
    const node = (this.nodes as ProtoNode[]).find((n) => n.output.includes(value));
    return node && viewOfNode(node);
  }

  /** Declared type of a graph input, or undefined when `name` is not an input. */
  inputSpec(name: string): ValueSpec | undefined {
    const vi = this.inputs.find((i) => i.name === name);
    return vi && specOf(vi);
  }

  /** Names of the graph inputs, in declaration order. */
  inputNames(): string[] {
    return this.inputs.map((i) => i.name);
  }

  /** Declared type of a graph output, or undefined when `name` is not an output. */
  outputSpec(name: string): ValueSpec | undefined {
    const vi = this.outputs.find((o) => o.name === name);
    return vi && specOf(vi);
  }

  /** An initializer's type, dims and data, or undefined when `name` is not an initializer. */
  initializerView(name: string): InitializerView | undefined {
    const t = (this.initializers as ProtoInitializer[]).find((i) => i.name === name);
    if (!t) return undefined;
    const dtype = (Object.keys(OnnxDataType) as OnnxDataTypeName[]).find((k) => OnnxDataType[k] === t.data_type)!;
    const ctor = DTYPE_OF.find(([, name]) => name === dtype)![0] as unknown as { new (b: ArrayBufferLike, o: number, n: number): InitData; BYTES_PER_ELEMENT: number };
    const raw = t.raw_data;
    return { dtype, dims: t.dims, data: new ctor(raw.buffer, raw.byteOffset, raw.byteLength / ctor.BYTES_PER_ELEMENT) };
  }

  /** Serialises the model (IR 8; opset 17 plus com.microsoft 1 when contrib ops are used). */
  toBytes(): Uint8Array {
    const model = {
      ir_version: 8,
      producer_name: 'setar',
      producer_version: '0.1.0',
      opset_import: [...this.domains].map((domain) => ({ domain, version: domain === '' ? this.opset : 1 })),
      graph: {
        name: this.name,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    };
    return ModelProto.encode(model as unknown as protobufMessage).finish();
  }
}

// protobufjs' encode accepts plain objects whose fields follow the descriptor.
type protobufMessage = Parameters<typeof ModelProto.encode>[0];

function encodeAttr(name: string, v: AttrValue): object {
  if (typeof v === 'number') {
    if (!Number.isInteger(v)) throw new TypeError(`attribute '${name}': ${v} is not an integer; wrap floats with float()`);
    return { name, type: AttributeType.INT, i: v };
  }
  if (typeof v === 'string') return { name, type: AttributeType.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: AttributeType.INTS, ints: v };
  const tagged = v as FloatAttr | FloatsAttr;
  if (tagged.kind === 'float') return { name, type: AttributeType.FLOAT, f: tagged.value };
  return { name, type: AttributeType.FLOATS, floats: [...tagged.value] };
}

interface ProtoAttr { name: string; type: number; i?: number; ints?: number[]; f?: number; floats?: number[]; s?: Uint8Array }
interface ProtoNode { op_type: string; domain: string; input: string[]; output: string[]; name: string; attribute: ProtoAttr[] }
interface ProtoInitializer { name: string; dims: number[]; data_type: number; raw_data: Uint8Array }

function decodeAttr(a: ProtoAttr): AttrValue {
  switch (a.type) {
    case AttributeType.INT: return a.i!;
    case AttributeType.INTS: return [...a.ints!];
    case AttributeType.FLOAT: return float(a.f!);
    case AttributeType.FLOATS: return floats(a.floats!);
    case AttributeType.STRING: return new TextDecoder().decode(a.s!);
    default: throw new TypeError(`attribute '${a.name}': type ${a.type} cannot be decoded`);
  }
}

function viewOfNode(n: ProtoNode): NodeView {
  return {
    opType: n.op_type,
    domain: n.domain,
    name: n.name,
    inputs: [...n.input],
    outputs: [...n.output],
    attrs: Object.fromEntries(n.attribute.map((a) => [a.name, decodeAttr(a)])),
  };
}

function specOf(vi: ValueInfo): ValueSpec {
  const dtype = (Object.keys(OnnxDataType) as OnnxDataTypeName[]).find((k) => OnnxDataType[k] === vi.type.tensor_type.elem_type)!;
  const shape = (vi.type.tensor_type.shape.dim as Array<{ dim_value?: number; dim_param?: string }>).map((d) => (d.dim_param !== undefined ? d.dim_param : d.dim_value!));
  return { dtype, shape };
}
