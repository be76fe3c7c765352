import { createHash } from 'node:crypto';
import { createReadStream, existsSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { open } from 'node:fs/promises';

/** One blob to bring into the cache. */
export interface BlobDownload {
  /** The file in the repo, for messages. */
  readonly file: string;
  /** `blobs/<etag>`; the bytes go to `<blob>.incomplete` first and are renamed only once whole and verified. */
  readonly blob: string;
  /** sha256 of an LFS file or git blob sha1 of any other file (checked when it has one of these forms). */
  readonly etag: string;
  readonly size: number;
  /** The file's bytes from offset `start` to the end. */
  readonly open: (start: number) => Promise<ReadableStream<Uint8Array>>;
  /** Bytes written so far in this call (also after a resume), as they arrive. */
  readonly onBytes?: (n: number) => void;
  /** Whether an error may go away on another try (a cut connection) rather than being final (401, 404). */
  readonly retryable?: (e: unknown) => boolean;
}

/** Attempts per blob in one call; each resumes where the last one stopped. */
export const MAX_ATTEMPTS = 3;

/**
 * Downloads a blob into the cache, never leaving a partial file under the blob's name: bytes are
 * appended to `<blob>.incomplete`, which a later attempt (or a later run) resumes from its
 * length; when the size is reached the content is checked against the etag and only then renamed.
 * A mismatch discards the partial file and starts over.
 */
export async function downloadBlob(d: BlobDownload): Promise<void> {
  if (existsSync(d.blob) && statSync(d.blob).size === d.size) return;
  const incomplete = `${d.blob}.incomplete`;
  let lastError: unknown;
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    let have = existsSync(incomplete) ? statSync(incomplete).size : 0;
    if (have > d.size) {
      unlinkSync(incomplete);
      have = 0;
    }
    try {
      if (have < d.size) await append(incomplete, await d.open(have), d.size - have, d);
    } catch (e) {
      lastError = e;
      if (d.retryable && !d.retryable(e)) throw e;
      continue;
    }
    const bad = await verify(incomplete, d);
    if (!bad) {
      renameSync(incomplete, d.blob);
      return;
    }
    unlinkSync(incomplete);
    lastError = new Error(bad);
  }
  const left = existsSync(incomplete) ? `; the ${statSync(incomplete).size} bytes received stay in '${incomplete}' and the next run resumes from there` : '';
  throw new Error(`download of '${d.file}' (${d.size} bytes) failed after ${MAX_ATTEMPTS} attempts: ${describe(lastError)}${left}`);
}

async function append(file: string, stream: ReadableStream<Uint8Array>, expected: number, d: BlobDownload): Promise<void> {
  const fh = await open(file, 'a');
  const reader = stream.getReader();
  let got = 0;
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      got += value.length;
      if (got > expected) {
        await reader.cancel().catch(() => undefined);
        throw new Error(`the server sent more than the ${expected} bytes left of '${d.file}'`);
      }
      await fh.write(value);
      d.onBytes?.(value.length);
    }
    if (got < expected) throw new Error(`the connection closed after ${got} of ${expected} bytes`);
  } finally {
    reader.releaseLock();
    await fh.close();
  }
}

/** Why the downloaded file is not the blob (size or hash), or null when it is. */
async function verify(file: string, d: BlobDownload): Promise<string | null> {
  const size = statSync(file).size;
  if (size !== d.size) return `'${d.file}' has ${size} bytes, expected ${d.size}`;
  let hash: ReturnType<typeof createHash>;
  if (/^[0-9a-f]{64}$/.test(d.etag)) hash = createHash('sha256');
  else if (/^[0-9a-f]{40}$/.test(d.etag)) hash = createHash('sha1').update(`blob ${size}\0`);
  else return null;
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  const got = hash.digest('hex');
  return got === d.etag ? null : `'${d.file}' hashes to ${got}, expected ${d.etag}`;
}

function describe(e: unknown): string {
  if (e instanceof Error) {
    const cause = (e as Error & { cause?: unknown }).cause;
    return cause instanceof Error ? `${e.message} (${cause.message})` : e.message;
  }
  return String(e);
}
