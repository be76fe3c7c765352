import { accessSync, constants, existsSync, mkdirSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import { fsReason } from './atomic.js';

/** An output path that cannot be used; the message names the flag and the path given. */
export class OutputPathError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'OutputPathError';
  }
}

/**
 * Makes sure an output folder exists and can be written, before any work: a file in its place,
 * a folder that cannot be created or one without write permission is an error in words naming
 * the flag and the path.
 */
export function prepareOutDir(dir: string, flag = '--out'): void {
  if (existsSync(dir) && !statSync(dir).isDirectory()) throw new OutputPathError(`${flag} '${dir}' is a file, not a folder`);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new OutputPathError(`${flag} '${dir}': cannot create the folder (${fsReason(e)})`);
  }
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw new OutputPathError(`${flag} '${dir}' is not writable (permission denied)`);
  }
}

/** The same for an output file: not a folder, and its folder writable. */
export function prepareOutFile(file: string, flag = '--out'): void {
  if (existsSync(file) && statSync(file).isDirectory()) throw new OutputPathError(`${flag} '${file}' is a folder; give a file name`);
  prepareOutDir(dirname(file), `${flag} '${file}': its folder`);
}
