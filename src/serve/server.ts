import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import type { Verdict } from '../bundle/verdict.js';
import { DEFAULT_MAX_PIXELS, ImageDecodeError, ImageTooLargeError, readImageHeader } from '../image/decode.js';
import { packageRoot } from '../paths.js';
import { AccessPolicy, checkBindSafety } from './access.js';
import { MULTIPART_OVERHEAD, readMultipartImage, readRawBody, type Upload } from './body.js';
import { DecodePool, DecodePoolError } from './decode-pool.js';
import { HttpError, send, sendFile } from './http.js';
import { detectorPage } from './page.js';
import { DynamicBatcher } from './batcher.js';
import { ServeMetrics } from './metrics.js';
import { ModelThread } from './model-thread.js';

/** Options of {@link startServer}; each maps to a flag of `setar serve`. */
export interface ServeOptions {
  readonly bundle: string;
  readonly host?: string;
  readonly port?: number;
  /** Largest accepted upload in bytes (default 10 MB). */
  readonly maxBytes?: number;
  readonly threads?: number;
  /** Largest image in pixels, read from its header before decoding (default 40 MP); larger: 413. */
  readonly maxPixels?: number;
  /** Image decoding threads (default: cores − 1, between 2 and 4). */
  readonly decodeWorkers?: number;
  /** Uploads received and not yet answered beyond which a score request gets 503 (default 32). */
  readonly maxQueue?: number;
  /** A verdict not ready this long after the upload is received gets 504 (ms, default 30 s). */
  readonly scoreTimeoutMs?: number;
  /** Dynamic batching: most images per model run (default 16; 1: no batching). */
  readonly maxBatch?: number;
  /** Dynamic batching: how long the oldest waiting image may wait for others, in ms (default 5). */
  readonly maxDelayMs?: number;
  /** `POST /v1/score`, `GET /metrics` and `/bundle/*` then need `Authorization: Bearer KEY`. */
  readonly apiKey?: string;
  /** Origins whose pages may call the API (`--cors-origin`); `*` for any. */
  readonly corsOrigins?: readonly string[];
  /** Serve on a non-loopback address without an API key (refused otherwise). */
  readonly insecureNoAuth?: boolean;
  /** Node's HTTP timeouts (ms): whole headers 10 s, whole request 60 s, checked every second. */
  readonly timeouts?: { readonly headersMs?: number; readonly requestMs?: number; readonly checkIntervalMs?: number };
  /** Warnings and errors that reach no client (default: stderr). */
  readonly log?: (line: string) => void;
}

/** How a shutdown went. */
export interface ShutdownReport {
  /** Requests in progress when it began. */
  readonly inFlight: number;
  /** Responses completed during the drain (those in progress, and any that came on open connections). */
  readonly answered: number;
  /** Requests whose connection the drain timeout ended (stalled uploads, slow readers). */
  readonly ended: number;
  readonly seconds: number;
}

/** A running `setar serve`. */
export interface RunningServer {
  readonly server: Server;
  readonly url: string;
  /**
   * Graceful shutdown: stop accepting connections, answer 503 on /v1/health and /v1/ready, let the
   * requests in progress finish, end the connections still open after `drainTimeoutMs` (default
   * 10 s), then release the workers and the model. Idempotent.
   */
  shutdown(drainTimeoutMs?: number): Promise<ShutdownReport>;
  /** Ends the drain now (a second Ctrl-C): what {@link shutdown}'s timeout does. */
  endDrain(): void;
  /** {@link shutdown} with the default drain timeout. */
  close(): Promise<void>;
}

const IMAGE_TYPES = /^image\/(jpeg|png|webp|gif|bmp|tiff)$/;

/** The bundle files the browser client fetches from `/bundle/<file>` (nothing else in the folder is served). */
const BUNDLE_FILES: Readonly<Record<string, string>> = {
  'bundle.json': 'application/json; charset=utf-8',
  'image_encoder.onnx': 'application/octet-stream',
  'text_features.safetensors': 'application/octet-stream',
};

/** onnxruntime-web's wasm backend files the client loads from `/ort/<file>` (single-threaded, SIMD). */
const ORT_FILES: Readonly<Record<string, string>> = {
  'ort-wasm-simd-threaded.wasm': 'application/wasm',
  'ort-wasm-simd-threaded.mjs': 'text/javascript; charset=utf-8',
};

type Handler = (req: IncomingMessage, res: ServerResponse, path: string) => void | Promise<void>;

/** A route: its handlers by method (GET also answers HEAD) and whether it needs the API key. */
interface Route {
  readonly methods: Readonly<Partial<Record<'GET' | 'POST', Handler>>>;
  readonly protected?: boolean;
}

/** The methods a route answers, for `Allow`. */
function allowed(route: Route): string {
  const m = Object.keys(route.methods);
  return [...m, ...(m.includes('GET') ? ['HEAD'] : []), 'OPTIONS'].join(', ');
}

function defaultDecodeWorkers(): number {
  return Math.min(4, Math.max(2, availableParallelism() - 1));
}

/**
 * `setar serve`: the bundle's detector over HTTP (loopback by default).
 * - `POST /v1/score`: the image as the raw body (`Content-Type: image/*`) or the `image` field of a
 *   multipart form → `{label, top, scores, ood, threshold, patch_map}`;
 * - `GET /v1/health`, `GET /v1/ready` (both 503 once shutting down), `GET /v1/labels`;
 * - `GET /metrics`: Prometheus text (metrics.ts);
 * - `GET /`: a page to drop an image and see the verdict and the patch map, scored by the server
 *   or, with "score in this browser", by the page itself (onnxruntime-web, wasm) from
 *   `GET /bundle/{bundle.json,image_encoder.onnx,text_features.safetensors}`, `GET /client.js`
 *   (dist/web/client.js, built by scripts/build-web.mjs) and `GET /ort/<wasm backend file>`.
 * Every GET route answers HEAD; a known path with another method gets 405 with `Allow`.
 *
 * Each upload's header is read first (a size above `maxPixels`: 413, before any decoding); the
 * image is then decoded in a worker thread (decode-pool.ts) and scored by the model in dynamic
 * batches (batcher.ts: up to `maxBatch` images, waiting at most `maxDelayMs` for company).
 * At most `maxQueue` uploads wait or are scored at once (then 503 with Retry-After) and each has
 * `scoreTimeoutMs` to get its verdict (then 504). Bad uploads get a 4xx JSON error; no upload,
 * however cut or malformed, can stop the server.
 */
export async function startServer(o: ServeOptions): Promise<RunningServer> {
  const host = o.host ?? '127.0.0.1';
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const access = new AccessPolicy({ apiKey: o.apiKey, corsOrigins: o.corsOrigins });
  await checkBindSafety(host, { apiKey: o.apiKey, insecureNoAuth: o.insecureNoAuth, warn: log });
  const max = o.maxBytes ?? 10 * 1024 * 1024;
  const maxPixels = o.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!(maxPixels > 0)) throw new RangeError(`--max-pixels must be a positive number of pixels, got ${maxPixels}`);
  const maxQueue = o.maxQueue ?? 32;
  const scoreTimeoutMs = o.scoreTimeoutMs ?? 30_000;

  const detector = await ModelThread.start(o.bundle, { threads: o.threads });
  const size = detector.size;
  let pool: DecodePool;
  try {
    pool = new DecodePool({ workers: o.decodeWorkers ?? defaultDecodeWorkers(), preprocess: detector.preprocess, maxPixels });
  } catch (e) {
    await detector.close();
    throw e;
  }
  /** Every response not finished yet; a shutdown waits for them. */
  const open = new Set<ServerResponse>();
  // the gauges read the pool and the batcher when scraped
  const m = new ServeMetrics({ inFlight: () => open.size, queueDepth: () => ({ decode: pool.state.waiting, model: model.depth }) }).labels(detector.labels);
  const row = 3 * size * size;
  /** Score requests admitted and not yet at the batcher (being decoded): a batch waits for them only. */
  let upstream = 0;
  const model = new DynamicBatcher<Float32Array, Verdict>(async (pxs) => {
    const batch = new Float32Array(pxs.length * row);
    pxs.forEach((px, i) => batch.set(px, i * row));
    return detector.score(batch, pxs.length);
  }, { maxBatch: o.maxBatch, maxDelayMs: o.maxDelayMs, onBatch: (n) => m.batchRun(n), upstream: () => upstream });
  const page = detectorPage(detector.labels, { keyRequired: access.keyRequired });
  const root = packageRoot();
  const ortDist = join(root, 'node_modules', 'onnxruntime-web', 'dist');

  let draining = false;
  /** Score requests whose upload is in and whose answer is not sent yet. */
  let scoring = 0;
  let onSettled: (() => void) | null = null;
  let answeredInDrain = 0;

  const score: Handler = async (req, res) => {
    // a request that came on an open connection after the shutdown began; those in progress finish
    if (draining) throw new HttpError(503, 'the server is shutting down', { 'Retry-After': '1' });
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    const multipart = type === 'multipart/form-data';
    if (!multipart && !IMAGE_TYPES.test(type)) {
      throw new HttpError(415, `Content-Type "${type || '(none)'}" is not an image; send image/jpeg, image/png or image/webp, or a multipart field "image"`);
    }
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > max + (multipart ? MULTIPART_OVERHEAD : 0)) throw new HttpError(413, `upload larger than ${max} bytes`);
    const busy = () => new HttpError(503, `the server is busy: ${maxQueue} images are waiting or being scored (--max-queue); retry in a moment`, { 'Retry-After': '1' });
    if (scoring >= maxQueue) throw busy(); // before the upload is read
    const image: Upload = multipart ? await readMultipartImage(req, max) : { data: await readRawBody(req, max), name: 'upload' };
    if (image.data.length === 0) throw new HttpError(400, 'the upload is empty');
    if (scoring >= maxQueue) throw busy();
    scoring++;
    upstream++;
    let onTheWay = true;
    const arrived = () => {
      if (!onTheWay) return;
      onTheWay = false;
      upstream--;
    };
    // the deadline, or the client gone: stop spending work on this request
    const gone = new AbortController();
    const onClose = () => { if (!res.writableFinished) gone.abort(new HttpError(499, 'client closed the request')); };
    res.on('close', onClose);
    const signal = AbortSignal.any([AbortSignal.timeout(scoreTimeoutMs), gone.signal]);
    try {
      const header = await readImageHeader(image.data, { name: image.name, maxPixels });
      const px = await pool.decode(image.data, header.width * header.height, image.name, signal);
      m.imageDecoded();
      arrived();
      const verdict = await model.submit(px, signal);
      m.verdict(verdict.label, verdict.ood);
      send(res, 200, verdict);
    } catch (e) {
      if (e instanceof ImageTooLargeError) m.imageRefused('too_large');
      else if (e instanceof ImageDecodeError) m.imageRefused('undecodable');
      if ((e as Error)?.name === 'TimeoutError') throw new HttpError(504, `no verdict within ${scoreTimeoutMs / 1000} s of the upload (--score-timeout): the server is overloaded`);
      throw e;
    } finally {
      if (onTheWay) {
        arrived();
        model.poke(); // a batch may have been waiting for this one
      }
      scoring--;
      res.off('close', onClose);
    }
  };

  const fileRoute = (dir: string, files: Readonly<Record<string, string>>, what: string): Route => ({
    methods: {
      GET: (_req, res, rest) => {
        if (!Object.hasOwn(files, rest)) throw new HttpError(404, `no ${what} ${JSON.stringify(rest)}; served: ${Object.keys(files).join(', ')}`);
        sendFile(res, join(dir, rest), files[rest]!);
      },
    },
  });
  const health: Handler = (_req, res) => send(res, draining ? 503 : 200, { status: draining ? 'draining' : 'ok' });
  const routes: Readonly<Record<string, Route>> = {
    '/': { methods: { GET: (_req, res) => send(res, 200, page, 'text/html; charset=utf-8') } },
    '/v1/health': { methods: { GET: health } },
    '/v1/ready': { methods: { GET: (_req, res) => send(res, draining ? 503 : 200, { status: draining ? 'draining' : 'ready' }) } },
    '/v1/labels': { methods: { GET: (_req, res) => send(res, 200, { labels: detector.labels }) } },
    '/v1/score': { methods: { POST: score }, protected: true },
    '/metrics': {
      methods: {
        GET: async (_req, res) => {
          const { text, type } = await m.render();
          send(res, 200, text, type);
        },
      },
      protected: true,
    },
    '/client.js': { methods: { GET: (_req, res) => sendFile(res, join(root, 'dist', 'web', 'client.js'), 'text/javascript; charset=utf-8') } },
  };
  // prefix routes: the rest of the path names the file
  const prefixes: Readonly<Record<string, Route>> = {
    '/bundle/': { ...fileRoute(o.bundle, BUNDLE_FILES, 'bundle file'), protected: true },
    '/ort/': fileRoute(ortDist, ORT_FILES, 'onnxruntime-web file'),
  };

  /** The route a path takes: its table key (the metrics' `route` label), the route, the rest of the path. */
  const resolve = (path: string): { key: string; route?: Route; rest: string } => {
    if (Object.hasOwn(routes, path)) return { key: path, route: routes[path], rest: '' };
    for (const [p, r] of Object.entries(prefixes)) if (path.startsWith(p)) return { key: p, route: r, rest: path.slice(p.length) };
    return { key: 'other', rest: '' };
  };

  const handle = async (req: IncomingMessage, res: ServerResponse, url: URL | null): Promise<void> => {
    if (!url) throw new HttpError(400, `bad request target ${JSON.stringify(req.url)}`);
    const { route, rest } = resolve(url.pathname);
    if (!route) throw new HttpError(404, `no route ${req.method} ${url.pathname}`);
    for (const [k, v] of Object.entries(access.corsHeaders(req))) res.setHeader(k, v as string);
    if (req.method === 'OPTIONS') {
      const preflight = req.headers['access-control-request-method'] !== undefined && req.headers.origin !== undefined;
      res.writeHead(204, { Allow: allowed(route), ...(preflight ? access.preflightHeaders(req) : {}) });
      res.end();
      return;
    }
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const handler = method === 'GET' || method === 'POST' ? route.methods[method] : undefined;
    if (!handler) {
      const allow = allowed(route);
      throw new HttpError(405, `${req.method} is not allowed on ${url.pathname}; use ${allow.replace(', OPTIONS', '')}${url.pathname === '/v1/score' ? ' with an image body or a multipart field "image"' : ''}`, { Allow: allow });
    }
    if (method !== 'GET') access.checkCrossOrigin(req);
    if (route.protected) access.authenticate(req);
    await handler(req, res, rest);
  };

  const server = createServer({
    headersTimeout: o.timeouts?.headersMs ?? 10_000,
    requestTimeout: o.timeouts?.requestMs ?? 60_000,
    connectionsCheckingInterval: o.timeouts?.checkIntervalMs ?? 1_000,
  }, (req, res) => {
    const t0 = performance.now();
    // an absolute-form target may be no URL at all ("http://["): answered 400 by handle()
    let url: URL | null = null;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch { /* url stays null */ }
    open.add(res);
    if (draining) res.setHeader('Connection', 'close');
    // the client may be gone by the time we answer; that is no error of the server's
    res.on('error', () => undefined);
    res.on('close', () => {
      m.request(url ? resolve(url.pathname).key : 'other', req.method ?? '', res.writableFinished ? res.statusCode : 499, (performance.now() - t0) / 1000);
      open.delete(res);
      if (draining && res.writableFinished) answeredInDrain++;
      onSettled?.();
    });
    handle(req, res, url).catch((e: unknown) => {
      let status = 500;
      let message = e instanceof Error ? e.message : String(e);
      let headers = {};
      if (e instanceof HttpError) ({ status, headers } = e);
      else if (e instanceof ImageTooLargeError) status = 413;
      else if (e instanceof ImageDecodeError) status = 422;
      else if (e instanceof DecodePoolError && draining) status = 503;
      else log(`setar serve: error on ${req.method} ${req.url}: ${e instanceof Error ? (e.stack ?? message) : message}`);
      if (status === 500) message = `internal error: ${message}`;
      if (!res.headersSent && !res.destroyed) send(res, status, { error: message }, 'application/json', headers);
      else if (!res.writableEnded) res.destroy();
    });
  });
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 8080, host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch(async (e: unknown) => {
    await pool.close();
    await detector.close();
    throw e;
  });
  // an error on the listening socket after start (rare: EMFILE on accept) must not end the process
  server.on('error', (e) => log(`setar serve: server error: ${e.message}`));
  const addr = server.address() as { port: number; address: string; family: string };
  const urlHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;

  let shutdownPromise: Promise<ShutdownReport> | null = null;
  let endDrain: () => void = () => undefined;
  const shutdown = (drainTimeoutMs = 10_000): Promise<ShutdownReport> => {
    shutdownPromise ??= (async () => {
      const t0 = performance.now();
      draining = true;
      const inFlight = open.size;
      for (const res of open) if (!res.headersSent) res.setHeader('Connection', 'close');
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      let ended = 0;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => endDrain(), drainTimeoutMs);
        endDrain = () => {
          clearTimeout(timer);
          ended = open.size;
          server.closeAllConnections();
          resolve();
        };
        onSettled = () => {
          if (open.size === 0) {
            clearTimeout(timer);
            resolve();
          }
        };
        if (open.size === 0) onSettled();
      });
      onSettled = null;
      server.closeAllConnections(); // idle keep-alive connections
      await closed;
      // requests cut by the timeout stop at their next step (their signal aborts); a model run finishes
      while (scoring > 0) await new Promise((r) => setTimeout(r, 10));
      await model.idle();
      await pool.close();
      await detector.close();
      return { inFlight, answered: answeredInDrain, ended, seconds: (performance.now() - t0) / 1000 };
    })();
    return shutdownPromise;
  };
  return {
    server,
    url: `http://${urlHost}:${addr.port}`,
    shutdown,
    endDrain: () => endDrain(),
    close: async () => {
      await shutdown();
    },
  };
}
