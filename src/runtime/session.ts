import * as ort from 'onnxruntime-node';
import { cpus } from 'node:os';
import { tensor, type DType, type Tensor } from '../tensor.js';

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
}

const ORT_DTYPE: Record<string, DType> = { float32: 'float32', float64: 'float64', int32: 'int32', int64: 'int64', uint8: 'uint8' };

/** Default intra-op thread count: every core (the graphs are GEMM-bound). */
export function defaultThreads(): number {
  return Math.max(1, cpus().length);
}

/** A compiled graph ready to run. */
export class Session {
  private constructor(private readonly inner: ort.InferenceSession, readonly name: string) {}

  /** Compiles ONNX model bytes. Weights baked in as initializers are pre-packed by ORT. */
  static async create(bytes: Uint8Array, name: string, options: SessionOptions = {}): Promise<Session> {
    const inner = await ort.InferenceSession.create(bytes, {
      logSeverityLevel: 3,
      executionProviders: [...(options.executionProviders ?? ['cpu'])],
      intraOpNumThreads: options.threads ?? defaultThreads(),
      interOpNumThreads: 1,
      graphOptimizationLevel: 'all',
      enableCpuMemArena: options.memoryArena ?? false,
      enableMemPattern: options.memoryArena ?? false,
    });
    return new Session(inner, name);
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

  /** Runs the graph; every declared input must be fed (all missing names are listed at once). */
  async run(feeds: Record<string, Tensor>, outputs?: readonly string[]): Promise<Record<string, Tensor>> {
    const missing = this.inner.inputNames.filter((n) => !(n in feeds));
    if (missing.length) {
      throw new Error(`session '${this.name}': missing input(s) ${missing.map((m) => `'${m}'`).join(', ')}`);
    }
    const ortFeeds: Record<string, ort.Tensor> = {};
    for (const n of this.inner.inputNames) {
      const t = feeds[n]!;
      ortFeeds[n] = new ort.Tensor(t.dtype, t.data as never, t.dims as number[]);
    }
    const res = outputs ? await this.inner.run(ortFeeds, [...outputs]) : await this.inner.run(ortFeeds);
    const out: Record<string, Tensor> = {};
    for (const [k, v] of Object.entries(res)) {
      const dtype = ORT_DTYPE[v.type];
      if (!dtype) throw new Error(`session '${this.name}': output '${k}' has unsupported type ${v.type}`);
      out[k] = tensor(dtype, v.data as never, v.dims, k);
    }
    return out;
  }

  async release(): Promise<void> {
    await this.inner.release();
  }
}
