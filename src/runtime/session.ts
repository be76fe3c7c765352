import * as ort from 'onnxruntime-node';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { tensor, type DType, type Tensor } from '../tensor.js';
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
}

const ORT_DTYPE: Record<string, DType> = { float32: 'float32', float64: 'float64', int32: 'int32', int64: 'int64', uint8: 'uint8' };

/** Default intra-op thread count: every core (the graphs are GEMM-bound). */
export function defaultThreads(): number {
  return Math.max(1, cpus().length);
}

/** A compiled graph ready to run. */
export class Session {
  private constructor(private readonly inner: ort.InferenceSession, readonly name: string, private readonly transfers: TransferCounter | null) {}

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
    const onDevice = (options.executionProviders ?? ['cpu']).some((ep) => ep !== 'cpu');
    return new Session(inner, name, onDevice ? (options.transfers ?? null) : null);
  }

  get inputNames(): readonly string[] {
    return this.inner.inputNames;
  }

  get outputNames(): readonly string[] {
    return this.inner.outputNames;
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
    this.transfers?.count(Object.values(ortFeeds), Object.values(res));
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
