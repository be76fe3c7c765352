import type { SeededRng } from '../rng.js';

/**
 * K images per class drawn with the seed (Dassl's `generate_fewshot_dataset` without
 * repetition): for each class in label order, a uniform sample of `shots` of its images (partial
 * Fisher–Yates over them in dataset order); a class with fewer keeps all of them. Returns dataset
 * indices, class by class, and the classes that had fewer than `shots`.
 *
 * @example
 * drawShots(Int32Array.of(0, 0, 0, 1, 1), 2, 2, new SeededRng(5)); // { indices: [2, 0, 4, 3], short: [] } (for example)
 */
export function drawShots(labels: Int32Array, classes: number, shots: number, rng: SeededRng): { indices: number[]; short: { label: number; images: number }[] } {
  if (!(Number.isInteger(shots) && shots >= 1)) throw new RangeError(`shots must be a positive integer, got ${shots}`);
  const byClass: number[][] = Array.from({ length: classes }, () => []);
  labels.forEach((y, i) => byClass[y]!.push(i));
  const indices: number[] = [];
  const short: { label: number; images: number }[] = [];
  byClass.forEach((items, label) => {
    if (items.length <= shots) {
      if (items.length < shots) short.push({ label, images: items.length });
      indices.push(...items);
      return;
    }
    const pool = [...items];
    for (let i = 0; i < shots; i++) {
      const j = i + Math.floor(rng.next() * (pool.length - i));
      [pool[i], pool[j]] = [pool[j]!, pool[i]!];
      indices.push(pool[i]!);
    }
  });
  return { indices, short };
}
