/**
 * The worker-thread half of decode-pool.ts: each task is one uploaded image's bytes; the worker
 * decodes and preprocesses it (`loadAndPreprocess`, the pixel limit checked from the header first)
 * and posts back the CHW float32 pixels, transferring the buffer. Message types are private to
 * decode-pool.ts; this module does nothing when imported outside a worker thread.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { ImageDecodeError, ImageTooLargeError } from '../image/decode.js';
import { loadAndPreprocess, type PreprocessOptions } from '../image/preprocess.js';

/** `workerData` given to each worker. */
export interface DecodeWorkerInit {
  readonly preprocess: PreprocessOptions;
  readonly maxPixels: number;
}

/** main → worker: decode task `id`, or finish the task in hand and exit. */
export type ToDecodeWorker = { readonly type: 'task'; readonly id: number; readonly bytes: Uint8Array; readonly name: string } | { readonly type: 'close' };

/** Why a task failed: an undecodable image, one above the pixel limit, or anything else (a bug). */
export type DecodeFailure =
  | { readonly kind: 'decode'; readonly file: string; readonly reason: string }
  | { readonly kind: 'too-large'; readonly file: string; readonly width: number; readonly height: number; readonly limit: number }
  | { readonly kind: 'internal'; readonly message: string };

/** worker → main. */
export type FromDecodeWorker =
  | { readonly type: 'done'; readonly id: number; readonly data: Float32Array }
  | { readonly type: 'failed'; readonly id: number; readonly failure: DecodeFailure };

function failure(err: unknown): DecodeFailure {
  if (err instanceof ImageTooLargeError) return { kind: 'too-large', file: err.file, width: err.width, height: err.height, limit: err.limit };
  if (err instanceof ImageDecodeError) {
    const prefix = `cannot decode image ${err.file}: `;
    return { kind: 'decode', file: err.file, reason: err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message };
  }
  return { kind: 'internal', message: err instanceof Error ? err.message : String(err) };
}

const port = parentPort;
if (port) {
  const { preprocess, maxPixels } = workerData as DecodeWorkerInit;
  let busy = false;
  let closing = false;
  // As the dataset loader's workers: finish the image in hand, then close (terminating a thread
  // inside a libvips call can crash the process).
  port.on('message', (msg: ToDecodeWorker) => {
    if (msg.type === 'close') {
      closing = true;
      if (!busy) port.close();
      return;
    }
    busy = true;
    void loadAndPreprocess(msg.bytes, { ...preprocess, name: msg.name, maxPixels })
      .then((data): [FromDecodeWorker, ArrayBuffer[]] => {
        const own = data.byteOffset === 0 && data.byteLength === data.buffer.byteLength ? data : data.slice();
        return [{ type: 'done', id: msg.id, data: own }, [own.buffer as ArrayBuffer]];
      }, (err: unknown): [FromDecodeWorker, ArrayBuffer[]] => [{ type: 'failed', id: msg.id, failure: failure(err) }, []])
      .then(([reply, transfer]) => {
        busy = false;
        port.postMessage(reply, transfer);
        if (closing) port.close();
      });
  });
}
