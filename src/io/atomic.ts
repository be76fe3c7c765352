import { closeSync, fsyncSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * Writes a file so that readers see either the old content or the whole new content, never a
 * half-written file: a temporary file in the same folder (created if missing), flushed, then
 * renamed over the target. On any failure the temporary file is removed and the old file stays.
 * `data` may be given in chunks, so large files need not be joined first.
 */
export function writeFileAtomic(path: string, data: string | Uint8Array | readonly Uint8Array[]): void {
  const dir = dirname(path);
  try {
    mkdirSync(dir, { recursive: true });
  } catch (e) {
    throw new Error(`cannot write '${path}': cannot create its folder '${dir}' (${fsReason(e)})`);
  }
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${Date.now().toString(36)}.tmp`);
  try {
    const fd = openSync(tmp, 'w');
    try {
      const chunks = typeof data === 'string' ? [Buffer.from(data, 'utf8')] : data instanceof Uint8Array ? [data] : data;
      for (const c of chunks) writeSync(fd, c);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    try { unlinkSync(tmp); } catch { /* already gone */ }
    // name the file the caller asked for, not the temporary one
    throw new Error(`cannot write '${path}': ${fsReason(e)}`);
  }
}

/** A file-system error in words (`permission denied`, `no space left on the device`, …). */
export function fsReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  const words: Record<string, string> = {
    EACCES: 'permission denied', EPERM: 'operation not permitted', EROFS: 'read-only file system', ENOSPC: 'no space left on the device',
    EISDIR: 'it is a folder', ENOTDIR: 'a part of the path is a file, not a folder', ENOENT: 'no such file or folder', EEXIST: 'it exists already',
    EDQUOT: 'disk quota exceeded', ENAMETOOLONG: 'the name is too long',
  };
  return (code && words[code]) ?? (e as Error).message;
}
