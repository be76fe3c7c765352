import { closeSync, fsyncSync, lstatSync, mkdirSync, openSync, readdirSync, renameSync, unlinkSync, writeSync } from 'node:fs';
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

/**
 * A temporary file of an atomic writer: `<name>.<pid>.<stamp>.tmp` — writeFileAtomic's
 * `.NAME.PID.STAMP.tmp` and the SVD cache's `KEY.svd.PID.HEX.tmp`. Group 1 is the writer's pid.
 */
const TEMP_FILE = /^.+\.(\d+)\.[0-9a-z]+\.tmp$/;

/**
 * A temporary file untouched this long belongs to no live write whatever its pid says (a writer
 * appends to it until it renames it): covers a pid reused by another process, as in containers
 * where every run is pid 1.
 */
const STALE_MS = 10 * 60_000;

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by someone else
  }
}

/**
 * Removes, under `dir` (recursively, symlinks not followed), the temporary files that atomic
 * writers of a killed run left behind: those whose writer process is gone, is this process (its
 * writes are synchronous, so none is under way while this runs), or that nobody has written to for
 * 10 minutes. A concurrent run's file in progress is kept. Returns the removed paths.
 */
export function removeOrphanTempFiles(dir: string): string[] {
  const removed: string[] = [];
  const now = Date.now();
  const visit = (d: string): void => {
    let entries;
    try {
      entries = readdirSync(d, { withFileTypes: true });
    } catch {
      return; // missing or unreadable: nothing of ours to clean
    }
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        visit(p);
        continue;
      }
      const m = e.isFile() ? TEMP_FILE.exec(e.name) : null;
      if (!m) continue;
      const pid = Number(m[1]);
      let stale = false;
      try {
        stale = now - lstatSync(p).mtimeMs > STALE_MS;
      } catch {
        continue; // removed meanwhile
      }
      if (pid === process.pid || !processAlive(pid) || stale) {
        try {
          unlinkSync(p);
          removed.push(p);
        } catch { /* removed meanwhile */ }
      }
    }
  };
  visit(dir);
  return removed;
}

/**
 * Creates a run's output folder if needed and removes the orphan temporary files a killed earlier
 * run left in it ({@link removeOrphanTempFiles}); returns the removed paths, for the run's log.
 */
export function openOutputFolder(dir: string): string[] {
  mkdirSync(dir, { recursive: true });
  return removeOrphanTempFiles(dir);
}
