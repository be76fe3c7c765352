/**
 * A streaming image loader for evaluation: files are decoded and preprocessed (exactly as
 * `loadAndPreprocess`) in worker threads while the consumer — the model — runs, and come back as
 * pixel batches in dataset order, with memory bounded whatever the number of files.
 *
 * Why plain `node:worker_threads` rather than a pool library (piscina): the pool's job here is a
 * fixed set of workers fed an in-order stream under a hard cap on what is held; a generic task
 * queue would still need this module's ordering, cap and shutdown logic around it, and the whole
 * pool is ~60 lines. It also lets shutdown be graceful (finish the image in hand, then exit),
 * which sharp asks for: terminating a thread inside a libvips call can crash the process.
 */
import 'sharp'; // sharp's docs: load it in the main thread before any worker does, so its shared libraries stay loaded when a worker exits
import { availableParallelism } from 'node:os';
import type { Worker } from 'node:worker_threads';
import { startWorkerModule, workerModuleUrl } from '../io/worker-module.js';
import { ImageDecodeError } from '../image/decode.js';
import { tensor, type Tensor } from '../tensor.js';
import type { FromWorker, ToWorker, WorkerInit } from './preprocess-worker.js';

/** One batch of preprocessed images. */
export interface ImageBatch {
  /**
   * pixel_values [n, 3, S, S], float32, S = the crop size; 1 <= n <= batchSize (only the last
   * batch may be smaller; a skipped image leaves no row). The consumer owns it: each batch has its
   * own buffer, never reused by the loader.
   */
  readonly pixelValues: Tensor<'float32'>;
  /** [n]: the position in `files` of each row, ascending. */
  readonly indices: Int32Array;
}

/** An image left out in non-strict mode. */
export interface SkippedImage {
  /** Position in `files`. */
  readonly index: number;
  readonly file: string;
  /** Why it could not be read, e.g. "file not found" or the decoder's message. */
  readonly reason: string;
}

export interface LoaderOptions {
  /** Rows per batch (a positive integer). */
  readonly batchSize: number;
  /** `loadAndPreprocess` options: size (default 224), resizeTo, cropSize, mean, std. */
  readonly preprocess: {
    size?: number;
    resizeTo?: number;
    cropSize?: number;
    mean?: readonly [number, number, number];
    std?: readonly [number, number, number];
  };
  /** Worker threads (default {@link defaultWorkerCount}); never more than there are files. */
  readonly workers?: number;
  /**
   * Finished batches that may wait for the consumer (default 2, at least 1). Work stops when they
   * and the batch being filled would exceed this many batches of images, so at most
   * (prefetchBatches + 1) · batchSize − 1 images are held besides the batch the consumer has.
   */
  readonly prefetchBatches?: number;
  /**
   * Largest image in pixels (width × height), checked from the header before decoding (default
   * 40 MP, decode.ts DEFAULT_MAX_PIXELS): a larger one is unreadable, skipped or (strict) fatal.
   */
  readonly maxPixels?: number;
  /**
   * true: the first unreadable image (in dataset order) rejects the iteration with an
   * ImageDecodeError naming the file, after the batches before it have been delivered.
   */
  readonly strict?: boolean;
  /**
   * Non-strict mode: called for each unreadable or corrupt image, which is skipped. Called in
   * dataset order when the loader reaches the image, possibly before the consumer has taken the
   * batches that precede it.
   */
  readonly onSkip?: (s: SkippedImage) => void;
  /**
   * Called when the count of images that have reached the consumer (as a row of a batch handed
   * over, or skipped) grows: `done` is the first position not yet handed over, `total` = files.length.
   */
  readonly onProgress?: (done: number, total: number) => void;
}

/** The loader's counters, reported to {@link LoaderProbe.onState} after every change. */
export interface LoaderState {
  /** Finished batches waiting for the consumer. */
  readonly ready: number;
  /** Images dispatched and not yet handed to the consumer (in flight, out of order, in the batch being filled, or in ready batches). */
  readonly held: number;
  /** Images being preprocessed by a worker now. */
  readonly inFlight: number;
  /** Batches handed to the consumer so far. */
  readonly delivered: number;
}

/** @internal Observation hooks for tests (bounded prefetch); not part of the stable API. */
export interface LoaderProbe {
  readonly onState?: (s: LoaderState) => void;
}

/**
 * Default worker count: one less than the cores (at least 1), because ONNX Runtime runs the model
 * on every core meanwhile. On the 2-core development machine (bench/eval-throughput.ts, ViT-B/16,
 * batch 32) 1 worker fed the model at 92-93% of its model-only rate and 2 workers at 91-93%: one
 * worker alone preprocesses ~115 images/s, >10x what the model consumes, so a second only adds
 * start-up time and contention.
 */
export function defaultWorkerCount(): number {
  return Math.max(1, availableParallelism() - 1);
}

/**
 * Images a worker has in hand at once: 2 lets sharp decode one (on libuv's pool) while the
 * worker's thread resamples the other (one worker alone: ~115 images/s with 2, ~95 with 1).
 */
const TASKS_PER_WORKER = 2;

/** A worker that has not exited after this long once asked to close is terminated (ms). */
const CLOSE_GRACE_MS = 10_000;

let liveWorkers = 0;

/** @internal Worker threads started by this module that have not exited yet (tests check it returns to 0). */
export function activeWorkerCount(): number {
  return liveWorkers;
}

const WORKER_URL = workerModuleUrl(import.meta.url, 'preprocess-worker');

function spawnWorker(init: WorkerInit): Worker {
  return startWorkerModule(WORKER_URL, init);
}

function positiveInt(value: number, name: string): number {
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`loadImageBatches: ${name} must be a positive integer, got ${value}`);
  return value;
}

/**
 * Streams `files` as preprocessed pixel batches, in order: `pixelValues` [n, 3, S, S] float32 with
 * S = `preprocess.cropSize ?? preprocess.size ?? 224`, and `indices` [n] their positions in
 * `files`. Decoding and preprocessing run in worker threads ahead of the consumer, at most
 * `prefetchBatches` batches ahead. Workers start when iteration starts and are shut down when it
 * ends, fails or is left early (`break`), before the loop statement completes. Each iteration
 * (`for await`) is an independent run.
 *
 * ```ts
 * for await (const { pixelValues, indices } of loadImageBatches(files, { batchSize: 32, preprocess: { size: 224 } })) {
 *   const { image_embeds } = await model.encodeImages(pixelValues);   // [n, P] for files[indices[i]]
 * }
 * ```
 * @throws RangeError at once for invalid options; ImageDecodeError (strict) or a worker failure from the iteration.
 */
export function loadImageBatches(files: readonly string[], options: LoaderOptions, probe: LoaderProbe = {}): AsyncIterable<ImageBatch> {
  positiveInt(options.batchSize, 'batchSize');
  if (options.workers !== undefined) positiveInt(options.workers, 'workers');
  if (options.prefetchBatches !== undefined) positiveInt(options.prefetchBatches, 'prefetchBatches');
  const crop = options.preprocess.cropSize ?? options.preprocess.size ?? 224;
  positiveInt(crop, 'preprocess crop size');
  if (options.maxPixels !== undefined && !(options.maxPixels > 0)) throw new RangeError(`loadImageBatches: maxPixels must be a positive number, got ${options.maxPixels}`);
  for (const [i, f] of files.entries()) {
    if (typeof f !== 'string') throw new TypeError(`loadImageBatches: files[${i}] is not a string`);
  }
  const list = [...files]; // a snapshot: later edits of the caller's array do not affect a run
  return { [Symbol.asyncIterator]: () => new BatchRun(list, options, crop, probe) };
}

interface Slot {
  readonly worker: Worker;
  inFlight: number;
  alive: boolean;
  readonly exited: Promise<void>;
}

type Outcome = Float32Array | { readonly decode: boolean; readonly reason: string; readonly stack?: string };

interface Waiter {
  resolve(r: IteratorResult<ImageBatch>): void;
  reject(e: unknown): void;
}

/** One iteration: its workers, the reorder buffer, the batch being filled and the ready queue. */
class BatchRun implements AsyncIterator<ImageBatch> {
  private readonly batchSize: number;
  private readonly prefetch: number;
  /** Images that may be held (dispatched, not yet handed over): keeps ready batches <= prefetch. */
  private readonly holdLimit: number;
  private readonly rowSize: number;
  private slots: Slot[] = [];
  private started = false;
  /** Next file to send to a worker. */
  private nextDispatch = 0;
  /** Next file to take, in order, from `results` into the batch being filled. */
  private cursor = 0;
  private readonly results = new Map<number, Outcome>();
  private partialIndices: number[] = [];
  private partialRows: Float32Array[] = [];
  private readonly ready: ImageBatch[] = [];
  private held = 0;
  private inFlight = 0;
  private delivered = 0;
  private progress = 0;
  /** A terminal error, delivered after the ready batches. */
  private failure: { error: unknown } | null = null;
  /** Set once the iteration is over for the consumer (done returned, error thrown, or return()). */
  private finished = false;
  private shutdownPromise: Promise<void> | null = null;
  private readonly waiters: Waiter[] = [];

  constructor(
    private readonly files: readonly string[],
    private readonly options: LoaderOptions,
    crop: number,
    private readonly probe: LoaderProbe,
  ) {
    this.batchSize = options.batchSize;
    this.prefetch = options.prefetchBatches ?? 2;
    this.holdLimit = (this.prefetch + 1) * this.batchSize - 1;
    this.rowSize = 3 * crop * crop;
  }

  [Symbol.asyncIterator](): this {
    return this;
  }

  next(): Promise<IteratorResult<ImageBatch>> {
    if (this.finished) return Promise.resolve({ done: true, value: undefined });
    if (!this.started) this.start();
    return new Promise((resolve, reject) => {
      this.waiters.push({ resolve, reject });
      this.settle();
    });
  }

  /** Called by `for await` on break/throw: stop the workers and wait for them to exit. */
  async return(): Promise<IteratorResult<ImageBatch>> {
    this.finish();
    await this.shutdown();
    return { done: true, value: undefined };
  }

  // ---- workers ---------------------------------------------------------------------------

  private start(): void {
    this.started = true;
    const count = Math.min(this.options.workers ?? defaultWorkerCount(), this.files.length);
    const init: WorkerInit = { preprocess: { ...this.options.preprocess }, ...(this.options.maxPixels !== undefined ? { maxPixels: this.options.maxPixels } : {}) };
    for (let i = 0; i < count; i++) {
      const worker = spawnWorker(init);
      liveWorkers++;
      let onExit!: () => void;
      const slot: Slot = { worker, inFlight: 0, alive: true, exited: new Promise<void>((r) => (onExit = r)) };
      worker.on('message', (msg: FromWorker) => this.onMessage(slot, msg));
      worker.on('error', (err) => this.fail(new Error(`image preprocessing worker failed: ${err.message}`, { cause: err })));
      worker.on('messageerror', (err) => this.fail(new Error(`image preprocessing worker sent an unreadable message: ${err.message}`, { cause: err })));
      worker.on('exit', (code) => {
        slot.alive = false;
        liveWorkers--;
        onExit();
        if (!this.shutdownPromise) this.fail(new Error(`image preprocessing worker exited unexpectedly (code ${code})`));
      });
      this.slots.push(slot);
    }
    this.pump();
  }

  private onMessage(slot: Slot, msg: FromWorker): void {
    slot.inFlight--;
    this.inFlight--;
    if (this.failure || this.finished) {
      this.updateRefs();
      return; // results that arrive after the end are dropped
    }
    if (msg.type === 'done') {
      if (msg.data.length !== this.rowSize) {
        this.fail(new Error(`preprocessing ${this.files[msg.index]} gave ${msg.data.length} values, expected ${this.rowSize}`));
        return;
      }
      this.results.set(msg.index, msg.data);
    } else {
      this.results.set(msg.index, { decode: msg.decode, reason: msg.reason, ...(msg.stack ? { stack: msg.stack } : {}) });
    }
    this.advance();
    this.pump();
    this.settle();
  }

  /** Sends work while the hold limit allows, each worker up to TASKS_PER_WORKER images. */
  private pump(): void {
    while (!this.failure && !this.finished && this.nextDispatch < this.files.length && this.held < this.holdLimit) {
      let best: Slot | null = null;
      for (const s of this.slots) if (s.alive && s.inFlight < TASKS_PER_WORKER && (!best || s.inFlight < best.inFlight)) best = s;
      if (!best) break;
      const index = this.nextDispatch++;
      best.inFlight++;
      this.inFlight++;
      this.held++;
      best.worker.postMessage({ type: 'task', index, file: this.files[index]! } satisfies ToWorker);
    }
    this.updateRefs();
    this.report();
  }

  /**
   * A worker keeps the process alive only while it has an image in hand: an idle one (waiting
   * for the consumer) is unref'd, so an iterator abandoned without return() cannot hang the process.
   */
  private updateRefs(): void {
    if (this.shutdownPromise) return;
    for (const s of this.slots) {
      if (!s.alive) continue;
      if (s.inFlight > 0) s.worker.ref();
      else s.worker.unref();
    }
  }

  /** Asks every worker to finish what it has started and exit; resolves when all have exited. */
  private shutdown(): Promise<void> {
    if (!this.shutdownPromise) {
      this.shutdownPromise = Promise.all(
        this.slots.map(async (s) => {
          if (!s.alive) return;
          s.worker.ref(); // whoever awaits the exit must keep the event loop alive until it happens
          s.worker.postMessage({ type: 'close' } satisfies ToWorker);
          const timer = setTimeout(() => void s.worker.terminate(), CLOSE_GRACE_MS);
          await s.exited;
          clearTimeout(timer);
        }),
      ).then(() => {
        this.results.clear();
        this.partialRows = [];
        this.partialIndices = [];
        this.report();
      });
    }
    return this.shutdownPromise;
  }

  private fail(error: unknown): void {
    if (this.failure || this.finished) return;
    this.failure = { error };
    void this.shutdown();
    this.settle();
  }

  private finish(): void {
    this.finished = true;
    this.ready.length = 0;
    for (const w of this.waiters.splice(0)) w.resolve({ done: true, value: undefined });
  }

  // ---- ordering and batching -------------------------------------------------------------

  /** Moves finished images, in dataset order, into the batch being filled; full batches become ready. */
  private advance(): void {
    while (!this.failure && this.results.has(this.cursor)) {
      const index = this.cursor++;
      const outcome = this.results.get(index)!;
      this.results.delete(index);
      if (outcome instanceof Float32Array) {
        this.partialIndices.push(index);
        this.partialRows.push(outcome);
        if (this.partialRows.length === this.batchSize) this.flushPartial();
        continue;
      }
      this.held--;
      const file = this.files[index]!;
      if (!outcome.decode) {
        const err = new Error(`preprocessing ${file} failed: ${outcome.reason}`);
        if (outcome.stack) err.stack = outcome.stack;
        this.fail(err);
      } else if (this.options.strict) {
        this.fail(new ImageDecodeError(file, outcome.reason));
      } else {
        this.options.onSkip?.({ index, file, reason: outcome.reason });
      }
    }
    // The short last batch waits for room like any other, so ready never exceeds prefetch.
    if (!this.failure && this.cursor === this.files.length && this.partialRows.length > 0 && this.ready.length < this.prefetch) {
      this.flushPartial();
    }
    this.report();
  }

  private flushPartial(): void {
    const n = this.partialRows.length;
    const data = new Float32Array(n * this.rowSize);
    for (let r = 0; r < n; r++) data.set(this.partialRows[r]!, r * this.rowSize);
    const side = Math.round(Math.sqrt(this.rowSize / 3));
    this.ready.push({
      pixelValues: tensor('float32', data, [n, 3, side, side], 'pixel_values'),
      indices: Int32Array.from(this.partialIndices),
    });
    this.partialRows = [];
    this.partialIndices = [];
  }

  /** Answers waiting next() calls from the ready queue, then the failure, then the end. */
  private settle(): void {
    while (this.waiters.length > 0) {
      const batch = this.ready.shift();
      if (batch) {
        this.held -= batch.indices.length;
        this.delivered++;
        this.waiters.shift()!.resolve({ done: false, value: batch });
        this.advance(); // a deferred last batch may fit now
        this.pump();
        continue;
      }
      if (this.failure) {
        const { error } = this.failure;
        const waiters = this.waiters.splice(0);
        this.finished = true;
        void this.shutdown().then(() => {
          for (const w of waiters) w.reject(error);
        });
        return;
      }
      if (this.cursor === this.files.length && this.partialRows.length === 0) {
        const waiters = this.waiters.splice(0);
        this.finished = true;
        void this.shutdown().then(() => {
          for (const w of waiters) w.resolve({ done: true, value: undefined });
        });
        return;
      }
      return; // wait for the workers
    }
  }

  /** Progress: the first position not yet handed over (earlier images were delivered or skipped). */
  private report(): void {
    const next = this.ready[0]?.indices[0] ?? this.partialIndices[0] ?? this.cursor;
    const done = this.failure ? this.progress : Math.min(next, this.files.length);
    if (done > this.progress) {
      this.progress = done;
      this.options.onProgress?.(done, this.files.length);
    }
    this.probe.onState?.({ ready: this.ready.length, held: this.held, inFlight: this.inFlight, delivered: this.delivered });
  }
}
