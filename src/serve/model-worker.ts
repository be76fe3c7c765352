/**
 * The worker-thread half of model-thread.ts: the bundle's detector, loaded and run in its own
 * thread. onnxruntime-node runs a session synchronously on the calling thread, so on the main
 * thread every model run (seconds for a ViT-B/16 batch on a few cores) would stop the server from
 * accepting connections, answering health probes and keeping its timers. Message types are
 * private to model-thread.ts; this module does nothing when imported outside a worker thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { Detector, type Verdict } from '../bundle/bundle.js';
import type { PreprocessOptions } from '../image/preprocess.js';
import type { ResolvedDevice } from '../runtime/device.js';
import { tensor } from '../tensor.js';

/** `workerData` of the model worker. */
export interface ModelWorkerInit {
  readonly bundle: string;
  readonly threads?: number;
  /** Where the model runs (resolved in the main thread; plain data). */
  readonly device?: ResolvedDevice;
}

/** main → worker: score a batch of `n` preprocessed images, or release the model and exit. */
export type ToModelWorker = { readonly type: 'score'; readonly id: number; readonly pixels: Float32Array; readonly n: number } | { readonly type: 'close' };

/** worker → main. */
export type FromModelWorker =
  | { readonly type: 'ready'; readonly labels: readonly string[]; readonly size: number; readonly preprocess: PreprocessOptions }
  | { readonly type: 'load-failed'; readonly message: string }
  | { readonly type: 'done'; readonly id: number; readonly verdicts: Verdict[] }
  | { readonly type: 'failed'; readonly id: number; readonly message: string };

const port = parentPort;
if (port) {
  const { bundle, threads, device } = workerData as ModelWorkerInit;
  const post = (m: FromModelWorker) => port.postMessage(m);
  Detector.load(bundle, { threads, device }).then((detector) => {
    const size = detector.manifest.size;
    // one batch at a time: the main thread's batcher sends the next when this one is answered
    port.on('message', (msg: ToModelWorker) => {
      if (msg.type === 'close') {
        void detector.release().finally(() => port.close());
        return;
      }
      detector.scoreBatch(tensor('float32', msg.pixels, [msg.n, 3, size, size], 'pixel_values')).then(
        (verdicts) => post({ type: 'done', id: msg.id, verdicts }),
        (e: unknown) => post({ type: 'failed', id: msg.id, message: e instanceof Error ? e.message : String(e) }),
      );
    });
    post({ type: 'ready', labels: detector.manifest.labels, size, preprocess: detector.preprocess });
  }, (e: unknown) => {
    post({ type: 'load-failed', message: e instanceof Error ? e.message : String(e) });
    port.close();
  });
}
