/**
 * Dynamic batching, as Triton's dynamic batcher does it: requests that arrive while the model is
 * busy, or within `maxDelayMs` of the oldest waiting one, run together as one batch of at most
 * `maxBatch`. One batch runs at a time (ONNX Runtime already spreads each run over every core), so
 * a batch forms while the previous one runs and leaves as soon as the model is free and either
 * `maxBatch` requests wait or the oldest has waited `maxDelayMs`. `maxBatch` 1 is no batching.
 *
 * One refinement over Triton: given `upstream` (the requests already admitted and still on their
 * way, e.g. being decoded), a batch waits for company only while some are; with nothing on the
 * way the wait could only add latency (a lone client would pay `maxDelayMs` on every request).
 *
 * A request whose `signal` aborts while it waits leaves the queue at once; one already in a running
 * batch finishes with it and its result is dropped.
 */

/** Options of {@link DynamicBatcher}. */
export interface BatcherOptions {
  /** Largest batch (default 16). */
  readonly maxBatch?: number;
  /** How long the oldest waiting request may wait for others to join its batch, in ms (default 5). */
  readonly maxDelayMs?: number;
  /** Called with each batch's size before it runs (metrics). */
  readonly onBatch?: (size: number) => void;
  /** Requests on their way to {@link DynamicBatcher.submit}; call {@link DynamicBatcher.poke} when it drops without a submit. */
  readonly upstream?: () => number;
}

interface Pending<T, R> {
  readonly item: T;
  readonly at: number;
  resolve(r: R): void;
  reject(e: unknown): void;
}

/** Queues items and runs them through `run` in batches; see the module comment. */
export class DynamicBatcher<T, R> {
  readonly maxBatch: number;
  readonly maxDelayMs: number;
  private readonly waiting: Pending<T, R>[] = [];
  private running: Promise<void> | null = null;
  private timer: NodeJS.Timeout | null = null;

  /** `run` maps a batch of items to their results, in order, one result per item. */
  constructor(private readonly run: (items: T[]) => Promise<R[]>, private readonly o: BatcherOptions = {}) {
    this.maxBatch = o.maxBatch ?? 16;
    this.maxDelayMs = o.maxDelayMs ?? 5;
    if (!Number.isInteger(this.maxBatch) || this.maxBatch < 1) throw new RangeError(`--max-batch must be an integer >= 1, got ${this.maxBatch}`);
    if (!(this.maxDelayMs >= 0) || !Number.isFinite(this.maxDelayMs)) throw new RangeError(`--max-delay-ms must be a number >= 0, got ${this.maxDelayMs}`);
  }

  /** Requests waiting for a batch. */
  get depth(): number {
    return this.waiting.length;
  }

  /** `item`'s result, computed in a batch with whatever else is waiting. */
  submit(item: T, signal?: AbortSignal): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const p: Pending<T, R> = { item, at: performance.now(), resolve, reject };
      if (signal) {
        const onAbort = () => {
          const i = this.waiting.indexOf(p);
          if (i >= 0) this.waiting.splice(i, 1);
          reject(signal.reason);
        };
        signal.addEventListener('abort', onAbort, { once: true });
        p.resolve = (r) => { signal.removeEventListener('abort', onAbort); resolve(r); };
        p.reject = (e) => { signal.removeEventListener('abort', onAbort); reject(e); };
      }
      this.waiting.push(p);
      this.schedule();
    });
  }

  /** Re-examines the queue: the `upstream` count dropped (a request failed before reaching the batcher). */
  poke(): void {
    this.schedule();
  }

  /** Resolves when nothing waits or runs. */
  async idle(): Promise<void> {
    while (this.running || this.waiting.length) {
      if (this.running) await this.running;
      else await new Promise((r) => setTimeout(r, this.maxDelayMs));
    }
  }

  /** Starts a batch if the model is free and one is due, else sets a timer for when it will be. */
  private schedule(): void {
    if (this.running || this.waiting.length === 0) return;
    const due = this.waiting[0]!.at + this.maxDelayMs;
    const now = performance.now();
    const alone = this.o.upstream !== undefined && this.o.upstream() === 0;
    if (this.waiting.length >= this.maxBatch || now >= due || alone) {
      if (this.timer) clearTimeout(this.timer);
      this.timer = null;
      const batch = this.waiting.splice(0, this.maxBatch);
      this.running = this.runBatch(batch).finally(() => {
        this.running = null;
        this.schedule();
      });
    } else if (!this.timer) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.schedule();
      }, Math.max(0, due - now));
    }
  }

  private async runBatch(batch: Pending<T, R>[]): Promise<void> {
    this.o.onBatch?.(batch.length);
    try {
      const results = await this.run(batch.map((p) => p.item));
      if (results.length !== batch.length) throw new Error(`batch of ${batch.length} gave ${results.length} results`);
      batch.forEach((p, i) => p.resolve(results[i]!));
    } catch (e) {
      for (const p of batch) p.reject(e);
    }
  }
}
