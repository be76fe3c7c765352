import { numel, tensor, type DTypeMap, type Tensor } from '../tensor.js';
import type { Session } from './session.js';

/**
 * Runs a batch through a session whose inputs take one item per run (first dimension fixed to 1,
 * such as an int8 model whose activation scales are per run): item by item, every output
 * concatenated along its first axis — what one run of the whole batch would return, each item
 * computed alone.
 */
export async function runSingly(session: Session, feeds: Record<string, Tensor>): Promise<Record<string, Tensor>> {
  const entries = Object.entries(feeds);
  const b = entries[0]?.[1].dims[0] ?? 0;
  const bad = entries.find(([, t]) => t.dims[0] !== b);
  if (bad) throw new RangeError(`session '${session.name}': input '${bad[0]}' has ${bad[1].dims[0]} items along its first axis, '${entries[0]![0]}' has ${b}`);
  const parts: Record<string, Tensor>[] = [];
  for (let i = 0; i < b; i++) {
    const one: Record<string, Tensor> = {};
    for (const [name, t] of entries) {
      const n = numel(t.dims.slice(1));
      one[name] = tensor(t.dtype, t.data.subarray(i * n, (i + 1) * n) as never, [1, ...t.dims.slice(1)], name);
    }
    parts.push(await session.run(one));
  }
  if (parts.length === 0) return session.run(feeds);
  const out: Record<string, Tensor> = {};
  for (const [name, first] of Object.entries(parts[0]!)) {
    const n = first.data.length;
    const data = new (first.data.constructor as new (length: number) => DTypeMap[typeof first.dtype])(n * b);
    parts.forEach((p, i) => (data as Float32Array).set(p[name]!.data as Float32Array, i * n));
    out[name] = tensor(first.dtype, data, [b, ...first.dims.slice(1)], name);
  }
  return out;
}
