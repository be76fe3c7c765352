import { ModelProto, OnnxDataType } from './proto.js';

/**
 * An ONNX model as plain objects — the fields of proto.ts's descriptor, int64s as numbers — for
 * passes that rewrite a finished model (precision conversion). Tensor bytes are views of the
 * decoded buffer, not copies, so a 350 MB model is not held twice.
 */
export interface OnnxModel {
  ir_version: number;
  producer_name?: string;
  producer_version?: string;
  opset_import: { domain?: string; version: number }[];
  graph: OnnxGraph;
}

export interface OnnxGraph {
  name?: string;
  node: OnnxNode[];
  initializer: OnnxTensor[];
  input: OnnxValueInfo[];
  output: OnnxValueInfo[];
}

export interface OnnxNode {
  input: string[];
  output: string[];
  name?: string;
  op_type: string;
  domain?: string;
  attribute: OnnxAttribute[];
}

/** One attribute; only the fields its `type` (AttributeType) names are set. */
export interface OnnxAttribute {
  name: string;
  type: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  floats?: number[];
  ints?: number[];
}

export interface OnnxTensor {
  name: string;
  dims: number[];
  data_type: number;
  raw_data?: Uint8Array;
}

export interface OnnxValueInfo {
  name: string;
  type?: unknown;
}

/** Decodes ONNX model bytes (the fields proto.ts describes; others are dropped). */
export function decodeModel(bytes: Uint8Array): OnnxModel {
  const m = ModelProto.toObject(ModelProto.decode(bytes), { longs: Number, arrays: true }) as OnnxModel;
  m.graph ??= { node: [], initializer: [], input: [], output: [] };
  for (const n of m.graph.node) n.attribute ??= [];
  return m;
}

/** Encodes a model back to bytes. */
export function encodeModel(m: OnnxModel): Uint8Array {
  return ModelProto.encode(m as unknown as Parameters<typeof ModelProto.encode>[0]).finish();
}

/** The opset version the model imports for `domain` ('' = the standard operators), or undefined. */
export function opsetOf(m: OnnxModel, domain = ''): number | undefined {
  return m.opset_import.find((o) => (o.domain ?? '') === domain)?.version;
}

/** An initializer's values when it is FLOAT with raw_data (copied: raw_data need not be 4-byte aligned). */
export function float32Data(t: OnnxTensor): Float32Array {
  if (t.data_type !== OnnxDataType.FLOAT) throw new TypeError(`initializer '${t.name}': data_type ${t.data_type}, expected FLOAT (${OnnxDataType.FLOAT})`);
  const n = t.dims.reduce((a, b) => a * b, 1);
  const raw = t.raw_data;
  if (!raw || raw.byteLength !== 4 * n) throw new RangeError(`initializer '${t.name}': raw_data holds ${raw?.byteLength ?? 0} bytes, dims [${t.dims.join(', ')}] need ${4 * n}`);
  const out = new Float32Array(n);
  new Uint8Array(out.buffer).set(raw);
  return out;
}

/** Little-endian bytes of a typed array, as raw_data. */
export function rawBytes(a: Float32Array | Uint16Array | Int8Array | Uint8Array | Int32Array | BigInt64Array): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}
