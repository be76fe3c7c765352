import { readFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * A configuration problem — a model's config.json or a run's settings. The message names the
 * file (or flag) and key and what was expected; `file` and `key` say it to code.
 */
export class ConfigError extends Error {
  constructor(message: string, readonly file?: string, readonly key?: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

function parse(text: string, file: string): Record<string, unknown> {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ConfigError(`'${file}' is not valid JSON: ${(e as Error).message}`, file);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw new ConfigError(`${file}: expected a JSON object`, file);
  return json as Record<string, unknown>;
}

/** `dir/config.json`, parsed; errors name the file. */
export async function readConfigJson(dir: string): Promise<{ file: string; json: Record<string, unknown> }> {
  const file = join(dir, 'config.json');
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read '${file}': ${(e as Error).message}`, file);
  }
  return { file, json: parse(text, file) };
}

/** {@link readConfigJson}, synchronously (the family registry sniffs `model_type` before anything loads). */
export function readConfigJsonSync(dir: string): { file: string; json: Record<string, unknown> } {
  const file = join(dir, 'config.json');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read '${file}': ${(e as Error).message}`, file);
  }
  return { file, json: parse(text, file) };
}
