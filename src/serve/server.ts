import { createServer, type Server } from 'node:http';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_MAX_PIXELS, ImageDecodeError, ImageTooLargeError } from '../image/decode.js';
import { packageRoot } from '../paths.js';
import { AccessPolicy, checkBindSafety } from './access.js';
import { DecodePool, DecodePoolError } from './decode-pool.js';
import { ConnectionDrain, type DrainReport } from './drain.js';
import { HttpError, send, sendFile } from './http.js';
import { ServeMetrics } from './metrics.js';
import { ModelThread } from './model-thread.js';
import type { ResolvedDevice } from '../runtime/device.js';
import { detectorPage } from './page.js';
import { Router, type Route } from './router.js';
import { ScorePipeline } from './score-route.js';

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
  /** Where the detector runs (default cpu). */
  readonly device?: ResolvedDevice;
}

/** How a shutdown went. */
export interface ShutdownReport extends DrainReport {
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

/** The bundle files the browser client fetches from `/bundle/<file>` (nothing else in the folder is served). */
const BUNDLE_FILES: Readonly<Record<string, string>> = {
  'bundle.json': 'application/json; charset=utf-8',
  'image_encoder.onnx': 'application/octet-stream',
  'text_features.safetensors': 'application/octet-stream',
};

/** The page's icon: a magnifier over a dashed square (an image under inspection). */
const FAVICON = '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32"><rect x="3" y="3" width="20" height="20" rx="2" fill="none" stroke="#555" stroke-width="2" stroke-dasharray="4 2"/><circle cx="19" cy="19" r="6" fill="#fff" stroke="#b00" stroke-width="3"/><path d="M23.5 23.5 29 29" stroke="#b00" stroke-width="3" stroke-linecap="round"/></svg>';

/** onnxruntime-web's wasm backend files the client loads from `/ort/<file>` (single-threaded, SIMD). */
const ORT_FILES: Readonly<Record<string, string>> = {
  // onnxruntime-web's WebGPU build (src/web/client.ts): its WebGPU and wasm execution providers
  'ort-wasm-simd-threaded.asyncify.wasm': 'application/wasm',
  'ort-wasm-simd-threaded.asyncify.mjs': 'text/javascript; charset=utf-8',
};

function defaultDecodeWorkers(): number {
  return Math.min(4, Math.max(2, availableParallelism() - 1));
}

/** A route serving the files of `dir` named in `files` (name → content type). */
function fileRoute(dir: string, files: Readonly<Record<string, string>>, what: string, isProtected = false): Route {
  return {
    methods: {
      GET: (_req, res, rest) => {
        if (!Object.hasOwn(files, rest)) throw new HttpError(404, `no ${what} ${JSON.stringify(rest)}; served: ${Object.keys(files).join(', ')}`);
        sendFile(res, join(dir, rest), files[rest]!);
      },
    },
    protected: isProtected,
  };
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
 * image is then decoded in a worker thread (decode-pool.ts) and scored by the model, in a thread of
 * its own (model-thread.ts), in dynamic batches (batcher.ts: up to `maxBatch` images, waiting at
 * most `maxDelayMs` for company); score-route.ts has the stages, router.ts the routing rules.
 * At most `maxQueue` uploads wait or are scored at once (then 503 with Retry-After) and each has
 * `scoreTimeoutMs` to get its verdict (then 504). Bad uploads get a 4xx JSON error; no upload,
 * however cut or malformed, can stop the server.
 */
export async function startServer(o: ServeOptions): Promise<RunningServer> {
  const host = o.host ?? '127.0.0.1';
  const log = o.log ?? ((line: string) => process.stderr.write(`${line}\n`));
  const access = new AccessPolicy({ apiKey: o.apiKey, corsOrigins: o.corsOrigins });
  await checkBindSafety(host, { apiKey: o.apiKey, insecureNoAuth: o.insecureNoAuth, warn: log });
  const maxPixels = o.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (!(maxPixels > 0)) throw new RangeError(`--max-pixels must be a positive number of pixels, got ${maxPixels}`);

  const detector = await ModelThread.start(o.bundle, { threads: o.threads, device: o.device });
  let pool: DecodePool;
  try {
    pool = new DecodePool({ workers: o.decodeWorkers ?? defaultDecodeWorkers(), preprocess: detector.preprocess, maxPixels });
  } catch (e) {
    await detector.close();
    throw e;
  }
  const server = createServer({
    headersTimeout: o.timeouts?.headersMs ?? 10_000,
    requestTimeout: o.timeouts?.requestMs ?? 60_000,
    connectionsCheckingInterval: o.timeouts?.checkIntervalMs ?? 1_000,
  });
  server.keepAliveTimeout = 5_000;
  const drain = new ConnectionDrain(server);
  // the gauges read the pipeline when scraped
  const metrics: ServeMetrics = new ServeMetrics({ inFlight: () => drain.inFlight, queueDepth: () => pipeline.queueDepth }).labels(detector.labels);
  const row = 3 * detector.size * detector.size;
  const pipeline: ScorePipeline = new ScorePipeline(pool, (pxs) => {
    const batch = new Float32Array(pxs.length * row);
    pxs.forEach((px, i) => batch.set(px, i * row));
    return detector.score(batch, pxs.length);
  }, metrics, {
    maxBytes: o.maxBytes ?? 10 * 1024 * 1024, maxPixels, maxQueue: o.maxQueue ?? 32, scoreTimeoutMs: o.scoreTimeoutMs ?? 30_000, maxBatch: o.maxBatch, maxDelayMs: o.maxDelayMs,
  }, () => drain.draining);

  const page = detectorPage(detector.labels, { keyRequired: access.keyRequired });
  const root = packageRoot();
  // not healthy while draining, nor once the model thread is lost: an orchestrator then restarts the process
  const status = (ok: string) => (_req: unknown, res: Parameters<typeof send>[0]) => {
    const lost = detector.lost;
    if (lost) return send(res, 503, { status: 'model lost', error: lost });
    send(res, drain.draining ? 503 : 200, { status: drain.draining ? 'draining' : ok });
  };
  const router = new Router({
    '/': { methods: { GET: (_req, res) => send(res, 200, page, 'text/html; charset=utf-8') } },
    '/v1/health': { methods: { GET: status('ok') } },
    '/v1/ready': { methods: { GET: status('ready') } },
    '/v1/labels': { methods: { GET: (_req, res) => send(res, 200, { labels: detector.labels }) } },
    '/v1/score': { methods: { POST: pipeline.handle }, protected: true },
    '/metrics': { methods: { GET: async (_req, res) => { const { text, type } = await metrics.render(); send(res, 200, text, type); } }, protected: true },
    '/client.js': { methods: { GET: (_req, res) => sendFile(res, join(root, 'dist', 'web', 'client.js'), 'text/javascript; charset=utf-8') } },
    // browsers ask for /favicon.ico whatever the page says; both get the same small SVG
    '/favicon.svg': { methods: { GET: (_req, res) => send(res, 200, FAVICON, 'image/svg+xml') } },
    '/favicon.ico': { methods: { GET: (_req, res) => send(res, 200, FAVICON, 'image/svg+xml') } },
  }, {
    '/bundle/': fileRoute(o.bundle, BUNDLE_FILES, 'bundle file', true),
    '/ort/': fileRoute(join(root, 'node_modules', 'onnxruntime-web', 'dist'), ORT_FILES, 'onnxruntime-web file'),
  }, access);

  server.on('request', (req, res) => {
    const t0 = performance.now();
    // an absolute-form target may be no URL at all ("http://["): the router answers 400
    let url: URL | null = null;
    try {
      url = new URL(req.url ?? '/', 'http://localhost');
    } catch { /* url stays null */ }
    drain.track(res);
    // the client may be gone by the time we answer; that is no error of the server's
    res.on('error', () => undefined);
    res.on('close', () => metrics.request(url ? router.resolve(url.pathname).key : 'other', req.method ?? '', res.writableFinished ? res.statusCode : 499, (performance.now() - t0) / 1000));
    router.dispatch(req, res, url).catch((e: unknown) => {
      let status = 500;
      let message = e instanceof Error ? e.message : String(e);
      let headers = {};
      if (e instanceof HttpError) ({ status, headers } = e);
      else if (e instanceof ImageTooLargeError) status = 413;
      else if (e instanceof ImageDecodeError) status = 422;
      else if (e instanceof DecodePoolError && drain.draining) status = 503;
      else log(`setar serve: error on ${req.method} ${req.url}: ${e instanceof Error ? (e.stack ?? message) : message}`);
      if (status === 500) message = `internal error: ${message}`;
      if (!res.headersSent && !res.destroyed) send(res, status, { error: message }, 'application/json', headers);
      else if (!res.writableEnded) res.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.port ?? 8080, host, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch(async (e: unknown) => {
    await pool.close();
    await detector.close();
    // the usual start-up failures in words, naming the port or address: not a stack
    const code = (e as NodeJS.ErrnoException).code;
    const where = `port ${o.port ?? 8080} on ${host}`;
    if (code === 'EADDRINUSE') throw new Error(`${where} is already in use (another setar serve?); choose another with --port`);
    if (code === 'EACCES') throw new Error(`${where}: permission denied (ports below 1024 need privileges); choose another with --port`);
    if (code === 'EADDRNOTAVAIL') throw new Error(`cannot bind ${host}: no such address on this machine; check --host`);
    throw e;
  });
  // an error on the listening socket after start (rare: EMFILE on accept) must not end the process
  server.on('error', (e) => log(`setar serve: server error: ${e.message}`));
  const addr = server.address() as { port: number; address: string; family: string };
  const urlHost = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;

  let shutdownPromise: Promise<ShutdownReport> | null = null;
  const shutdown = (drainTimeoutMs = 10_000): Promise<ShutdownReport> => {
    shutdownPromise ??= (async () => {
      const t0 = performance.now();
      const report = await drain.drain(drainTimeoutMs);
      // requests cut by the timeout stop at their next step (their signal aborts); a model run finishes
      await pipeline.settled();
      await pool.close();
      await detector.close();
      return { ...report, seconds: (performance.now() - t0) / 1000 };
    })();
    return shutdownPromise;
  };
  return {
    server,
    url: `http://${urlHost}:${addr.port}`,
    shutdown,
    endDrain: () => drain.endNow(),
    close: async () => {
      await shutdown();
    },
  };
}
