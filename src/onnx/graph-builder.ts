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

  constructor(readonly name: string, readonly opset = 17) {}

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
