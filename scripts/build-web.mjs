// Builds the browser client: type-checks src/web (tsconfig.web.json, DOM lib, no emit), then
// bundles src/web/client.ts with esbuild → dist/web/client.js (ESM, browser platform), with
// onnxruntime-web's wasm build inside (its .wasm is fetched at run time from /ort/). Fails if a
// Node-only module (node:*, sharp, fs, onnxruntime-node) would end up in the bundle.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', join(root, 'tsconfig.web.json')], { stdio: 'inherit', cwd: root });

const NODE_ONLY = /^(node:|sharp$|fs$|path$|onnxruntime-node$|worker_threads$|busboy$)/;
const result = await build({
  entryPoints: [join(root, 'src/web/client.ts')],
  outfile: join(root, 'dist/web/client.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  sourcemap: false,
  minify: false,
  metafile: true,
  logLevel: 'warning',
  plugins: [{
    name: 'no-node-modules',
    setup(b) {
      b.onResolve({ filter: /.*/ }, (args) => (NODE_ONLY.test(args.path) ? { errors: [{ text: `${args.path} is Node-only and must not reach the browser bundle (imported by ${args.importer})` }] } : undefined));
    },
  }],
});
const inputs = Object.keys(result.metafile.inputs);
const bad = inputs.filter((f) => /image\/decode\.ts|sharp|onnxruntime-node/.test(f));
if (bad.length) throw new Error(`browser bundle pulls in Node-only code: ${bad.join(', ')}`);
console.log(`dist/web/client.js: ${inputs.length} inputs, ${(result.metafile.outputs['dist/web/client.js']?.bytes ?? 0) / 1024 | 0} KiB`);
