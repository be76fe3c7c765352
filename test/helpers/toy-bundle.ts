import { join } from 'node:path';
import { createBundle } from '../../src/bundle/bundle.js';
import { fixture } from './fixtures.js';
import { writeTestImage } from './images.js';

/**
 * A bundle of the tiny CLIP fixture (clip-tiny-a) over three toy classes, written under `dir`
 * (`dir/bundle`), and a 64x48 PNG to score (`dir/upload.png`). Sets SETAR_CACHE_DIR under `dir`.
 */
export async function writeToyBundle(dir: string): Promise<{ bundle: string; png: string }> {
  process.env.SETAR_CACHE_DIR = join(dir, 'cache');
  let k = 0;
  for (const c of ['bird', 'cat', 'dog']) for (let i = 0; i < 4; i++) await writeTestImage(join(dir, 'val', c, `${i}.jpg`), k++);
  await createBundle({ model: fixture('clip-tiny-a'), id: { kind: 'folder', name: 'toy', root: join(dir, 'val') }, out: join(dir, 'bundle'), threads: 1 });
  const png = join(dir, 'upload.png');
  await writeTestImage(png, 99, { width: 64, height: 48 });
  return { bundle: join(dir, 'bundle'), png };
}
