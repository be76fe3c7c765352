import { readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import busboy from 'busboy';
import { Detector } from '../bundle/bundle.js';
import { ImageDecodeError } from '../image/decode.js';
import { packageRoot } from '../paths.js';
import type { ResolvedDevice } from '../runtime/device.js';
import { detectorPage } from './page.js';

/** Options of {@link startServer}. */
export interface ServeOptions {
  readonly bundle: string;
  readonly host?: string;
  readonly port?: number;
  /** Largest accepted upload in bytes (default 10 MB). */
  readonly maxBytes?: number;
  readonly threads?: number;
  /** Where the detector runs (default cpu). */
  readonly device?: ResolvedDevice;
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

/** The bundle files the browser client fetches from `/bundle/<file>` (nothing else in the folder is served). */
const BUNDLE_FILES: Readonly<Record<string, string>> = {
  'bundle.json': 'application/json; charset=utf-8',
  'image_encoder.onnx': 'application/octet-stream',
  'text_features.safetensors': 'application/octet-stream',
};

/** onnxruntime-web's wasm backend files the client loads from `/ort/<file>` (single-threaded, SIMD). */
const ORT_FILES: Readonly<Record<string, string>> = {
  // onnxruntime-web's WebGPU build (src/web/client.ts): its WebGPU and wasm execution providers
  'ort-wasm-simd-threaded.asyncify.wasm': 'application/wasm',
  'ort-wasm-simd-threaded.asyncify.mjs': 'text/javascript; charset=utf-8',
};

/** A static file, read on each request (they are small or cached by the OS; no-store so a rebuilt bundle is seen). */
function sendFile(res: ServerResponse, path: string, type: string): void {
  let body: Buffer;
  try {
    body = readFileSync(path);
  } catch {
    throw new HttpError(404, `not available: ${path.split(/[\\/]/).pop()}${type.startsWith('text/javascript') ? ' (run `npm run build` to build the browser client)' : ''}`);
  }
  res.writeHead(200, { 'Content-Type': type, 'Content-Length': body.length, 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' });
  res.end(body);
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
 * - `GET /`: a page to drop an image and see the verdict and the patch map, scored by the server
 *   or, with "score in this browser", by the page itself (onnxruntime-web, wasm) from
 *   `GET /bundle/{bundle.json,image_encoder.onnx,text_features.safetensors}`, `GET /client.js`
 *   (dist/web/client.js, built by scripts/build-web.mjs) and `GET /ort/<wasm backend file>`.
 * Bad uploads get a 4xx JSON error; the server keeps serving.
 */
export async function startServer(o: ServeOptions): Promise<{ server: Server; url: string; close(): Promise<void> }> {
  const detector = await Detector.load(o.bundle, { threads: o.threads, device: o.device });
  const max = o.maxBytes ?? 10 * 1024 * 1024;
  const page = detectorPage(detector.manifest.labels);
  const root = packageRoot();
  const ortDist = join(root, 'node_modules', 'onnxruntime-web', 'dist');
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
        if (req.method === 'GET' && url.pathname.startsWith('/bundle/')) {
          const f = url.pathname.slice('/bundle/'.length);
          if (!Object.hasOwn(BUNDLE_FILES, f)) throw new HttpError(404, `no bundle file ${JSON.stringify(f)}; served: ${Object.keys(BUNDLE_FILES).join(', ')}`);
          return sendFile(res, join(o.bundle, f), BUNDLE_FILES[f]!);
        }
        if (req.method === 'GET' && url.pathname.startsWith('/ort/')) {
          const f = url.pathname.slice('/ort/'.length);
          if (!Object.hasOwn(ORT_FILES, f)) throw new HttpError(404, `no onnxruntime-web file ${JSON.stringify(f)}`);
          return sendFile(res, join(ortDist, f), ORT_FILES[f]!);
        }
        if (req.method === 'GET' && url.pathname === '/client.js') return sendFile(res, join(root, 'dist', 'web', 'client.js'), 'text/javascript; charset=utf-8');
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
