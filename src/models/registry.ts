import { ConfigError, readConfigJsonSync } from './common/config.js';
import { clipFamily } from './clip/family.js';
import { locoopFamily } from './locoop/family.js';
import { swinV2Family } from './swinv2/family.js';
import type { FamilyLoadOptions, FamilyModel, ModelFamily } from './family.js';

/**
 * The model families setar runs, by `config.json`'s `model_type`: one row per family, looked up
 * by {@link resolveFamily} — the only place that reads a checkpoint's config to tell families
 * apart. The built-in rows are listed here (not registered by their own modules as a side effect
 * of importing them); {@link registerFamily} adds others.
 */
const families = new Map<string, ModelFamily>();

/**
 * Adds a family. Its name and `model_type` values must be new; a family that builds on another
 * (see {@link ModelFamily.buildsOn}) needs that one registered first and at least one selecting option.
 */
export function registerFamily(family: ModelFamily): void {
  if (families.has(family.name)) throw new Error(`a model family named "${family.name}" is already registered`);
  const base = family.buildsOn;
  if (base) {
    if (!families.has(base.family)) throw new Error(`model family "${family.name}" builds on "${base.family}", which is not registered; known: ${[...families.keys()].join(', ')}`);
    if (base.selectedBy.length === 0) throw new Error(`model family "${family.name}" builds on "${base.family}" but names no load option that selects it`);
    if (family.modelTypes.length || family.untyped) throw new Error(`model family "${family.name}" builds on "${base.family}": its checkpoints are "${base.family}" folders, so it claims no model_type of its own`);
  }
  for (const f of families.values()) {
    const shared = family.modelTypes.filter((t) => f.modelTypes.includes(t));
    if (shared.length) throw new Error(`model family "${family.name}": model_type ${shared.map((t) => `"${t}"`).join(', ')} already belongs to "${f.name}"`);
    if (family.untyped && f.untyped) throw new Error(`model family "${family.name}": "${f.name}" already reads configs without model_type`);
  }
  families.set(family.name, family);
}

for (const f of [clipFamily, swinV2Family, locoopFamily]) registerFamily(f);

/** Every registered family, in registration order. */
export function listFamilies(): ModelFamily[] {
  return [...families.values()];
}

/**
 * The family of the checkpoint in `dir`: from `config.json`'s `model_type`, then — when `options`
 * set a load option that selects a family building on that one (`locoopCkpt` → LoCoOp over a
 * CLIP folder) — that family. Throws a ConfigError naming the file and listing the supported
 * model types for any other `model_type`, and one naming the option and both families when the
 * option does not apply to the folder's family.
 */
export function resolveFamily(dir: string, options: FamilyLoadOptions = {}): ModelFamily {
  const { file, json } = readConfigJsonSync(dir);
  const t = json.model_type;
  let base: ModelFamily | undefined;
  for (const f of families.values()) {
    if (t === undefined ? f.untyped : typeof t === 'string' && f.modelTypes.includes(t)) {
      base = f;
      break;
    }
  }
  if (!base) {
    const known = listFamilies().flatMap((f) => f.modelTypes);
    throw new ConfigError(`${file}: model_type ${JSON.stringify(t)} is not supported; known model types: ${known.map((m) => `"${m}"`).join(', ')}`, file, 'model_type');
  }
  const selected = listFamilies().filter((f) => f.buildsOn?.selectedBy.some((o) => options[o] !== undefined));
  if (selected.length > 1) throw new ConfigError(`${selected.map((f) => f.buildsOn!.given).join(' and ')} cannot be combined: each makes another kind of model`);
  const ext = selected[0];
  if (!ext) return base;
  if (ext.buildsOn!.family !== base.name) {
    const on = families.get(ext.buildsOn!.family)!;
    throw new ConfigError(`${ext.buildsOn!.given} makes a ${ext.displayName} model, which needs a ${on.displayName} model, but '${dir}' holds a ${base.displayName} model (${file}: model_type ${JSON.stringify(t ?? null)})`, file, 'model_type');
  }
  return ext;
}

/** Loads the model in `dir` with the family {@link resolveFamily} finds for it and `options`. */
export function loadModel(dir: string, options: FamilyLoadOptions = {}): Promise<FamilyModel> {
  return resolveFamily(dir, options).load(dir, options);
}

/** The registry name of the family of the checkpoint in `dir` (e.g. `clip`). */
export function modelFamily(dir: string): string {
  return resolveFamily(dir).name;
}

/** The default score temperature (SPEC §3) for the model in `dir`; CLIP's 100 when its config cannot be read. */
export function defaultTemperature(dir: string): number {
  try {
    return resolveFamily(dir).defaults.temperature;
  } catch {
    return clipFamily.defaults.temperature;
  }
}

/** The family whose official configs write `model_type` as `officialType` (e.g. "SwinTransformerV2"), if any. */
export function familyOfOfficialType(officialType: string): ModelFamily | undefined {
  return listFamilies().find((f) => f.officialModelTypes.includes(officialType));
}
