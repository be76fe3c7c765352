/**
 * The browser side of `setar serve`: the same bundle scored in the page with onnxruntime-web
 * (its WebGPU execution provider when the browser gives a GPU adapter, else wasm with one thread;
 * see backend.ts), giving the same verdict fields as `POST /v1/score`.
 *
 * Built for the browser by esbuild (scripts/build-web.mjs → dist/web/client.js, ESM, onnxruntime-web
 * bundled in), NOT by the project's tsc: tsconfig.json targets Node (lib ES2023, types node, no
 * DOM), so src/web is excluded there and type-checked on its own by tsconfig.web.json (lib DOM,
 * noEmit), which the build script runs before bundling. Everything imported from src/ is pure
 * TypeScript: the Pillow-exact transform (image/clip-transform.ts, no sharp) and the verdict math
 * (bundle/verdict.ts → ood/scores.ts); build-web.mjs fails the build if a node:* module or sharp
 * would be bundled.
 */
// the WebGPU build: ORT's WebGPU execution provider (the one onnxruntime-node runs) and its wasm one
import * as ort from 'onnxruntime-web/webgpu';
import { chooseBackend, type WebBackend } from './backend.js';
import type { BundleManifest } from '../bundle/bundle.js';
import { verdictsFromEmbeddings, verdictsFromLogits, type Verdict } from '../bundle/verdict.js';
import { resizeAndCrop, toNormalizedChw, type DecodedImage } from '../image/clip-transform.js';

export type { Verdict } from '../bundle/verdict.js';
export { chooseBackend } from './backend.js';

interface SafetensorsEntry {
  readonly dtype: string;
  readonly shape: number[];
  readonly data_offsets: [number, number];
}

/** safetensors: 8-byte little-endian header length n, n bytes of JSON header, then the data. */
export function parseSafetensors(bytes: ArrayBuffer): Map<string, { shape: number[]; data: Float32Array }> {
  const view = new DataView(bytes);
  const n = Number(view.getBigUint64(0, true));
  if (8 + n > bytes.byteLength) throw new Error(`safetensors header length ${n} exceeds the file (${bytes.byteLength} bytes)`);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(bytes, 8, n))) as Record<string, SafetensorsEntry | Record<string, string>>;
  const out = new Map<string, { shape: number[]; data: Float32Array }>();
  for (const [name, e] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    const entry = e as SafetensorsEntry;
    if (entry.dtype !== 'F32') throw new Error(`safetensors tensor ${name}: dtype ${entry.dtype}, expected F32`);
    const [s, t] = entry.data_offsets;
    const count = entry.shape.reduce((a, b) => a * b, 1);
    if (t - s !== 4 * count) throw new Error(`safetensors tensor ${name}: ${t - s} bytes for shape [${entry.shape.join(', ')}]`);
    // read little-endian explicitly (and copy: the data need not be 4-byte aligned in the file)
    const data = new Float32Array(count);
    const dv = new DataView(bytes, 8 + n + s, t - s);
    for (let i = 0; i < count; i++) data[i] = dv.getFloat32(4 * i, true);
    out.set(name, { shape: entry.shape, data });
  }
  return out;
}

/**
 * An encoded image → 8-bit RGB, alpha dropped (Pillow's convert("RGB") for opaque images). No
 * colour-space conversion and no premultiplication, so a PNG decodes to exactly its stored
 * samples (PNG is lossless and browsers decode it exactly); JPEG decoders may differ by ±1 from
 * libjpeg's in the server.
 */
export async function decodeInBrowser(blob: Blob): Promise<DecodedImage> {
  const bitmap = await createImageBitmap(blob, { premultiplyAlpha: 'none', colorSpaceConversion: 'none' });
  try {
    const { width, height } = bitmap;
    const canvas = new OffscreenCanvas(width, height);
    const ctx = canvas.getContext('2d', { colorSpace: 'srgb', willReadFrequently: true });
    if (!ctx) throw new Error('no 2d canvas context');
    ctx.drawImage(bitmap, 0, 0);
    const rgba = ctx.getImageData(0, 0, width, height).data;
    const data = new Uint8Array(width * height * 3);
    for (let i = 0, j = 0; j < data.length; i += 4, j += 3) {
      data[j] = rgba[i]!;
      data[j + 1] = rgba[i + 1]!;
      data[j + 2] = rgba[i + 2]!;
    }
    return { data, width, height };
  } finally {
    bitmap.close();
  }
}

/** A bundle loaded in the browser. */
export interface ClientDetector {
  readonly manifest: BundleManifest;
  /** The execution provider scoring here, and why it was chosen. */
  readonly backend: WebBackend;
  readonly backendReason: string;
  /** Preprocessed CHW float32 [3, S, S] → its verdict. */
  scorePixels(px: Float32Array): Promise<Verdict>;
  /** An image file → its verdict (decode, Pillow-exact preprocessing, encoder, verdict). */
  scoreFile(file: Blob): Promise<Verdict>;
}

async function fetchOk(url: string, init: RequestInit): Promise<Response> {
  const r = await fetch(url, init);
  if (!r.ok) throw new Error(`GET ${url}: ${r.status} ${r.statusText}`);
  return r;
}

/**
 * Fetches the bundle from `base` (`/bundle/` on the serving page) and starts an onnxruntime-web
 * session on WebGPU when the browser gives an adapter (falling back to wasm if the session cannot
 * start there), else on wasm, single-threaded; the .wasm is served from `wasmPaths` (`/ort/`).
 * `init.headers` go with the bundle requests (`Authorization` when the server has an API key).
 */
export async function loadClientDetector(base = '/bundle/', wasmPaths = '/ort/', init: { readonly headers?: Record<string, string> } = {}): Promise<ClientDetector> {
  const request: RequestInit = { headers: init.headers ?? {} };
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.wasmPaths = wasmPaths;
  ort.env.wasm.proxy = false;
  const manifest = await fetchOk(base + 'bundle.json', request).then((r) => r.json() as Promise<BundleManifest>);
  if (manifest.format !== 'setar-bundle/1') throw new Error(`bundle.json: format ${JSON.stringify(manifest.format)}, expected "setar-bundle/1"`);
  const head = manifest.head ?? 'clip-text';
  if (head !== 'clip-text' && head !== 'classifier') throw new Error(`bundle.json: head ${JSON.stringify(head)}, expected "clip-text" or "classifier"`);
  // a classifier bundle (Swin V2) has no text features: its encoder returns logits directly
  const [model, text] = await Promise.all([
    fetchOk(base + 'image_encoder.onnx', request).then((r) => r.arrayBuffer()),
    head === 'clip-text' ? fetchOk(base + 'text_features.safetensors', request).then((r) => r.arrayBuffer()) : Promise.resolve(null),
  ]);
  let textSide: { text: Float32Array; scale: number } | null = null;
  if (text) {
    const tensors = parseSafetensors(text);
    const tf = tensors.get('text_features');
    const ls = tensors.get('logit_scale');
    if (!tf || !ls) throw new Error('text_features.safetensors lacks text_features or logit_scale');
    if (tf.shape.length !== 2 || tf.shape[0] !== manifest.labels.length) throw new Error(`text_features shape [${tf.shape.join(', ')}] does not match ${manifest.labels.length} labels`);
    textSide = { text: tf.data, scale: Math.exp(ls.data[0]!) };
  }
  let { backend, reason } = await chooseBackend();
  const start = (ep: WebBackend) => ort.InferenceSession.create(new Uint8Array(model), { executionProviders: [ep], graphOptimizationLevel: 'all' });
  let session: ort.InferenceSession;
  try {
    session = await start(backend);
  } catch (e) {
    if (backend === 'wasm') throw e;
    reason = `WebGPU could not start (${e instanceof Error ? e.message : String(e)})`;
    backend = 'wasm';
    session = await start(backend);
  }
  const size = manifest.preprocess.size;
  const resizeTo = manifest.preprocess.resize_to ?? size;
  const mean = manifest.preprocess.mean as unknown as [number, number, number];
  const std = manifest.preprocess.std as unknown as [number, number, number];
  // one run at a time through the session, as on the server
  let queue: Promise<unknown> = Promise.resolve();
  const scorePixels = (px: Float32Array): Promise<Verdict> => {
    const run = async (): Promise<Verdict> => {
      const out = await session.run({ pixel_values: new ort.Tensor('float32', px, [1, 3, size, size]) });
      try {
        if (!textSide) return verdictsFromLogits({ global: out.logits!.data as Float32Array, local: out.logits_local!.data as Float32Array }, 1, manifest)[0]!;
        return verdictsFromEmbeddings(
          { global: out.image_embeds!.data as Float32Array, local: out.image_embeds_local!.data as Float32Array },
          1, textSide, manifest,
        )[0]!;
      } finally {
        for (const t of Object.values(out)) t.dispose();
      }
    };
    const p = queue.then(run, run);
    queue = p.catch(() => undefined);
    return p;
  };
  return {
    manifest,
    backend,
    backendReason: reason,
    scorePixels,
    async scoreFile(file: Blob): Promise<Verdict> {
      const image = await decodeInBrowser(file);
      return scorePixels(toNormalizedChw(resizeAndCrop(image, { resizeTo, cropSize: size }), mean, std));
    },
  };
}
