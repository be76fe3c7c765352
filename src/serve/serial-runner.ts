import type { Verdict } from '../bundle/verdict.js';

/**
 * The model stage: preprocessed images through the detector one at a time (ONNX Runtime already
 * uses every core for each run), in arrival order. A job whose `signal` aborts while it waits
 * leaves the queue at once; one already running finishes and its verdict is dropped.
 */
export class SerialRunner {
  private readonly waiting: { px: Float32Array; resolve: (v: Verdict) => void; reject: (e: unknown) => void }[] = [];
  private running: Promise<void> | null = null;

  constructor(private readonly score: (px: Float32Array) => Promise<Verdict>) {}

  /** Jobs waiting for the model. */
  get depth(): number {
    return this.waiting.length;
  }

  run(px: Float32Array, signal?: AbortSignal): Promise<Verdict> {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const job = { px, resolve, reject };
      const onAbort = () => {
        const i = this.waiting.indexOf(job);
        if (i >= 0) this.waiting.splice(i, 1);
        reject(signal!.reason);
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      job.resolve = (v) => { signal?.removeEventListener('abort', onAbort); resolve(v); };
      job.reject = (e) => { signal?.removeEventListener('abort', onAbort); reject(e); };
      this.waiting.push(job);
      this.running ??= this.drain();
    });
  }

  /** Resolves when nothing waits or runs. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  private async drain(): Promise<void> {
    for (let job = this.waiting.shift(); job; job = this.waiting.shift()) {
      try {
        job.resolve(await this.score(job.px));
      } catch (e) {
        job.reject(e);
      }
    }
    this.running = null;
  }
}
