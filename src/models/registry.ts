import { ConfigError, readConfigJsonSync } from './common/config.js';
import { clipFamily } from './clip/family.js';
import { swinV2Family } from './swinv2/family.js';
import type { ModelFamily } from './family.js';

/**
 * The model families setar runs, by `config.json`'s `model_type`: one row per family, looked up
 * by {@link resolveFamily} — the only place that reads a checkpoint's config to tell families
 * apart. The built-in rows are listed here (not registered by their own modules as a side effect
 * of importing them); {@link registerFamily} adds others.
 */
const families = new Map<string, ModelFamily>();

/** Adds a family. Its name and `model_type` values must be new. */
export function registerFamily(family: ModelFamily): void {
  if (families.has(family.name)) throw new Error(`a model family named "${family.name}" is already registered`);
  for (const f of families.values()) {
    const shared = family.modelTypes.filter((t) => f.modelTypes.includes(t));
    if (shared.length) throw new Error(`model family "${family.name}": model_type ${shared.map((t) => `"${t}"`).join(', ')} already belongs to "${f.name}"`);
    if (family.untyped && f.untyped) throw new Error(`model family "${family.name}": "${f.name}" already reads configs without model_type`);
  }
  families.set(family.name, family);
}

for (const f of [clipFamily, swinV2Family]) registerFamily(f);

/** Every registered family, in registration order. */
export function listFamilies(): ModelFamily[] {
  return [...families.values()];
}

/**
 * The family of the checkpoint in `dir`, from `config.json`'s `model_type`. Throws a
 * ConfigError naming the file and listing the supported model types for any other value.
 */
export function resolveFamily(dir: string): ModelFamily {
  const { file, json } = readConfigJsonSync(dir);
  const t = json.model_type;
  for (const f of families.values()) {
    if (t === undefined ? f.untyped : typeof t === 'string' && f.modelTypes.includes(t)) return f;
  }
  const known = listFamilies().flatMap((f) => f.modelTypes);
  throw new ConfigError(`${file}: model_type ${JSON.stringify(t)} is not supported; known model types: ${known.map((m) => `"${m}"`).join(', ')}`, file, 'model_type');
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
