/**
 * Preprocessing parity against the Pillow/torchvision reference in
 * shared/fixtures/preprocess: per fixture image, max and mean |difference| of the uint8 crop
 * (levels) and of pixel_values (normalised units), plus decoder parity for the two JPEGs and the
 * time per image.
 *
 *   node --import tsx bench/preprocess-parity.ts
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { decodeImage } from '../src/image/decode.js';
import { preprocessClip, resizeAndCrop } from '../src/image/preprocess.js';
import { SafetensorsFile } from '../src/io/safetensors.js';

/** A U8 tensor's data; any other dtype is an error. */
function u8(f: SafetensorsFile, name: string): Uint8Array {
  const { dtype, data } = f.read(name);
  if (dtype !== 'U8' || !(data instanceof Uint8Array)) throw new Error(`${f.path}: tensor '${name}' is ${dtype}, expected U8`);
  return data;
}

function stats(a: ArrayLike<number>, b: ArrayLike<number>): { max: number; mean: number; exact: number; off1: number } {
  let max = 0;
  let sum = 0;
  let exact = 0;
  let off1 = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    if (d > max) max = d;
    sum += d;
    if (d === 0) exact++;
    else if (d <= 1) off1++;
  }
  return { max, mean: sum / a.length, exact, off1 };
}

function findShared(): string {
  if (process.env.SETAR_SHARED) return process.env.SETAR_SHARED;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      readFileSync(join(dir, 'package.json'));
      return resolve(dir, '..', 'shared');
    } catch {
      const up = dirname(dir);
      if (up === dir) throw new Error('package.json not found');
      dir = up;
    }
  }
}

async function main(): Promise<void> {
  const dir = join(findShared(), 'fixtures', 'preprocess');
  const meta = JSON.parse(readFileSync(join(dir, 'preprocess.json'), 'utf8')) as {
    size: number;
    mean: [number, number, number];
    std: [number, number, number];
    rows: { index: number; file: string }[];
  };
  const st = SafetensorsFile.open(join(dir, 'preprocess.safetensors'));
  let pv: Float32Array;
  let rgb: Uint8Array;
  const decodedRef = new Map<string, Uint8Array>();
  try {
    pv = st.readFloat32('pixel_values');
    rgb = u8(st, 'rgb_uint8');
    for (const key of ['decoded_photo_640x480_rgb', 'decoded_gray_333x251']) decodedRef.set(key, u8(st, key));
  } finally {
    st.close();
  }
  const size = meta.size;
  const plane = 3 * size * size;

  for (const [file, key] of [
    ['photo-640x480.jpg', 'decoded_photo_640x480_rgb'],
    ['gray-333x251.jpg', 'decoded_gray_333x251'],
  ] as const) {
    const img = await decodeImage(join(dir, file));
    const ref = decodedRef.get(key)!;
    const mine =
      ref.length === img.data.length ? img.data : img.data.filter((_, i) => i % 3 === 0); // grey: R channel
    const s = stats(mine, ref);
    console.log(`decode ${file}: max ${s.max} levels, mean ${s.mean.toFixed(4)}, exact ${s.exact}/${ref.length}`);
  }

  console.log('image                  | uint8 max | uint8 mean | exact / off-by-1 / total | norm max   | norm mean');
  for (const row of meta.rows) {
    const img = await decodeImage(join(dir, row.file));
    const crop = resizeAndCrop(img, { size });
    const refRgb = rgb.subarray(row.index * plane, (row.index + 1) * plane);
    const s8 = stats(crop.data, refRgb);
    const x = preprocessClip(img, { size, mean: meta.mean, std: meta.std });
    const refPv = pv.subarray(row.index * plane, (row.index + 1) * plane);
    const sn = stats(x, refPv);
    console.log(
      `${row.file.padEnd(22)} | ${String(s8.max).padStart(9)} | ${s8.mean.toFixed(6).padStart(10)} | ` +
        `${s8.exact} / ${s8.off1} / ${refRgb.length}`.padEnd(25) +
        ` | ${sn.max.toExponential(3).padStart(10)} | ${sn.mean.toExponential(3)}`,
    );
  }

  // Timing: preprocess only (decoded image in memory), and decode + preprocess.
  const photo = join(dir, 'photo-640x480.jpg');
  const decoded = await decodeImage(photo);
  const { default: sharp } = await import('sharp');
  const small = await sharp(decoded.data, { raw: { width: 640, height: 480, channels: 3 } })
    .resize(500, 375)
    .raw()
    .toBuffer();
  const img500 = { data: new Uint8Array(small), width: 500, height: 375 };
  for (const [label, img] of [
    ['500x375', img500],
    ['640x480', decoded],
  ] as const) {
    for (let i = 0; i < 20; i++) preprocessClip(img);
    const n = 200;
    const t0 = performance.now();
    for (let i = 0; i < n; i++) preprocessClip(img);
    const dt = (performance.now() - t0) / n;
    console.log(`preprocessClip ${label} -> 224: ${dt.toFixed(3)} ms/image`);
  }
  const n = 50;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) preprocessClip(await decodeImage(photo));
  console.log(`decode + preprocess photo-640x480.jpg: ${((performance.now() - t0) / n).toFixed(3)} ms/image`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
