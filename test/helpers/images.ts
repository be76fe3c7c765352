import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import sharp from 'sharp';

/**
 * Writes a real image file (JPEG, or PNG by extension) whose smooth colour pattern depends on
 * `k`, so a folder of them gives a model distinct inputs. Sizes vary a little with `k` too.
 */
export async function writeTestImage(path: string, k: number, size: { width?: number; height?: number } = {}): Promise<void> {
  const w = size.width ?? 36 + (k % 5) * 9;
  const h = size.height ?? 34 + (k % 4) * 7;
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) {
    const i = (y * w + x) * 3;
    px[i] = (x * 11 * (k + 1)) % 256;
    px[i + 1] = (y * 7 + k * 37) % 256;
    px[i + 2] = ((x ^ y) * ((k % 5) + 1)) % 256;
  }
  mkdirSync(dirname(path), { recursive: true });
  const img = sharp(px, { raw: { width: w, height: h, channels: 3 } });
  await (path.endsWith('.png') ? img.png() : img.jpeg({ quality: 92 })).toFile(path);
}
