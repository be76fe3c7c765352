import { existsSync, mkdirSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { downloadFile, HubApiError, modelInfo, pathsInfo } from '@huggingface/hub';
import { downloadBlob } from './download-blob.js';
import { findCachedRevision, linkBlob, repoFolder, writeRef } from './hub-cache.js';
import { hubSettings, type Env, type HubSettings } from './hub-env.js';
import { chooseWeights, shardsOf, SIDE_FILES } from './model-files.js';
import { WEIGHT_FILES } from '../io/tensor-source.js';

/** Bytes of a download so far, for a progress bar. */
export interface DownloadProgress {
  /** The file being written. */
  readonly file: string;
  /** Bytes received in this call, over all files. */
  readonly bytes: number;
  /** Bytes this call has to fetch, as far as known (shards are counted once their index is read). */
  readonly total: number;
}

/** Options of {@link resolveModel}. */
export interface ResolveModelOptions {
  /** A local folder, or a hub id `ORG/NAME`. */
  readonly model: string;
  /** Branch, tag or commit sha of a hub id; default `main`. */
  readonly revision?: string;
  /** Where HF_HUB_CACHE, HF_HOME, HF_ENDPOINT, HF_TOKEN and HF_HUB_OFFLINE are read; default `process.env`. */
  readonly env?: Env;
  readonly onProgress?: (p: DownloadProgress) => void;
  /** Called once per file before it is downloaded (not for cached files). */
  readonly onFile?: (file: string, size: number) => void;
}

/** A hub id that cannot be resolved; the message names the id, the revision and the cache folder looked in. */
export class HubError extends Error {
  constructor(message: string, readonly repoId: string, readonly revision: string, readonly cacheDir: string) {
    super(message);
    this.name = 'HubError';
  }
}

/** huggingface_hub's repo id rule: `[ORG/]NAME`, word characters, `-` and `.`, no `--` or `..`. */
const REPO_ID = /^[\w.-]+\/[\w.-]{1,96}$/;

/**
 * The local folder of a model: a folder stays itself; a hub id `ORG/NAME` (at `revision`) is
 * looked up in the Hugging Face cache, so a cache Python's transformers filled is used as is,
 * without any request. When the cache lacks it and HF_HUB_OFFLINE is not set, the config,
 * the weights (safetensors, else pytorch_model.bin; sharded indexes with their shards) and the
 * tokenizer and preprocessor files the repo has are downloaded with `@huggingface/hub` into the
 * same cache layout, so Python tools see them too.
 *
 * @example
 * const dir = await resolveModel({ model: 'openai/clip-vit-base-patch16' });
 * // ~/.cache/huggingface/hub/models--openai--clip-vit-base-patch16/snapshots/<sha>
 */
export async function resolveModel(options: ResolveModelOptions): Promise<string> {
  const { model } = options;
  const revision = options.revision ?? 'main';
  if (existsSync(model) && statSync(model).isDirectory()) return resolve(model);
  const settings = hubSettings(options.env);
  if (!REPO_ID.test(model) || model.includes('--') || model.includes('..')) {
    const what = existsSync(model) ? 'it is a file' : 'no such directory';
    throw new HubError(`model '${model}' is not a local folder (${what}) and not a Hugging Face hub id (ORG/NAME)`, model, revision, settings.cacheDir);
  }
  const repoDir = repoFolder(settings.cacheDir, model);
  const cached = findCachedRevision(repoDir, revision);
  if ('dir' in cached && cached.missing.length === 0) return cached.dir;
  const lacks = 'dir' in cached ? `its snapshot ${cached.sha} lacks ${cached.missing.join(', ')}` : cached.reason;
  if (settings.offline) {
    throw new HubError(
      `'${model}' is not a local folder, and hub id '${model}' (revision ${revision}) is not in the Hugging Face cache '${settings.cacheDir}' (${lacks}); HF_HUB_OFFLINE is set, so nothing is downloaded: run once online, or pass a model folder`,
      model, revision, settings.cacheDir);
  }
  try {
    return await download(model, revision, repoDir, settings, options);
  } catch (e) {
    throw explain(e, model, revision, settings, lacks);
  }
}

async function download(repoId: string, revision: string, repoDir: string, s: HubSettings, o: ResolveModelOptions): Promise<string> {
  const auth = { hubUrl: s.endpoint, ...(s.token ? { accessToken: s.token } : {}) };
  const info = await modelInfo({ name: repoId, revision, additionalFields: ['sha', 'filePaths'], ...auth });
  const sha = info.sha;
  if (!sha) throw new Error(`the hub gave no commit sha for revision ${revision}`);
  const files = new Set(info.filePaths ?? []);
  const weights = chooseWeights(files);
  if (!files.has('config.json') || !weights) {
    throw new Error(`the repo has no ${!files.has('config.json') ? 'config.json' : `model weights (${WEIGHT_FILES.join(', ')})`}; it holds ${[...files].slice(0, 20).join(', ') || 'no files'}`);
  }
  const snapshot = join(repoDir, 'snapshots', sha);
  const progress = { bytes: 0, total: 0 };
  const fetchFiles = async (paths: string[]) => {
    const todo = paths.filter((p) => !existsSync(join(snapshot, p)));
    if (!todo.length) return;
    const entries = await pathsInfo({ repo: repoId, paths: todo, revision: sha, ...auth });
    const byPath = new Map(entries.map((e) => [e.path, e]));
    for (const p of todo) {
      const e = byPath.get(p);
      if (!e) throw new Error(`the hub lists '${p}' but gives no information on it`);
      progress.total += e.lfs?.size ?? e.size;
    }
    for (const p of todo) {
      const e = byPath.get(p)!;
      const etag = e.lfs?.oid ?? e.oid;
      if (!etag) throw new Error(`the hub gives no etag for '${p}'`);
      const size = e.lfs?.size ?? e.size;
      const blob = join(repoDir, 'blobs', etag);
      mkdirSync(join(repoDir, 'blobs'), { recursive: true });
      if (!existsSync(blob)) {
        o.onFile?.(p, size);
        let file: Blob | null = null;
        await downloadBlob({
          file: p, blob, etag, size,
          open: async (start) => {
            file ??= await downloadFile({ repo: repoId, path: p, revision: sha, xet: false, ...auth });
            if (!file) throw new Error(`'${p}' is not in the repo at ${sha}`);
            return (start === 0 ? file : file.slice(start)).stream() as ReadableStream<Uint8Array>;
          },
          onBytes: (n) => {
            progress.bytes += n;
            o.onProgress?.({ file: p, bytes: progress.bytes, total: progress.total });
          },
          // A status from the hub is final; a cut connection is worth another try.
          retryable: (err) => !(err instanceof HubApiError && err.statusCode < 500),
        });
      }
      linkBlob(join(snapshot, p), blob);
    }
  };
  await fetchFiles(['config.json', weights, ...SIDE_FILES.filter((f) => files.has(f))]);
  if (weights.endsWith('.index.json')) {
    const shards = shardsOf(join(snapshot, weights));
    const absent = shards.filter((f) => !files.has(f));
    if (absent.length) throw new Error(`${weights} lists shard(s) the repo does not have: ${absent.join(', ')}`);
    await fetchFiles(shards);
  }
  writeRef(repoDir, revision, sha);
  return snapshot;
}

/** A HubError naming the id, the revision, the endpoint and the cache folder, with what the hub said. */
function explain(e: unknown, repoId: string, revision: string, s: HubSettings, lacks: string): HubError {
  if (e instanceof HubError) return e;
  const head = `cannot get '${repoId}' (revision ${revision}) from ${s.endpoint}`;
  const tail = `(it is not in the Hugging Face cache '${s.cacheDir}': ${lacks})`;
  let why: string;
  if (e instanceof HubApiError) {
    const said = e.message.replace(/\. URL: .*$/s, '');
    if (e.statusCode === 401 || e.statusCode === 403) {
      why = `the hub answered ${e.statusCode} (${said}): the repo is gated or private (or does not exist); ${s.token ? 'the token given (HF_TOKEN or the saved login) has no access to it' : 'set HF_TOKEN to a token with access'}`;
    } else if (e.statusCode === 404) {
      why = `the hub answered 404 (${said}): no such repo or revision`;
    } else {
      why = `the hub answered ${e.statusCode} (${said})`;
    }
  } else {
    const err = e as Error & { cause?: Error };
    why = err?.cause?.message ? `${err.message} (${err.cause.message})` : String(err?.message ?? e);
  }
  return new HubError(`${head}: ${why} ${tail}`, repoId, revision, s.cacheDir);
}
