import { Option, type Command } from 'commander';
import { DEFAULT_MAX_PIXELS } from '../image/decode.js';
import { startServer } from '../serve/server.js';
import type { DeviceRequest } from '../runtime/device.js';
import { DEVICE_HELP, deviceFlag, openDeviceFlag, positiveInt, UsageError } from './inputs.js';

interface ServeFlags {
  bundle: string;
  host: string;
  port: number;
  maxMb: number;
  threads?: number;
  maxPixels: number;
  workers?: number;
  maxQueue: number;
  maxBatch: number;
  maxDelayMs: number;
  scoreTimeout: number;
  drainTimeout: number;
  apiKey?: string;
  insecureNoAuth?: boolean;
  corsOrigin?: string[];
  device?: DeviceRequest;
}

function nonNegativeMs(flag: string): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n < 0) throw new UsageError(`${flag} must be a number of milliseconds >= 0, got '${v}'`);
    return n;
  };
}

function positiveSeconds(flag: string): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n) || n <= 0) throw new UsageError(`${flag} must be a positive number of seconds, got '${v}'`);
    return n;
  };
}

/** `--port`: an integer in [0, 65535], naming the flag otherwise. */
function portNumber(v: string): number {
  const n = Number(v);
  if (v.trim() === '' || !Number.isInteger(n) || n < 0 || n > 65535) throw new UsageError(`--port must be an integer in [0, 65535], got '${v}'`);
  return n;
}

/** `setar serve`: a bundle's detector over HTTP, with a web page. */
export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('serve a bundle: POST /v1/score, GET /v1/health, GET /v1/ready, GET /v1/labels, GET /metrics, and a web page at /')
    .requiredOption('--bundle <dir>', 'a folder written by setar bundle')
    .option('--host <host>', 'address to bind (loopback by default; any other address needs --api-key)', '127.0.0.1')
    .option('--port <n>', 'port (0: any free port)', portNumber, 8080)
    .option('--max-mb <n>', 'largest upload in MB', positiveInt('--max-mb'), 10)
    .option('--max-pixels <n>', 'largest image in pixels (width x height), read from its header before decoding; larger: 413', positiveInt('--max-pixels'), DEFAULT_MAX_PIXELS)
    .option('--workers <n>', 'image decoding threads, at least 2 (default: cores − 1, up to 4)', positiveInt('--workers'))
    .option('--max-batch <n>', 'dynamic batching: most images per model run (1: no batching)', positiveInt('--max-batch'), 16)
    .option('--max-delay-ms <ms>', 'dynamic batching: how long the oldest waiting image may wait for others to join its batch', nonNegativeMs('--max-delay-ms'), 5)
    .option('--max-queue <n>', 'uploads waiting or being scored beyond which requests get 503 with Retry-After', positiveInt('--max-queue'), 32)
    .option('--score-timeout <s>', 'seconds from an upload to its verdict before the request gets 504', positiveSeconds('--score-timeout'), 30)
    .option('--drain-timeout <s>', 'on SIGTERM or SIGINT: seconds the requests in progress have to finish before their connections are ended', positiveSeconds('--drain-timeout'), 10)
    .addOption(new Option('--api-key <key>', 'POST /v1/score, /metrics and /bundle/* need the header Authorization: Bearer KEY (default: none, or SETAR_API_KEY; required for a non-loopback --host)').env('SETAR_API_KEY'))
    .option('--insecure-no-auth', 'allow a non-loopback --host without --api-key (anyone who reaches it can use it)')
    .option('--cors-origin <origin>', 'an origin whose pages may call the API (repeat the flag for several; * for any) (default: none but the page\'s own)', (v: string, acc: string[] = []) => [...acc, v])
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)', positiveInt('--threads'))
    .option('--device <name>', DEVICE_HELP, deviceFlag)
    .action(async (f: ServeFlags) => {
      if (f.workers !== undefined && f.workers < 2) throw new UsageError(`--workers must be at least 2 (one is kept for small images), got ${f.workers}`);
      const device = await openDeviceFlag(f.device);
      const s = await startServer({
        device, bundle: f.bundle, host: f.host, port: f.port, maxBytes: f.maxMb * 1024 * 1024, threads: f.threads, maxPixels: f.maxPixels,
        decodeWorkers: f.workers, maxQueue: f.maxQueue, maxBatch: f.maxBatch, maxDelayMs: f.maxDelayMs, scoreTimeoutMs: f.scoreTimeout * 1000,
        apiKey: f.apiKey, insecureNoAuth: f.insecureNoAuth, corsOrigins: f.corsOrigin,
      });
      process.stderr.write(`setar serve: ${s.url} (Ctrl-C or SIGTERM to stop)\n`);
      // Docker, Kubernetes and systemd stop a process with SIGTERM, a terminal with SIGINT: both drain.
      const signal = await new Promise<NodeJS.Signals>((resolve) => {
        const on = (sig: NodeJS.Signals) => {
          process.off('SIGINT', on);
          process.off('SIGTERM', on);
          resolve(sig);
        };
        process.on('SIGINT', on);
        process.on('SIGTERM', on);
      });
      process.stderr.write(`setar serve: ${signal}: no new connections; draining the requests in progress (up to ${f.drainTimeout} s, or until a second signal)\n`);
      const now = () => s.endDrain();
      process.on('SIGINT', now);
      process.on('SIGTERM', now);
      try {
        const r = await s.shutdown(f.drainTimeout * 1000);
        process.stderr.write(`setar serve: stopped in ${r.seconds.toFixed(2)} s: ${r.inFlight} requests in progress at ${signal}, ${r.answered} answered during the drain, ${r.ended} ended by the drain timeout\n`);
      } finally {
        process.off('SIGINT', now);
        process.off('SIGTERM', now);
      }
    });
}
