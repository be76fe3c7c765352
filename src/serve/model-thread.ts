/**
 * The detector in a worker thread (model-worker.ts): batches of preprocessed images go in (their
 * buffer transferred, not copied), verdicts come back, and the server's event loop stays free
 * while the model runs.
 */
import type { ResolvedDevice } from '../runtime/device.js';
import type { Worker } from 'node:worker_threads';
import type { Verdict } from '../bundle/verdict.js';
import type { PreprocessOptions } from '../image/preprocess.js';
import { startWorkerModule, workerModuleUrl } from '../io/worker-module.js';
import type { FromModelWorker, ModelWorkerInit, ToModelWorker } from './model-worker.js';

const WORKER_URL = workerModuleUrl(import.meta.url, 'model-worker');

/** A loaded bundle running in its own thread. */
export class ModelThread {
  private readonly pending = new Map<number, { resolve: (v: Verdict[]) => void; reject: (e: unknown) => void }>();
  private nextId = 0;
  private failure: Error | null = null;
  private closing = false;
  private readonly exited: Promise<void>;

  private constructor(
    private readonly worker: Worker,
    /** The bundle's class names, in label order. */
    readonly labels: readonly string[],
    /** The crop side: pixel_values are [n, 3, size, size]. */
    readonly size: number,
    /** The bundle's preprocessing. */
    readonly preprocess: PreprocessOptions,
    exited: Promise<void>,
  ) {
    this.exited = exited;
    worker.on('message', (m: FromModelWorker) => {
      if (m.type !== 'done' && m.type !== 'failed') return;
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.type === 'done') p?.resolve(m.verdicts);
      else p?.reject(new Error(`the model failed: ${m.message}`));
    });
  }

  /** Loads `bundle` in a new worker thread; rejects with the loading error (a missing file, a bad bundle.json). */
  static start(bundle: string, options: { threads?: number; device?: ResolvedDevice } = {}): Promise<ModelThread> {
    const worker = startWorkerModule(WORKER_URL, { bundle, threads: options.threads, device: options.device } satisfies ModelWorkerInit);
    let onExit!: () => void;
    const exited = new Promise<void>((r) => (onExit = r));
    return new Promise((resolve, reject) => {
      let thread: ModelThread | null = null;
      const lost = (why: string) => {
        if (!thread) return reject(new Error(why));
        thread.fail(new Error(why));
      };
      worker.once('message', (m: FromModelWorker) => {
        if (m.type === 'ready') resolve((thread = new ModelThread(worker, m.labels, m.size, m.preprocess, exited)));
        else if (m.type === 'load-failed') reject(new Error(m.message));
      });
      worker.on('error', (e) => lost(`the model thread failed: ${e.message}`));
      worker.on('exit', (code) => {
        onExit();
        lost(thread?.closing ? 'the model thread has closed' : `the model thread exited (code ${code})`);
      });
    });
  }

  /** Verdicts of `n` preprocessed images laid out as [n, 3, size, size] in `pixels` (transferred). */
  score(pixels: Float32Array, n: number): Promise<Verdict[]> {
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const id = this.nextId++;
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ type: 'score', id, pixels, n } satisfies ToModelWorker, [pixels.buffer as ArrayBuffer]);
    });
  }

  /** Why the model thread can no longer score (it failed or exited), or null while it can. */
  get lost(): string | null {
    return this.failure?.message ?? null;
  }

  /** Releases the session and ends the thread (after the batch in progress). */
  async close(): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      this.worker.postMessage({ type: 'close' } satisfies ToModelWorker);
    }
    await this.exited;
  }

  private fail(e: Error): void {
    this.failure = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }
}
