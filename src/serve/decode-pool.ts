/**
 * Decoding uploads off the event loop: worker threads decode and preprocess the images, each one
 * at a time, so a large image costs a worker, not the server.
 *
 * Work is bounded by pixels, which is what decoding costs (a 40 MP image is 120 MB of RGB and about
 * a second of preprocessing): images above {@link SMALL_IMAGE_PIXELS} may use all workers but one,
 * and together hold at most `maxPixels` pixels (a single image always fits, as the header check has
 * already refused larger ones). The last worker stays free for small images, so an ordinary photo
 * never waits behind a large one. Waiting jobs start in arrival order, a small one passing large
 * ones that do not fit yet. A job whose `signal` aborts (the request's deadline) leaves the queue
 * at once; one already decoding finishes in its worker and its result is dropped.
 */
import 'sharp'; // sharp's docs: load it in the main thread before any worker does
import type { Worker } from 'node:worker_threads';
import { ImageDecodeError, ImageTooLargeError } from '../image/decode.js';
import type { PreprocessOptions } from '../image/preprocess.js';
import { startWorkerModule, workerModuleUrl } from '../io/worker-module.js';
import type { DecodeFailure, DecodeWorkerInit, FromDecodeWorker, ToDecodeWorker } from './decode-worker.js';

/**
 * Images at most this large (4 MP, 2000 x 2000) always find a worker: one decodes and preprocesses
 * in about 0.1 s on one core (a 40 MP image: 1.05 s, measured on the 2-core development machine).
 */
export const SMALL_IMAGE_PIXELS = 4_000_000;

/** Options of {@link DecodePool}. */
export interface DecodePoolOptions {
  /** Worker threads (at least 2: one is kept for small images). */
  readonly workers: number;
  /** The bundle's preprocessing. */
  readonly preprocess: PreprocessOptions;
  /** The largest image, and the pixels large images may hold together. */
  readonly maxPixels: number;
}

/** The pool's counters. */
export interface DecodePoolState {
  /** Jobs waiting for a worker. */
  readonly waiting: number;
  /** Jobs being decoded (including abandoned ones still finishing). */
  readonly decoding: number;
}

interface Job {
  readonly id: number;
  readonly bytes: Uint8Array;
  readonly pixels: number;
  readonly name: string;
  readonly resolve: (px: Float32Array) => void;
  readonly reject: (e: unknown) => void;
  /** Set when the caller has given up (deadline, shutdown): the result is dropped. */
  abandoned: boolean;
}

interface Slot {
  worker: Worker;
  job: Job | null;
  readonly exited: Promise<void>;
}

/** A worker failed or the pool is closing; not the image's fault. */
export class DecodePoolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DecodePoolError';
  }
}

const WORKER_URL = workerModuleUrl(import.meta.url, 'decode-worker');
/** A worker that has not exited this long after being asked to close is terminated (ms). */
const CLOSE_GRACE_MS = 10_000;

function rebuild(f: DecodeFailure): Error {
  if (f.kind === 'too-large') return new ImageTooLargeError(f.file, f.width, f.height, f.limit);
  if (f.kind === 'decode') return new ImageDecodeError(f.file, f.reason);
  return new DecodePoolError(`image decoding failed: ${f.message}`);
}

/** Worker threads that decode and preprocess uploaded images; see the module comment. */
export class DecodePool {
  private readonly slots: Slot[] = [];
  private readonly waiting: Job[] = [];
  private nextId = 0;
  private closed = false;

  constructor(private readonly o: DecodePoolOptions) {
    if (!Number.isInteger(o.workers) || o.workers < 2) throw new RangeError(`DecodePool: workers must be an integer >= 2 (one is kept for small images), got ${o.workers}`);
    for (let i = 0; i < o.workers; i++) this.slots.push(this.spawn());
  }

  get state(): DecodePoolState {
    return { waiting: this.waiting.length, decoding: this.slots.filter((s) => s.job).length };
  }

  /**
   * `bytes` (an encoded image of `pixels` pixels, from its header) → pixel values [3, S, S].
   * Rejects with ImageTooLargeError / ImageDecodeError for the image's faults, DecodePoolError for
   * the pool's, or the signal's reason when it aborts first.
   */
  decode(bytes: Uint8Array, pixels: number, name: string, signal?: AbortSignal): Promise<Float32Array> {
    if (this.closed) return Promise.reject(new DecodePoolError('the server is shutting down'));
    return new Promise<Float32Array>((resolve, reject) => {
      const job: Job = { id: this.nextId++, bytes, pixels, name, resolve, reject, abandoned: false };
      if (signal) {
        if (signal.aborted) return reject(signal.reason);
        const onAbort = () => this.abandon(job, signal.reason);
        signal.addEventListener('abort', onAbort, { once: true });
        const settle = <T>(f: (v: T) => void) => (v: T) => {
          signal.removeEventListener('abort', onAbort);
          f(v);
        };
        Object.assign(job, { resolve: settle(resolve), reject: settle(reject) });
      }
      this.waiting.push(job);
      this.pump();
    });
  }

  /** Rejects the waiting jobs, lets each worker finish its image, and waits for them to exit. */
  async close(): Promise<void> {
    this.closed = true;
    for (const j of this.waiting.splice(0)) j.reject(new DecodePoolError('the server is shutting down'));
    await Promise.all(this.slots.map(async (s) => {
      s.worker.ref(); // whoever awaits the exit keeps the event loop alive until it happens
      s.worker.postMessage({ type: 'close' } satisfies ToDecodeWorker);
      const timer = setTimeout(() => void s.worker.terminate(), CLOSE_GRACE_MS);
      await s.exited;
      clearTimeout(timer);
    }));
  }

  private spawn(): Slot {
    const init: DecodeWorkerInit = { preprocess: this.o.preprocess, maxPixels: this.o.maxPixels };
    const worker = startWorkerModule(WORKER_URL, init);
    let onExit!: () => void;
    const slot: Slot = { worker, job: null, exited: new Promise<void>((r) => (onExit = r)) };
    worker.on('message', (msg: FromDecodeWorker) => {
      const job = slot.job;
      slot.job = null;
      worker.unref();
      if (job && job.id === msg.id && !job.abandoned) {
        if (msg.type === 'done') job.resolve(msg.data);
        else job.reject(rebuild(msg.failure));
      }
      this.pump();
    });
    worker.on('error', (err) => this.lost(slot, `image decoding worker failed: ${err.message}`));
    worker.on('exit', (code) => {
      onExit();
      this.lost(slot, `image decoding worker exited (code ${code})`);
    });
    worker.unref(); // an idle worker does not keep the process alive; one with an image in hand does
    return slot;
  }

  /** A worker died: fail its job and, unless closing, start another in its place. */
  private lost(slot: Slot, why: string): void {
    const job = slot.job;
    slot.job = null;
    if (job && !job.abandoned) job.reject(new DecodePoolError(why));
    if (this.closed) return;
    const i = this.slots.indexOf(slot);
    if (i < 0) return;
    void slot.worker.terminate();
    this.slots[i] = this.spawn();
    this.pump();
  }

  private abandon(job: Job, reason: unknown): void {
    const i = this.waiting.indexOf(job);
    if (i >= 0) this.waiting.splice(i, 1);
    job.abandoned = true;
    job.reject(reason);
  }

  /** Whether `job` may start now, given the large images being decoded. */
  private fits(job: Job): boolean {
    if (job.pixels <= SMALL_IMAGE_PIXELS) return true;
    const large = this.slots.filter((s) => s.job && s.job.pixels > SMALL_IMAGE_PIXELS);
    if (large.length >= this.slots.length - 1) return false;
    return large.length === 0 || large.reduce((a, s) => a + s.job!.pixels, 0) + job.pixels <= this.o.maxPixels;
  }

  private pump(): void {
    for (const slot of this.slots) {
      if (slot.job) continue;
      const k = this.waiting.findIndex((j) => this.fits(j));
      if (k < 0) return;
      const job = this.waiting.splice(k, 1)[0]!;
      slot.job = job;
      slot.worker.ref();
      // a copy the worker owns: the request's buffer may be a slice of Node's shared pool
      const bytes = job.bytes.slice();
      slot.worker.postMessage({ type: 'task', id: job.id, bytes, name: job.name } satisfies ToDecodeWorker, [bytes.buffer as ArrayBuffer]);
    }
  }
}
