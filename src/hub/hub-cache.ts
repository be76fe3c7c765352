import { copyFileSync, existsSync, lstatSync, mkdirSync, readFileSync, symlinkSync, unlinkSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { missingModelFiles } from './model-files.js';

/*
 * The Hugging Face hub cache, laid out as huggingface_hub lays it out (and transformers fills it):
 *   <cache>/models--ORG--NAME/refs/<revision>         the commit sha the revision points at
 *   <cache>/models--ORG--NAME/snapshots/<sha>/<file>  relative symlink to ../../blobs/<etag>
 *   <cache>/models--ORG--NAME/blobs/<etag>            file content; <etag>.incomplete while downloading
 * The etag is the sha256 of an LFS file, else the git blob sha1.
 */

export const COMMIT_SHA = /^[0-9a-f]{40}$/;

/** The cache folder of a model repo: `models--ORG--NAME`. */
export function repoFolder(cacheDir: string, repoId: string): string {
  return join(cacheDir, `models--${repoId.split('/').join('--')}`);
}

/** A revision found in the cache: its commit and snapshot folder, and what that folder lacks to load. */
export interface CachedRevision {
  readonly sha: string;
  readonly dir: string;
  readonly missing: readonly string[];
}

/**
 * Looks a revision up in a repo's cache folder: a commit sha goes straight to `snapshots/<sha>`,
 * any other revision through `refs/<revision>`. Returns why not when it is not there.
 */
export function findCachedRevision(repoDir: string, revision: string): CachedRevision | { readonly reason: string } {
  let sha = revision;
  if (!COMMIT_SHA.test(revision)) {
    const ref = join(repoDir, 'refs', revision);
    if (!existsSync(ref)) return { reason: `no ${relative(dirname(repoDir), ref)}` };
    sha = readFileSync(ref, 'utf8').trim();
  }
  const dir = join(repoDir, 'snapshots', sha);
  if (!existsSync(dir)) return { reason: `no snapshot ${relative(dirname(repoDir), dir)}` };
  return { sha, dir, missing: missingModelFiles(dir) };
}

/** Records that `revision` points at commit `sha` (`refs/<revision>`), as huggingface_hub does for any revision that is not a sha. */
export function writeRef(repoDir: string, revision: string, sha: string): void {
  if (revision !== sha) writeFileAtomic(join(repoDir, 'refs', revision), sha);
}

/**
 * Points `snapshots/<sha>/<file>` at a blob with a relative symlink (a copy where the file system
 * refuses symlinks, as huggingface_hub falls back on Windows).
 */
export function linkBlob(pointer: string, blob: string): void {
  mkdirSync(dirname(pointer), { recursive: true });
  try {
    lstatSync(pointer);
    unlinkSync(pointer); // a dangling or stale link
  } catch { /* not there */ }
  try {
    symlinkSync(relative(dirname(pointer), blob), pointer);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EPERM' && code !== 'EACCES' && code !== 'ENOTSUP' && code !== 'EINVAL') throw e;
    copyFileSync(blob, pointer);
  }
}
