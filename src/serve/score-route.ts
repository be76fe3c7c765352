/**
 * `POST /v1/score`, stage by stage: admission (at most `maxQueue` uploads in the pipeline, else
 * 503 with Retry-After), the upload (body.ts), the header (above `maxPixels`: 413 before any
 * decoding), decoding in a worker (decode-pool.ts), the model in dynamic batches (batcher.ts), the
 * verdict. Each request has `scoreTimeoutMs` from its upload to its verdict (then 504); one whose
 * client leaves stops at its next step.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Verdict } from '../bundle/verdict.js';
import { ImageDecodeError, ImageTooLargeError, readImageHeader } from '../image/decode.js';
import { DynamicBatcher } from './batcher.js';
import { MULTIPART_OVERHEAD, readMultipartImage, readRawBody, type Upload } from './body.js';
import type { DecodePool } from './decode-pool.js';
import { HttpError, send } from './http.js';
import type { ServeMetrics } from './metrics.js';

/** The limits and batching of {@link ScorePipeline}. */
export interface ScoreLimits {
  readonly maxBytes: number;
  readonly maxPixels: number;
  readonly maxQueue: number;
  readonly scoreTimeoutMs: number;
  readonly maxBatch?: number;
  readonly maxDelayMs?: number;
}

const IMAGE_TYPES = /^image\/(jpeg|png|webp|gif|bmp|tiff)$/;

/** The score route and the state it keeps; see the module comment. */
export class ScorePipeline {
  /** Requests admitted (upload in) and not answered yet. */
  private scoring = 0;
  /** Of those, the ones not yet at the batcher (being decoded): a batch waits for company only while some are. */
  private upstream = 0;
  private readonly model: DynamicBatcher<Float32Array, Verdict>;

  constructor(
    private readonly pool: DecodePool,
    /** The model: n preprocessed images → their verdicts. */
    score: (pixels: Float32Array[]) => Promise<Verdict[]>,
    private readonly metrics: ServeMetrics,
    private readonly o: ScoreLimits,
    /** Whether the server is shutting down (new requests then get 503). */
    private readonly draining: () => boolean,
  ) {
    this.model = new DynamicBatcher(score, { maxBatch: o.maxBatch, maxDelayMs: o.maxDelayMs, onBatch: (n) => metrics.batchRun(n), upstream: () => this.upstream });
  }

  /** Images waiting for a decoding worker and for a model batch. */
  get queueDepth(): { decode: number; model: number } {
    return { decode: this.pool.state.waiting, model: this.model.depth };
  }

  /** Resolves when no request is in the pipeline and the model is idle. */
  async settled(): Promise<void> {
    while (this.scoring > 0) await new Promise((r) => setTimeout(r, 10));
    await this.model.idle();
  }

  readonly handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    // a request that came on an open connection after the shutdown began; those in progress finish
    if (this.draining()) throw new HttpError(503, 'the server is shutting down', { 'Retry-After': '1' });
    const { maxBytes: max, maxQueue } = this.o;
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    const multipart = type === 'multipart/form-data';
    if (!multipart && !IMAGE_TYPES.test(type)) {
      throw new HttpError(415, `Content-Type "${type || '(none)'}" is not an image; send image/jpeg, image/png or image/webp, or a multipart field "image"`);
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > max + (multipart ? MULTIPART_OVERHEAD : 0)) throw new HttpError(413, `upload larger than ${max} bytes`);
    const busy = () => new HttpError(503, `the server is busy: ${maxQueue} images are waiting or being scored (--max-queue); retry in a moment`, { 'Retry-After': '1' });
    if (this.scoring >= maxQueue) throw busy(); // before the upload is read
    const image: Upload = multipart ? await readMultipartImage(req, max) : { data: await readRawBody(req, max), name: 'upload' };
    if (image.data.length === 0) throw new HttpError(400, 'the upload is empty');
    if (this.scoring >= maxQueue) throw busy();
    this.scoring++;
    this.upstream++;
    let onTheWay = true;
    const arrived = () => {
      if (onTheWay) this.upstream--;
      onTheWay = false;
    };
    // the deadline, or the client gone: stop spending work on this request
    const gone = new AbortController();
    const onClose = () => { if (!res.writableFinished) gone.abort(new HttpError(499, 'client closed the request')); };
    res.on('close', onClose);
    const signal = AbortSignal.any([AbortSignal.timeout(this.o.scoreTimeoutMs), gone.signal]);
    try {
      const header = await readImageHeader(image.data, { name: image.name, maxPixels: this.o.maxPixels });
      const px = await this.pool.decode(image.data, header.width * header.height, image.name, signal);
      this.metrics.imageDecoded();
      arrived();
      const verdict = await this.model.submit(px, signal);
      this.metrics.verdict(verdict.label, verdict.ood);
      send(res, 200, verdict);
    } catch (e) {
      if (e instanceof ImageTooLargeError) this.metrics.imageRefused('too_large');
      else if (e instanceof ImageDecodeError) this.metrics.imageRefused('undecodable');
      if ((e as Error)?.name === 'TimeoutError') throw new HttpError(504, `no verdict within ${this.o.scoreTimeoutMs / 1000} s of the upload (--score-timeout): the server is overloaded`);
      throw e;
    } finally {
      if (onTheWay) {
        arrived();
        this.model.poke(); // a batch may have been waiting for this one
      }
      this.scoring--;
      res.off('close', onClose);
    }
  };
}
