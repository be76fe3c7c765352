import { Worker } from 'node:worker_threads';

/**
 * A sibling module's URL for a worker thread: `./name.js` beside a compiled caller, `./name.ts`
 * beside a caller run from source (tsx). `callerUrl` is the caller's `import.meta.url`.
 */
export function workerModuleUrl(callerUrl: string, name: string): URL {
  return new URL(`./${name}${callerUrl.endsWith('.ts') ? '.ts' : '.js'}`, callerUrl);
}

/**
 * Starts a worker thread on the module at `url`. Compiled, that is a .js file, started as is. Under
 * tsx it is .ts, and on Node 20 a worker thread does not get tsx's loader hooks from `--import tsx`
 * (the worker fails with "Unknown file extension .ts"), so the worker first registers tsx itself,
 * then imports the .ts module.
 */
export function startWorkerModule(url: URL, workerData: unknown): Worker {
  if (!url.pathname.endsWith('.ts')) return new Worker(url, { workerData });
  const tsxApi = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(tsxApi)}).then((tsx) => { tsx.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(bootstrap, { eval: true, workerData });
}
