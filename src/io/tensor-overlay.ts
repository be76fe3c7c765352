import { closeSync, openSync, readSync } from 'node:fs';
import { Checkpoint, FLOAT_DTYPES, type StoredTensor } from './safetensors.js';
import { TensorSourceError, TorchTensorSource, withoutIgnored, type TensorInfo, type TensorSource, type TensorSourceOptions } from './tensor-source.js';
import { shapeString } from '../tensor.js';

/**
 * One checkpoint file as a {@link TensorSource}, whatever its extension: a torch zip (`torch.save`
 * since 1.6, e.g. the official fine-tuning's `finetuned_model.pth`) or a safetensors file, told
 * apart by their first bytes.
 */
export function openTensorFile(file: string, options: TensorSourceOptions = {}): TensorSource {
  const head = Buffer.alloc(9);
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new TensorSourceError(`cannot open checkpoint '${file}': ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`, file);
  }
  let n: number;
  try {
    n = readSync(fd, head, 0, head.length, 0);
  } finally {
    closeSync(fd);
  }
  // safetensors: an 8-byte header length, then the JSON header; anything else goes to the torch
  // reader, which names the zip problem (or the legacy pre-1.6 format).
  if (n === 9 && head[8] === 0x7b && head.readUInt32LE(0) !== 0x04034b50) {
    return withoutIgnored(Checkpoint.openFile(file), options);
  }
  return TorchTensorSource.openFile(file, options);
}

/**
 * `overlay`'s tensors over `base`'s: a name the overlay has is read from it, any other from the
 * base. Closing it closes both.
 */
export class OverlayTensorSource implements TensorSource {
  constructor(private readonly base: TensorSource, readonly overlay: TensorSource) {}

  get dir(): string {
    return this.base.dir;
  }
  private from(name: string): TensorSource {
    return this.overlay.has(name) ? this.overlay : this.base;
  }
  names(): string[] {
    const seen = new Set(this.base.names());
    return [...seen, ...this.overlay.names().filter((n) => !seen.has(n))];
  }
  has(name: string): boolean {
    return this.overlay.has(name) || this.base.has(name);
  }
  entry(name: string): TensorInfo {
    return this.from(name).entry(name);
  }
  readFloat32(name: string, expectedShape?: readonly number[]): Float32Array {
    return this.from(name).readFloat32(name, expectedShape);
  }
  read(name: string): StoredTensor {
    return this.from(name).read(name);
  }
  close(): void {
    this.overlay.close();
    this.base.close();
  }
}

/** Options of {@link checkOverlay}. */
export interface CheckOverlayOptions {
  /** Whether every expected tensor must be in the overlay (a whole state dict, as `load_state_dict(strict=True)` wants). */
  readonly complete: boolean;
  /** How the overlay is named in the message, e.g. `--clip-ckpt 'finetuned_model.pth'`. */
  readonly label: string;
  /** What it is checked against, e.g. `the CLIP model in 'DIR'`. */
  readonly against: string;
}

const LISTED = 12;

/**
 * Checks an overlay's names, shapes and dtypes against the tensors a model expects (name →
 * shape, HF layout) and throws ONE error listing every mismatch: unknown names, missing names
 * (when `complete`), wrong shapes, non-float dtypes. Long lists show their first entries and a count.
 */
export function checkOverlay(overlay: TensorSource, expected: ReadonlyMap<string, readonly number[]>, options: CheckOverlayOptions): void {
  const names = overlay.names();
  const unknown = names.filter((n) => !expected.has(n));
  const missing = options.complete ? [...expected.keys()].filter((n) => !overlay.has(n)) : [];
  const shapes: string[] = [];
  const dtypes: string[] = [];
  for (const n of names) {
    const want = expected.get(n);
    if (!want) continue;
    const e = overlay.entry(n);
    // A 0-d scalar (logit_scale) is also stored as [1] by some exporters.
    const scalarLike = (s: readonly number[]) => s.length <= 1 && s.every((d) => d === 1);
    if (!sameDims(e.shape, want) && !(scalarLike(e.shape) && scalarLike(want))) shapes.push(`'${n}' is ${shapeString(e.shape)}, expected ${shapeString(want)}`);
    if (!FLOAT_DTYPES.includes(e.dtype)) dtypes.push(`'${n}' is ${e.dtype}, expected one of ${FLOAT_DTYPES.join(', ')}`);
  }
  if (!unknown.length && !missing.length && !shapes.length && !dtypes.length) return;
  const parts: string[] = [];
  const list = (title: string, items: string[]) => {
    if (!items.length) return;
    const shown = items.slice(0, LISTED).map((s) => (s.startsWith("'") ? s : `'${s}'`));
    parts.push(`${items.length} ${title}: ${shown.join(', ')}${items.length > LISTED ? `, … (${items.length - LISTED} more)` : ''}`);
  };
  list('unknown name(s)', unknown);
  list('missing name(s)', missing);
  list('wrong shape(s)', shapes);
  list('non-float tensor(s)', dtypes);
  const hint = prefixHint(unknown, expected);
  throw new TensorSourceError(
    `${options.label} does not match ${options.against} (${names.length} tensors, ${expected.size} expected):\n  ${parts.join('\n  ')}${hint}`,
    overlay.dir);
}

function sameDims(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** A hint when every unknown name is an expected name behind one prefix (a `module.` from DataParallel, a wrapper's `model.`). */
function prefixHint(unknown: string[], expected: ReadonlyMap<string, readonly number[]>): string {
  if (!unknown.length) return '';
  const prefix = /^[^.]+\./.exec(unknown[0]!)?.[0];
  if (!prefix || !unknown.every((n) => n.startsWith(prefix) && expected.has(n.slice(prefix.length)))) return '';
  return `\n  every unknown name is a model tensor behind the prefix '${prefix}': save the state dict of the unwrapped model (names as the model's own state_dict())`;
}
