import type { Command } from 'commander';
import { startServer } from '../serve/server.js';
import type { DeviceRequest } from '../runtime/device.js';
import { DEVICE_HELP, deviceFlag, openDeviceFlag, positiveInt } from './inputs.js';

/** `setar serve`: a bundle's detector over HTTP, with a web page. */
export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('serve a bundle: POST /v1/score, GET /v1/health, GET /v1/labels, and a web page at /')
    .requiredOption('--bundle <dir>', 'a folder written by setar bundle')
    .option('--host <host>', 'address to bind', '127.0.0.1')
    .option('--port <n>', 'port', positiveInt('--port'), 8080)
    .option('--max-mb <n>', 'largest upload in MB', positiveInt('--max-mb'), 10)
    .option('--threads <n>', 'ONNX Runtime threads (default: all cores)', positiveInt('--threads'))
    .option('--device <name>', DEVICE_HELP, deviceFlag)
    .action(async (f: { bundle: string; host: string; port: number; maxMb: number; threads?: number; device?: DeviceRequest }) => {
      const device = await openDeviceFlag(f.device);
      const s = await startServer({ bundle: f.bundle, host: f.host, port: f.port, maxBytes: f.maxMb * 1024 * 1024, threads: f.threads, device });
      process.stderr.write(`setar serve: ${s.url} (Ctrl-C to stop)\n`);
      await new Promise<void>((resolve) => process.once('SIGINT', resolve));
      await s.close();
    });
}
