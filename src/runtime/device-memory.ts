import { GraphBuilder } from '../onnx/graph-builder.js';
import type { OnnxDataTypeName } from '../onnx/proto.js';
import type { DType, Tensor } from '../tensor.js';
import { isDeviceTensor, type Resident } from './device-tensor.js';
import { Session, type SessionOptions } from './session.js';

const ONNX_TYPE: Record<DType, OnnxDataTypeName> = { float32: 'FLOAT', float64: 'DOUBLE', int32: 'INT32', int64: 'INT64', uint8: 'UINT8' };

/** Identity over a tensor of one element type and rank, dims symbolic. */
function identityGraph(dtype: DType, rank: number): Uint8Array {
  const g = new GraphBuilder(`identity_${dtype}_${rank}`);
  const dims = Array.from({ length: rank }, (_, i) => `d${i}`);
  g.output(g.op('Identity', [g.input('x', ONNX_TYPE[dtype], dims)]), 'y', ONNX_TYPE[dtype], dims);
  return g.toBytes();
}

/**
 * Moves tensors between host and device memory, where onnxruntime-node can hold device memory
 * (webgpu; elsewhere both directions return the host tensor as it is). onnxruntime-node makes
 * device tensors only as session outputs and reads them only as session outputs on the host, so
 * an upload is a run of an Identity graph whose output stays on the device and a download a run
 * of one whose output comes back. Uploaded tensors belong to this object: {@link release} frees
 * those not disposed yet, so release it after everything that feeds them.
 *
 * @example
 * const mem = new DeviceMemory({ executionProviders: ['webgpu'] });
 * const w = await mem.upload(matrix);      // one copy to the device, fed to any run afterwards
 * const y = await mem.download(hidden);    // a host Tensor
 */
export class DeviceMemory {
  private readonly sessions = new Map<string, Promise<Session>>();

  constructor(private readonly options: Pick<SessionOptions, 'executionProviders' | 'transfers'> = {}) {}

  /** Whether tensors can live in device memory on this device. */
  get holdsDeviceMemory(): boolean {
    return (this.options.executionProviders ?? ['cpu']).includes('webgpu');
  }

  private session(dtype: DType, rank: number, toDevice: boolean): Promise<Session> {
    const key = `${dtype}:${rank}:${toDevice ? 'up' : 'down'}`;
    let s = this.sessions.get(key);
    if (!s) {
      s = Session.create(identityGraph(dtype, rank), toDevice ? `upload ${dtype}[${rank}]` : `download ${dtype}[${rank}]`, {
        ...this.options, threads: 1, ...(toDevice ? { deviceOutputs: ['y'] } : {}),
      });
      this.sessions.set(key, s);
      s.catch(() => this.sessions.delete(key));
    }
    return s;
  }

  /** A copy of `t` in device memory (counted as uploaded bytes), or `t` itself where there is none. */
  async upload(t: Resident): Promise<Resident> {
    if (isDeviceTensor(t) || !this.holdsDeviceMemory) return t;
    const s = await this.session(t.dtype, t.dims.length, true);
    return (await s.runResident({ x: t })).y!;
  }

  /** The host value of `t` (counted as downloaded bytes when it was on the device). */
  async download(t: Resident): Promise<Tensor> {
    if (!isDeviceTensor(t)) return t;
    const s = await this.session(t.dtype, t.dims.length, false);
    return (await s.run({ x: t })).y!;
  }

  /** Frees the upload and download sessions and every uploaded tensor not yet disposed. */
  async release(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    for (const s of all) await (await s).release();
  }
}
