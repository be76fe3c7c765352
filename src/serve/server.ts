import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import busboy from 'busboy';
import { Detector } from '../bundle/bundle.js';
import { ImageDecodeError } from '../image/decode.js';
import { detectorPage } from './page.js';

/** Options of {@link startServer}. */
export interface ServeOptions {
  readonly bundle: string;
  readonly host?: string;
  readonly port?: number;
  /** Largest accepted upload in bytes (default 10 MB). */
  readonly maxBytes?: number;
  readonly threads?: number;
}

/** A client error: its status and a message for the JSON body. */
class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

const IMAGE_TYPES = /^image\/(jpeg|png|webp|gif|bmp|tiff)$/;

function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        reject(new HttpError(413, `upload larger than ${max} bytes`));
        req.resume();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function readMultipartImage(req: IncomingMessage, max: number): Promise<{ data: Buffer; name: string }> {
  return new Promise((resolve, reject) => {
    let bb: busboy.Busboy;
    try {
      bb = busboy({ headers: req.headers, limits: { fileSize: max, files: 1 } });
    } catch (e) {
      reject(new HttpError(400, `bad multipart request: ${(e as Error).message}`));
      return;
    }
    let found: { data: Buffer; name: string } | null = null;
    let failed: HttpError | null = null;
    bb.on('file', (field, stream, info) => {
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('limit', () => (failed = new HttpError(413, `upload larger than ${max} bytes`)));
      stream.on('close', () => {
        if (field === 'image') found = { data: Buffer.concat(chunks), name: info.filename || 'upload' };
      });
    });
    bb.on('close', () => {
      if (failed) reject(failed);
      else if (!found) reject(new HttpError(400, 'multipart upload has no file field "image"'));
      else resolve(found);
    });
    bb.on('error', (e) => reject(new HttpError(400, `bad multipart request: ${(e as Error).message}`)));
    req.pipe(bb);
  });
}

function send(res: ServerResponse, status: number, body: unknown, type = 'application/json'): void {
  const text = type === 'application/json' ? JSON.stringify(body) : String(body);
  res.writeHead(status, { 'Content-Type': type === 'application/json' ? 'application/json; charset=utf-8' : type, 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
  res.end(text);
}

/**
 * `setar serve`: the bundle's detector over HTTP (loopback by default).
 * - `POST /v1/score`: the image as the raw body (`Content-Type: image/*`) or the `image` field of a
 *   multipart form → `{label, top, scores, ood, threshold, patch_map}`;
 * - `GET /v1/health`, `GET /v1/labels`;
 * - `GET /`: a page to drop an image and see the verdict and the patch map.
 * Bad uploads get a 4xx JSON error; the server keeps serving.
 */
export async function startServer(o: ServeOptions): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const detector = await Detector.load(o.bundle, { threads: o.threads });
  const max = o.maxBytes ?? 10 * 1024 * 1024;
  const page = detectorPage(detector.manifest.labels);
  // one image at a time through the model: ORT already uses every core for each run
  let queue: Promise<unknown> = Promise.resolve();
  const serialised = <T>(f: () => Promise<T>): Promise<T> => {
    const p = queue.then(f, f);
    queue = p.catch(() => undefined);
    return p;
  };
  const server = createServer((req, res) => {
    void (async () => {
      try {
        const url = new URL(req.url ?? '/', 'http://localhost');
        if (req.method === 'GET' && url.pathname === '/') return send(res, 200, page, 'text/html; charset=utf-8');
        if (req.method === 'GET' && url.pathname === '/v1/health') return send(res, 200, { status: 'ok' });
        if (req.method === 'GET' && url.pathname === '/v1/labels') return send(res, 200, { labels: detector.manifest.labels });
        if (url.pathname === '/v1/score') {
          if (req.method !== 'POST') throw new HttpError(405, 'use POST with an image body or a multipart field "image"');
          const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
          const declared = Number(req.headers['content-length'] ?? 0);
          if (declared > max) throw new HttpError(413, `upload larger than ${max} bytes`);
          let image: { data: Buffer; name: string };
          if (type === 'multipart/form-data') image = await readMultipartImage(req, max);
          else if (IMAGE_TYPES.test(type)) image = { data: await readBody(req, max), name: 'upload' };
          else throw new HttpError(415, `Content-Type "${type || '(none)'}" is not an image; send image/jpeg, image/png or image/webp, or a multipart field "image"`);
          if (image.data.length === 0) throw new HttpError(400, 'the upload is empty');
          const verdict = await serialised(() => detector.scoreImage(image.data, image.name)).catch((e: unknown) => {
            if (e instanceof ImageDecodeError) throw new HttpError(422, e.message);
            throw e;
          });
          return send(res, 200, verdict);
        }
        throw new HttpError(404, `no route ${req.method} ${url.pathname}`);
      } catch (e) {
        if (e instanceof HttpError) {
          if (!res.headersSent) send(res, e.status, { error: e.message });
        } else if (!res.headersSent) {
          send(res, 500, { error: (e as Error).message });
        }
        if (req.readable) req.resume();
      }
    })();
  });
  await new Promise<void>((resolve) => server.listen(o.port ?? 8080, o.host ?? '127.0.0.1', resolve));
  const addr = server.address() as { port: number; address: string };
  return {
    server,
    url: `http://${addr.address}:${addr.port}`,
    close: async () => {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await detector.release();
    },
  };
}
