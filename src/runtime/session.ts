import * as ort from 'onnxruntime-node';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { tensor, type DType, type Tensor } from '../tensor.js';
import { isDeviceTensor, type DeviceTensor, type Resident } from './device-tensor.js';
import { TransferCounter } from './transfers.js';

/**
 * The one module that talks to ONNX Runtime. Everything else builds graphs as bytes and
 * exchanges plain {@link Tensor}s, so another backend (web, CUDA) replaces only this file.
 */

/** How sessions run. */
export interface SessionOptions {
  /** Intra-op threads; default: the number of CPU cores. */
  readonly threads?: number;
  /** Keep ORT's memory arena between runs (faster repeated runs of one shape, more resident memory). */
  readonly memoryArena?: boolean;
  /** Execution providers in order of preference; default ['cpu']. */
  readonly executionProviders?: readonly string[];
  /**
   * Tallies the host tensors fed to and fetched from runs on a device other than the CPU (each
   * one a copy between host and device memory); runs on the CPU move nothing and are not counted.
   */
  readonly transfers?: TransferCounter;
  /**
   * Outputs to keep in device memory, returned by {@link Session.runResident} as DeviceTensors
   * when the device has memory onnxruntime-node can hold (webgpu), else as host tensors.
   */
  readonly deviceOutputs?: readonly string[];
  /**
   * Profile every run: ORT writes its per-node profile (kernel times, and the execution provider
   * each node ran on) to `<profile><session name>-<n>_<timestamp>.json` when the session is released.
   */
  readonly profile?: string;
}

const ORT_DTYPE: Record<string, DType> = { float32: 'float32', float64: 'float64', int32: 'int32', int64: 'int64', uint8: 'uint8' };

/** Default intra-op thread count: every core (the graphs are GEMM-bound). */
export function defaultThreads(): number {
  return Math.max(1, cpus().length);
}

/** A device-resident output of a session run; it lives no longer than its session (see {@link Session.release}). */
class OrtDeviceTensor implements DeviceTensor {
  readonly location = 'device' as const;
  readonly dims: readonly number[];
  private freed = false;

  constructor(readonly inner: ort.Tensor, readonly dtype: DType, readonly name: string, readonly byteLength: number, private readonly owner: Set<OrtDeviceTensor>) {
    this.dims = Object.freeze([...inner.dims]);
    owner.add(this);
  }

  get disposed(): boolean {
    return this.freed;
  }

  dispose(): void {
    if (this.freed) return;
    this.freed = true;
    this.owner.delete(this);
    this.inner.dispose();
  }
}

const BYTES: Record<DType, number> = { float32: 4, float64: 8, int32: 4, int64: 8, uint8: 1 };
/** Sessions profiled so far (numbers their profile files). */
let profiled = 0;

/** A compiled graph ready to run. */
export class Session {
  /** Device tensors this session's runs produced and nobody disposed yet. */
  private readonly live = new Set<OrtDeviceTensor>();

  private constructor(
    private readonly inner: ort.InferenceSession,
    readonly name: string,
    private readonly transfers: TransferCounter | null,
    private readonly deviceOutputs: ReadonlySet<string>,
    private readonly profiling: boolean,
  ) {}

  /** Compiles ONNX model bytes. Weights baked in as initializers are pre-packed by ORT. */
  static async create(bytes: Uint8Array, name: string, options: SessionOptions = {}): Promise<Session> {
    const eps = options.executionProviders ?? ['cpu'];
    // onnxruntime-node binds 'gpu-buffer' outputs to WebGPU memory only; elsewhere outputs stay on the host
    const deviceOutputs = eps.includes('webgpu') ? new Set(options.deviceOutputs ?? []) : new Set<string>();
    const inner = await ort.InferenceSession.create(bytes, {
      logSeverityLevel: 3,
      executionProviders: [...eps],
      intraOpNumThreads: options.threads ?? defaultThreads(),
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      enableCpuMemArena: options.memoryArena ?? false,
      enableMemPattern: options.memoryArena ?? false,
      ...(deviceOutputs.size ? { preferredOutputLocation: Object.fromEntries([...deviceOutputs].map((n) => [n, 'gpu-buffer' as const])) } : {}),
      // one file per session: ORT names profiles by the second, so the session's name and a count tell them apart
      ...(options.profile ? { enableProfiling: true, profileFilePrefix: `${options.profile}${name.replace(/[^\w.-]+/g, '_')}-${++profiled}` } : {}),
    }).catch((e: Error) => {
      const bad = /"(.*)" is not a valid output name/.exec(e.message);
      throw bad ? new RangeError(`session '${name}': deviceOutputs names '${bad[1]}', which is not an output of the graph`) : e;
    });
    const onDevice = eps.some((ep) => ep !== 'cpu');
    return new Session(inner, name, onDevice ? (options.transfers ?? null) : null, deviceOutputs, options.profile !== undefined);
  }

  get inputNames(): readonly string[] {
    return this.inner.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.inner.outputNames;
  }

  /** The shape a graph input declares (numbers fixed, strings symbolic), or undefined for an unknown name. */
  inputShape(name: string): readonly (number | string)[] | undefined {
    const m = this.inner.inputMetadata.find((i) => i.name === name);
    return m?.isTensor ? m.shape : undefined;
  }

  /**
   * How many device tensors this session's runs produced that nobody disposed yet: releasing
   * the session would free them, so a cache must not release it while they are in use.
   */
  get liveOutputs(): number {
    return this.live.size;
  }

  /** Runs the graph; every declared input must be fed (all missing names are listed at once). Outputs come back to the host. */
  async run(feeds: Record<string, Resident>, outputs?: readonly string[]): Promise<Record<string, Tensor>> {
    if (this.deviceOutputs.size) throw new Error(`session '${this.name}' keeps outputs on the device: use runResident`);
    return (await this.runResident(feeds, outputs)) as Record<string, Tensor>;
  }

  /**
   * Runs the graph; the outputs named in `deviceOutputs` come back as DeviceTensors (webgpu), the
   * others as host tensors. Feeds may be host or device tensors (device ones are not copied).
   */
  async runResident(feeds: Record<string, Resident>, outputs?: readonly string[]): Promise<Record<string, Resident>> {
    const missing = this.inner.inputNames.filter((n) => !(n in feeds));
    if (missing.length) {
      throw new Error(`session '${this.name}': missing input(s) ${missing.map((m) => `'${m}'`).join(', ')}`);
    }
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const n of this.inner.inputNames) {
      const t = feeds[n]!;
      if (isDeviceTensor(t)) {
        // a freed device buffer fed to ORT crashes the process: refuse it here
        if (t.disposed || !(t instanceof OrtDeviceTensor)) throw new Error(`session '${this.name}': input '${n}' is ${t.name}, which was disposed (or its session released)`);
        ortFeeds[n] = t.inner;
      } else {
        ortFeeds[n] = new ort.Tensor(t.dtype, t.data as never, t.dims as number[]);
      }
    }
    const res = outputs ? await this.inner.run(ortFeeds, [...outputs]) : await this.inner.run(ortFeeds);
    this.transfers?.count(Object.values(ortFeeds), Object.values(res));
    const out: Record<string, Resident> = {};
    for (const [k, v] of Object.entries(res)) {
      const dtype = ORT_DTYPE[v.type];
      if (!dtype) throw new Error(`session '${this.name}': output '${k}' has unsupported type ${v.type}`);
      if (v.location === 'gpu-buffer') {
        const n = v.dims.reduce((a, b) => a * b, 1);
        out[k] = new OrtDeviceTensor(v, dtype, `${k} of session '${this.name}'`, n * BYTES[dtype], this.live);
      } else {
        out[k] = tensor(dtype, v.data as never, v.dims, k);
      }
    }
    return out;
  }

  /**
   * Frees the session. Its device outputs still alive are disposed first: with onnxruntime-node
   * 1.30 a device tensor used or freed after its session is gone crashes the process.
   */
  async release(): Promise<void> {
    for (const t of [...this.live]) t.dispose();
    if (this.profiling) this.inner.endProfiling();
    await this.inner.release();
  }
}

/** The execution providers this onnxruntime-node build knows; `bundled: false` ones need binaries its install script downloads. */
export function ortBackends(): readonly { readonly name: string; readonly bundled: boolean }[] {
  return ort.listSupportedBackends();
}

/** The onnxruntime-node version (ONNX Runtime's own). */
export function ortVersion(): string {
  return ort.env.versions.node ?? ort.env.versions.common;
}

/** The folder of onnxruntime-node's native binaries for this platform, where provider libraries (CUDA, TensorRT) must lie. */
export function ortBinaryDir(): string {
  const main = createRequire(import.meta.url).resolve('onnxruntime-node');
  return join(dirname(main), '..', 'bin', 'napi-v6', process.platform, process.arch);
}
