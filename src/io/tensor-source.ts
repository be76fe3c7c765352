import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Checkpoint, FLOAT_DTYPES, type SafetensorsDtype, type StoredTensor } from './safetensors.js';
import { readTorchCheckpoint, type TorchTensor } from './torch-checkpoint.js';

/** dtype and shape of one tensor, as stored. */
export interface TensorInfo {
  readonly dtype: SafetensorsDtype;
  readonly shape: readonly number[];
}

/**
 * Where a model's tensors come from, whatever the format: safetensors (one file or shards) or a
 * torch zip checkpoint (`pytorch_model.bin`, one file or shards). Names are HF state-dict names.
 */
export interface TensorSource {
  /** The folder (or file) the tensors come from, for messages. */
  readonly dir: string;
  /** Every tensor name, in stored order. */
  names(): string[];
  has(name: string): boolean;
  entry(name: string): TensorInfo;
  /** A float tensor as a fresh float32 array; `expectedShape`, when given, is checked first. */
  readFloat32(name: string, expectedShape?: readonly number[]): Float32Array;
  /** A tensor in its stored dtype (F16/BF16 widened to float32). */
  read(name: string): StoredTensor;
  close(): void;
}

/** A tensor missing, of the wrong shape or dtype, or a folder with no weights; names the folder or file and the tensor. */
export class TensorSourceError extends Error {
  constructor(message: string, readonly location: string, readonly tensor?: string) {
    super(message);
    this.name = 'TensorSourceError';
  }
}

/** Options of {@link openTensorSource} and {@link openTensorFile}. */
export interface TensorSourceOptions {
  /** Names to leave out (buffers a model recomputes, such as `position_ids`); they are never read or checked. */
  readonly ignore?: (name: string) => boolean;
}

/** The weight files of an HF folder, in the order transformers prefers them. */
export const WEIGHT_FILES = ['model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin', 'pytorch_model.bin.index.json'] as const;

/**
 * The tensors of an HF model folder: `model.safetensors` or its sharded index when present (as
 * transformers prefers safetensors), else `pytorch_model.bin` or its sharded
 * `pytorch_model.bin.index.json`, read by the restricted unpickler.
 */
export async function openTensorSource(dir: string, options: TensorSourceOptions = {}): Promise<TensorSource> {
  const has = (f: string) => existsSync(join(dir, f));
  let source: TensorSource;
  if (has('model.safetensors') || has('model.safetensors.index.json')) source = await Checkpoint.open(dir);
  else if (has('pytorch_model.bin')) return TorchTensorSource.openFile(join(dir, 'pytorch_model.bin'), options, dir);
  else if (has('pytorch_model.bin.index.json')) return TorchTensorSource.openIndex(dir, 'pytorch_model.bin.index.json', options);
  else if (!existsSync(dir)) throw new TensorSourceError(`model folder '${dir}' does not exist`, dir);
  else throw new TensorSourceError(`no model weights in '${dir}': expected one of ${WEIGHT_FILES.join(', ')}`, dir);
  return withoutIgnored(source, options);
}

/** `source` without the names `options.ignore` leaves out (recomputed buffers). */
export function withoutIgnored(source: TensorSource, options: TensorSourceOptions): TensorSource {
  return options.ignore ? new FilteredTensorSource(source, options.ignore) : source;
}

/** `weight_map` of a sharded checkpoint's index (HF `*.index.json`), names → shard file. */
export function readWeightMap(indexFile: string): Map<string, string> {
  let json: { weight_map?: unknown };
  try {
    json = JSON.parse(readFileSync(indexFile, 'utf8')) as { weight_map?: unknown };
  } catch (e) {
    throw new TensorSourceError(`cannot read index '${indexFile}': ${(e as Error).message}`, indexFile);
  }
  const map = json?.weight_map;
  if (!map || typeof map !== 'object' || Array.isArray(map)) throw new TensorSourceError(`'${indexFile}' has no "weight_map" object`, indexFile);
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
    if (typeof shard !== 'string' || shard === '' || shard.includes('/') || shard.includes('\\') || shard === '..') {
      throw new TensorSourceError(`'${indexFile}': weight_map["${name}"] is ${JSON.stringify(shard)}, expected a file name beside the index`, indexFile, name);
    }
    out.set(name, shard);
  }
  return out;
}

/**
 * The tensors of torch zip checkpoints (`torch.save`): one file, or the shards of an index. A
 * shard is read whole through the restricted unpickler on first use and kept.
 */
export class TorchTensorSource implements TensorSource {
  private readonly shards = new Map<string, Map<string, TorchTensor>>();

  private constructor(
    readonly dir: string,
    private readonly folder: string,
    private readonly weightMap: ReadonlyMap<string, string>,
  ) {}

  /** One torch checkpoint file; `dir` (default: the file) names the source in messages. */
  static openFile(file: string, options: TensorSourceOptions = {}, dir = file): TorchTensorSource {
    const all = readTorchCheckpoint(file);
    const keep = new Map([...all].filter(([n]) => !options.ignore?.(n)));
    const base = file.replace(/^.*[\\/]/, '');
    const src = new TorchTensorSource(dir, file.slice(0, file.length - base.length), new Map([...keep.keys()].map((n) => [n, base])));
    src.shards.set(base, keep);
    return src;
  }

  /** The shards listed by `dir/index` (`weight_map`), read lazily. */
  static openIndex(dir: string, index: string, options: TensorSourceOptions = {}): TorchTensorSource {
    const map = readWeightMap(join(dir, index));
    const missing = [...new Set(map.values())].filter((s) => !existsSync(join(dir, s)));
    if (missing.length) {
      throw new TensorSourceError(`'${join(dir, index)}' lists shard(s) missing from '${dir}': ${missing.join(', ')}`, dir);
    }
    return new TorchTensorSource(dir, dir, new Map([...map].filter(([n]) => !options.ignore?.(n))));
  }

  names(): string[] {
    return [...this.weightMap.keys()];
  }

  has(name: string): boolean {
    return this.weightMap.has(name);
  }

  private tensor(name: string): TorchTensor {
    const shard = this.weightMap.get(name);
    if (shard === undefined) throw new TensorSourceError(`tensor '${name}' is missing from the checkpoint in '${this.dir}'`, this.dir, name);
    let tensors = this.shards.get(shard);
    if (!tensors) {
      tensors = readTorchCheckpoint(join(this.folder, shard));
      this.shards.set(shard, tensors);
    }
    const t = tensors.get(name);
    if (!t) throw new TensorSourceError(`tensor '${name}' is not in shard '${join(this.folder, shard)}', though the index lists it there`, this.dir, name);
    return t;
  }

  entry(name: string): TensorInfo {
    const t = this.tensor(name);
    return { dtype: t.dtype, shape: t.shape };
  }

  readFloat32(name: string, expectedShape?: readonly number[]): Float32Array {
    const t = this.tensor(name);
    if (expectedShape && !sameShape(t.shape, expectedShape)) {
      throw new TensorSourceError(`tensor '${name}' in '${this.dir}' has shape [${t.shape.join(', ')}], expected [${expectedShape.join(', ')}]`, this.dir, name);
    }
    if (!FLOAT_DTYPES.includes(t.dtype)) {
      throw new TensorSourceError(`tensor '${name}' in '${this.dir}' has dtype ${t.dtype}; expected one of ${FLOAT_DTYPES.join(', ')}`, this.dir, name);
    }
    // F16/BF16 come widened from the reader; a copy keeps the source intact whatever the caller does.
    return t.data instanceof Float32Array ? t.data.slice() : Float32Array.from(t.data as Float64Array);
  }

  read(name: string): StoredTensor {
    const t = this.tensor(name);
    return { dtype: t.dtype, shape: t.shape, data: t.data as StoredTensor['data'] };
  }

  close(): void {
    this.shards.clear();
  }
}

/** A source with some names left out (recomputed buffers). */
class FilteredTensorSource implements TensorSource {
  constructor(private readonly inner: TensorSource, private readonly ignore: (name: string) => boolean) {}
  get dir(): string {
    return this.inner.dir;
  }
  names(): string[] {
    return this.inner.names().filter((n) => !this.ignore(n));
  }
  has(name: string): boolean {
    return !this.ignore(name) && this.inner.has(name);
  }
  private check(name: string): void {
    if (this.ignore(name)) throw new TensorSourceError(`tensor '${name}' is a recomputed buffer; it is never read from '${this.dir}'`, this.dir, name);
  }
  entry(name: string): TensorInfo {
    this.check(name);
    return this.inner.entry(name);
  }
  readFloat32(name: string, expectedShape?: readonly number[]): Float32Array {
    this.check(name);
    return this.inner.readFloat32(name, expectedShape);
  }
  read(name: string): StoredTensor {
    this.check(name);
    return this.inner.read(name);
  }
  close(): void {
    this.inner.close();
  }
}

export function sameShape(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
