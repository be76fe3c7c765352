/**
 * The worker-thread half of `loadImageBatches` (loader.ts): each task names one image file; the
 * worker decodes and preprocesses it with `loadAndPreprocess` and posts back the CHW float32
 * pixels [3, S, S], transferring the buffer rather than copying it. The message types are private
 * to loader.ts; this module does nothing when imported outside a worker thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ImageDecodeError } from '../image/decode.js';
import { loadAndPreprocess, type PreprocessOptions } from '../image/preprocess.js';

/** `workerData` given to each worker. */
export interface WorkerInit {
  readonly preprocess: PreprocessOptions;
  /** Largest image in pixels (decode.ts default when absent). */
  readonly maxPixels?: number;
}

/** main → worker: preprocess `file` (position `index` of the dataset), or finish and exit. */
export type ToWorker = { readonly type: 'task'; readonly index: number; readonly file: string } | { readonly type: 'close' };

/** worker → main: the pixels, or why there are none (`decode`: an ImageDecodeError, i.e. an unreadable image). */
export type FromWorker =
  | { readonly type: 'done'; readonly index: number; readonly data: Float32Array }
  | { readonly type: 'failed'; readonly index: number; readonly decode: boolean; readonly reason: string; readonly stack?: string };

const port = parentPort;
if (port) {
  const { preprocess, maxPixels } = workerData as WorkerInit;
  let inFlight = 0;
  let closing = false;

  // A graceful close rather than Worker.terminate(): sharp's docs warn that stopping a thread in
  // the middle of a libvips operation can crash the process, so the worker finishes the images it
  // has started, then closes its port and its event loop runs dry.
  const maybeExit = (): void => {
    if (closing && inFlight === 0) port.close();
  };

  const run = async (index: number, file: string): Promise<void> => {
    let reply: FromWorker;
    let transfer: ArrayBuffer[] = [];
    try {
      let data = await loadAndPreprocess(file, { ...preprocess, maxPixels });
      // Transfer only a buffer the array owns whole, so nothing else is detached or sent along.
      if (data.byteOffset !== 0 || data.byteLength !== data.buffer.byteLength) data = data.slice();
      reply = { type: 'done', index, data };
      transfer = [data.buffer as ArrayBuffer];
    } catch (err) {
      if (err instanceof ImageDecodeError) {
        const prefix = `cannot decode image ${err.file}: `;
        const reason = err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message;
        reply = { type: 'failed', index, decode: true, reason };
      } else {
        const e = err instanceof Error ? err : new Error(String(err));
        reply = { type: 'failed', index, decode: false, reason: e.message, ...(e.stack ? { stack: e.stack } : {}) };
      }
    }
    if (!closing) port.postMessage(reply, transfer);
  };

  port.on('message', (msg: ToWorker) => {
    if (msg.type === 'close') {
      closing = true;
      maybeExit();
      return;
    }
    if (closing) return;
    inFlight++;
    void run(msg.index, msg.file).finally(() => {
      inFlight--;
      maybeExit();
    });
  });
}
