import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { IdSource } from '../data/datasets.js';
import { ConfigError } from '../models/common/config.js';
import { familyOfOfficialType, listFamilies, resolveFamily } from '../models/registry.js';
import type { ModelFamily } from '../models/family.js';

/**
 * What every run's configuration resolves the same way — `setar eval`, `search`, `finetune` —
 * from an official-style config (the reference's keys) and command-line flags (which win): the
 * model folder and its family, the ID data, the output folder. Errors are {@link ConfigError}s
 * naming the flag or key.
 */

export { ConfigError };

/** Throws a ConfigError with `message`. */
export function fail(message: string): never {
  throw new ConfigError(message);
}

/** Parses `NAME=DIR`. */
export function parseNamedDir(value: string, flag: string): { name: string; root: string } {
  const i = value.indexOf('=');
  if (i <= 0 || i === value.length - 1) throw new ConfigError(`${flag} expects NAME=DIR, got '${value}'`);
  return { name: value.slice(0, i), root: resolve(value.slice(i + 1)) };
}

/**
 * The model folder — the flag, else the config's `model_name`, which must be a local folder
 * (setar never downloads weights) — and its family. An official `model_type` must name the
 * folder's family.
 */
export function resolveModel(j: Record<string, unknown>, flag: string | undefined, configFile = 'config'): { model: string; family: ModelFamily } {
  const officialType = j.model_type;
  const model = flag ?? (typeof j.model_name === 'string' ? j.model_name : undefined);
  if (officialType !== undefined && (typeof officialType !== 'string' || !familyOfOfficialType(officialType))) {
    const supported = listFamilies().map((f) => `"${f.officialModelTypes[0]}"`).join(', ');
    throw new ConfigError(`${configFile}: model_type ${JSON.stringify(officialType)} is not supported yet; supported: ${supported}`, configFile, 'model_type');
  }
  if (!model) throw new ConfigError('no model: give --model DIR (or "model_name" in the config)');
  if (!existsSync(resolve(model))) {
    throw new ConfigError(`model "${model}" is not a local directory; resolve a hub id to its cached folder first (resolveModel), or pass --model DIR`);
  }
  const dir = resolve(model);
  const family = resolveFamily(dir);
  if (typeof officialType === 'string' && !family.officialModelTypes.includes(officialType)) {
    throw new ConfigError(`${configFile}: model_type "${officialType}" is not supported but the model '${dir}' is a ${family.displayName} model; supported: ${family.officialModelTypes.map((t) => `"${t}"`).join(', ')}`, configFile, 'model_type');
  }
  return { model: dir, family };
}

/** The official `clip_ckpt` (a state dict loaded over the model): the flag, else the config's key (null: none), as an absolute path. */
export function resolveClipCkpt(j: Record<string, unknown>, flag: string | undefined): string | undefined {
  const v = flag ?? j.clip_ckpt ?? undefined;
  if (!(v === undefined || (typeof v === 'string' && v !== ''))) throw new ConfigError(`config key "clip_ckpt" must be a checkpoint file path (or null), got ${JSON.stringify(v)}`, undefined, 'clip_ckpt');
  return v === undefined ? undefined : resolve(v as string);
}

/** The ID data: `--id NAME=DIR`, else a benchmark (`--benchmark`/`id_dataset`) under `--data-root`/`data_root`. */
export function resolveIdSource(j: Record<string, unknown>, flags: { id?: string; benchmark?: string; dataRoot?: string }): IdSource {
  if (flags.id) {
    const { name, root } = parseNamedDir(flags.id, '--id');
    return { kind: 'folder', name, root };
  }
  const benchmark = flags.benchmark ?? (j.id_dataset as string | undefined);
  const dataRoot = flags.dataRoot ?? (j.data_root as string | undefined);
  if (!benchmark) throw new ConfigError('no ID data: give --id NAME=DIR, or --benchmark NAME with --data-root DIR (or "id_dataset" and "data_root" in the config)');
  if (!dataRoot) throw new ConfigError(`benchmark ${benchmark} needs a data root: --data-root DIR (or "data_root" in the config)`);
  return { kind: 'benchmark', benchmark, dataRoot: resolve(dataRoot) };
}

/** The output folder: the flag, else `log_directory` with the reference's `{args.id_dataset}` / `{args.exp_name}` placeholders. */
export function resolveOut(j: Record<string, unknown>, flag: string | undefined, id: IdSource, defaultExp: string): string {
  let out = flag;
  if (!out && typeof j.log_directory === 'string') {
    const idName = id.kind === 'folder' ? id.name : id.benchmark;
    out = j.log_directory.replaceAll('{args.id_dataset}', String(j.id_dataset ?? idName)).replaceAll('{args.exp_name}', String(j.exp_name ?? defaultExp));
  }
  if (!out) throw new ConfigError('no output folder: give --out DIR (or "log_directory" in the config)');
  return resolve(out);
}

/** The benchmark preset's name, or null for a folder of classes. */
export function benchmarkOf(id: IdSource): string | null {
  return id.kind === 'benchmark' ? id.benchmark : null;
}
