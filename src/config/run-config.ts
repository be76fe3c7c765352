import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import type { IdSource } from '../data/datasets.js';
import { ConfigError } from '../models/common/config.js';
import { readLocoopContext } from '../models/locoop/context.js';
import { familyOfOfficialType, listFamilies, resolveFamily } from '../models/registry.js';
import type { FamilyLoadOptions, ModelFamily } from '../models/family.js';

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

/** A dataset name that can be part of a file name (`scores_{name}_{split}.csv`): letters, digits, `.`, `_`, `+`, `-`. */
const DATASET_NAME = /^[A-Za-z0-9][A-Za-z0-9._+-]*$/;

/**
 * Parses `NAME=DIR`. NAME names the dataset's output files, so it must be file-name safe (a `/`
 * would make a sub-folder, `..` climb out of the output folder).
 */
export function parseNamedDir(value: string, flag: string): { name: string; root: string } {
  const i = value.indexOf('=');
  if (i <= 0 || i === value.length - 1) throw new ConfigError(`${flag} expects NAME=DIR, got '${value}'`);
  const name = value.slice(0, i);
  if (!DATASET_NAME.test(name)) {
    throw new ConfigError(`${flag} ${value}: the dataset name "${name}" is not file-name safe; use letters, digits, '.', '_', '+' and '-' (it names the output files, e.g. scores_${name.replace(/[^A-Za-z0-9._+-]/g, '_')}_test.csv)`);
  }
  return { name, root: resolve(value.slice(i + 1)) };
}

/**
 * Refuses two datasets of one run with the same name: their output files (scores_{name}_{split}.csv,
 * metrics rows) would overwrite each other. `named` lists each dataset with the flag that gave it.
 */
export function checkUniqueNames(named: readonly { readonly name: string; readonly flag: string }[]): void {
  const seen = new Map<string, string>();
  for (const { name, flag } of named) {
    const first = seen.get(name);
    if (first !== undefined) {
      throw new ConfigError(`${flag}: the dataset name "${name}" is already used by ${first}; give every dataset its own name (each one's scores go to scores_${name}_<split>.csv)`);
    }
    seen.set(name, flag);
  }
}

/**
 * The model folder — the flag, else the config's `model_name`, which must be a local folder
 * (setar never downloads weights) — and its family, given the load options (a LoCoOp context
 * makes a CLIP folder a LoCoOp model). An official `model_type` must name that family, or the
 * family it builds on when a flag selected it; a `model_type` of a family that builds on another
 * (`"LoCoOp"`) needs what selects it.
 */
export function resolveModel(j: Record<string, unknown>, flag: string | undefined, configFile = 'config', load: FamilyLoadOptions = {}): { model: string; family: ModelFamily } {
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
  const family = resolveFamily(dir, load);
  if (typeof officialType === 'string' && !family.officialModelTypes.includes(officialType)) {
    const named = familyOfOfficialType(officialType)!;
    if (named.buildsOn?.family === family.name) {
      throw new ConfigError(`${configFile}: model_type "${officialType}" needs ${named.buildsOn.given}; '${dir}' alone is a ${family.displayName} model`, configFile, 'model_type');
    }
    // e.g. "CLIP" and --locoop-ckpt: the flag makes the CLIP folder a LoCoOp model
    if (family.buildsOn?.family === named.name) return { model: dir, family };
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

/** A LoCoOp context for a run: the file (absolute) and its n_ctx, both checked ({@link resolveLocoopCkpt}). */
export interface LocoopCkpt {
  readonly locoop_ckpt: string;
  readonly n_ctx: number;
}

/**
 * The LoCoOp context of a run (SPEC §9): `--locoop-ckpt` / `"locoop_ckpt"` and `--n-ctx` /
 * `"n_ctx"` (flags win). The file is read here, so a bad file or an n_ctx that disagrees with it
 * fails before any work, naming the flag or key the user gave and both numbers. `n_ctx` alone
 * is an error (unless `nCtxAlone`: a context to train takes its own count). A `"locoop_ckpt"` in
 * a config whose `model_type` is not LoCoOp's is refused: the official code reads it for
 * `"model_type": "LoCoOp"` only.
 */
export function resolveLocoopCkpt(j: Record<string, unknown>, flags: { locoopCkpt?: string; nCtx?: number }, configFile = 'config', options: { nCtxAlone?: boolean } = {}): LocoopCkpt | undefined {
  const key = j.locoop_ckpt ?? undefined;
  if (!(key === undefined || (typeof key === 'string' && key !== ''))) throw new ConfigError(`${configFile}: config key "locoop_ckpt" must be a checkpoint file path (or null), got ${JSON.stringify(key)}`, configFile, 'locoop_ckpt');
  const nKey = j.n_ctx ?? undefined;
  if (!(nKey === undefined || (Number.isInteger(nKey) && (nKey as number) >= 1))) throw new ConfigError(`${configFile}: config key "n_ctx" must be a positive integer (or null), got ${JSON.stringify(nKey)}`, configFile, 'n_ctx');
  const file = flags.locoopCkpt ?? (key as string | undefined);
  const nCtx = flags.nCtx ?? (nKey as number | undefined);
  const nCtxName = flags.nCtx !== undefined ? '--n-ctx' : `config key "n_ctx"`;
  if (file === undefined) {
    if (nCtx !== undefined && !options.nCtxAlone) throw new ConfigError(`${nCtxName} ${nCtx} needs a LoCoOp context: give --locoop-ckpt FILE (or "locoop_ckpt" in the config)`, configFile, 'n_ctx');
    return undefined;
  }
  const officialType = j.model_type;
  if (flags.locoopCkpt === undefined && typeof officialType === 'string' && familyOfOfficialType(officialType)?.buildsOn === undefined) {
    const locoop = listFamilies().find((f) => f.buildsOn?.selectedBy.includes('locoopCkpt'));
    throw new ConfigError(`${configFile}: "locoop_ckpt" is set but model_type is "${officialType}"; the official code reads locoop_ckpt only for "model_type": "${locoop?.officialModelTypes[0]}" — set that (or drop locoop_ckpt)`, configFile, 'model_type');
  }
  const path = resolve(file);
  const c = readLocoopContext(path, { nCtx, nCtxName });
  return { locoop_ckpt: path, n_ctx: c.n };
}

/** The family load options of a resolved LoCoOp context (none without one). */
export function locoopLoadOptions(c: Partial<LocoopCkpt> | undefined): Pick<FamilyLoadOptions, 'locoopCkpt' | 'nCtx'> {
  return c?.locoop_ckpt ? { locoopCkpt: c.locoop_ckpt, nCtx: c.n_ctx } : {};
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

/**
 * Reads a run's settings: each from its flag (which wins), else the config file's key, else a
 * default, and checks it. An error names where the bad value came from — the flag the user typed
 * (`--locoop-top-k must be a positive integer, got 0`) or the file and key
 * (`my.json: config key "locoop_top_k" must be …`) — never a key the user did not write.
 * Flags are the official keys with dashes (`locoop_top_k` ↔ `--locoop-top-k`).
 */
export class SettingsReader {
  constructor(private readonly j: Record<string, unknown>, private readonly configFile: string) {}

  /** `--locoop-top-k` for a flag value, `my.json: config key "locoop_top_k"` for a config value. */
  origin(key: string, fromFlag: boolean): string {
    return fromFlag ? `--${key.replaceAll('_', '-')}` : `${this.configFile}: config key "${key}"`;
  }

  /** The value and where it came from (`flag`, `config` or `default`). */
  pick<T>(flag: T | undefined, key: string, dflt: T): { value: T; from: 'flag' | 'config' | 'default' } {
    if (flag !== undefined) return { value: flag, from: 'flag' };
    if (this.j[key] !== undefined && this.j[key] !== null) return { value: this.j[key] as T, from: 'config' };
    return { value: dflt, from: 'default' };
  }

  /** Throws naming the value's origin unless `ok`. */
  check(ok: boolean, key: string, from: 'flag' | 'config' | 'default', expected: string, got: unknown): void {
    if (!ok) throw new ConfigError(`${this.origin(key, from === 'flag')} must be ${expected}, got ${JSON.stringify(got)}`, from === 'config' ? this.configFile : undefined, key);
  }

  /** A number that `ok` accepts. */
  num(flag: number | undefined, key: string, dflt: number, ok: (x: number) => boolean, expected: string): number {
    const { value, from } = this.pick<unknown>(flag, key, dflt);
    this.check(typeof value === 'number' && ok(value), key, from, expected, value);
    return value as number;
  }

  /** One of `allowed`. */
  oneOf<T extends string>(flag: string | undefined, key: string, dflt: T, allowed: readonly T[]): T {
    const { value, from } = this.pick<unknown>(flag, key, dflt);
    this.check(allowed.includes(value as T), key, from, `one of ${allowed.join(', ')}`, value);
    return value as T;
  }

  /** A boolean. */
  bool(flag: boolean | undefined, key: string, dflt: boolean): boolean {
    const { value, from } = this.pick<unknown>(flag, key, dflt);
    this.check(typeof value === 'boolean', key, from, 'true or false', value);
    return value as boolean;
  }
}
