import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * A loopback stand-in for the Hugging Face hub endpoints `@huggingface/hub` calls to download a
 * model, answering as the hub does:
 *   GET  {prefix}/api/models/ORG/NAME/revision/REV      model info: `sha`, `siblings` (modelInfo)
 *   POST {prefix}/api/models/ORG/NAME/paths-info/REV    per path: git `oid`, `size`, `lfs {oid, size}` (pathsInfo)
 *   GET  {prefix}/ORG/NAME/resolve/REV/PATH             a git file: served with ETag "<git sha1>" and
 *        X-Repo-Commit; an LFS file: 302 to the CDN with X-Linked-Etag "<sha256>", X-Linked-Size,
 *        X-Repo-Commit (fileDownloadInfo's probe, then the body, both through WebBlob)
 *   GET  {prefix}/cdn/<sha256>                          LFS content (what the redirect points at)
 * Range requests get 206 with Content-Range. A private repo answers 401 (X-Error-Code GatedRepo)
 * unless `Authorization: Bearer <token>`; unknown repos, revisions and files answer 404 with the
 * hub's X-Error-Code. Every request is logged, so tests count them.
 */

export interface StandInRepo {
  /** Path in the repo → content. */
  readonly files: Readonly<Record<string, Uint8Array>>;
  /** Needs the token. */
  readonly private?: boolean;
  /** Branches and tags besides `main`, all at the one commit. */
  readonly refs?: readonly string[];
}

export interface HubRequest {
  readonly method: string;
  /** Path and query, without the prefix. */
  readonly url: string;
  readonly range?: string;
  readonly authorization?: string;
  status?: number;
}

export interface StandInHubOptions {
  readonly repos: Readonly<Record<string, StandInRepo>>;
  /** The token private repos accept. */
  readonly token?: string;
  /** A path prefix before every endpoint (mirrors serve the hub under one), e.g. `/mirror`. */
  readonly prefix?: string;
  /**
   * Cuts a body response: given the file, the first byte asked for and the bytes to send, the
   * number of bytes to send before the connection is destroyed (undefined: send it all).
   */
  readonly cut?: (r: { file: string; start: number; length: number }) => number | undefined;
}

export interface StandInHub {
  /** Base URL, prefix included: what HF_ENDPOINT is set to. */
  readonly url: string;
  readonly requests: HubRequest[];
  /** The commit sha every revision of `repo` points at. */
  sha(repo: string): string;
  /** sha256 of an LFS file, git blob sha1 of another: the name of its blob in the cache. */
  etag(repo: string, file: string): string;
  close(): Promise<void>;
}

export const isLfs = (path: string) => /\.(safetensors|bin|pth|msgpack|onnx)$/.test(path);

function gitOid(data: Uint8Array): string {
  return createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
}
function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

export async function startStandInHub(options: StandInHubOptions): Promise<StandInHub> {
  const prefix = options.prefix ?? '';
  const commits = new Map<string, string>();
  const cdn = new Map<string, { data: Uint8Array; file: string }>();
  for (const [id, repo] of Object.entries(options.repos)) {
    const h = createHash('sha1').update(id);
    for (const [p, data] of Object.entries(repo.files).sort()) {
      h.update(`${p}\0${gitOid(data)}`);
      if (isLfs(p)) cdn.set(sha256(data), { data, file: p });
    }
    commits.set(id, h.digest('hex'));
  }
  const requests: HubRequest[] = [];

  const json = (res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}) => {
    res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', ...headers });
    res.end(JSON.stringify(body));
  };
  const fail = (res: ServerResponse, status: number, code: string, message: string) => json(res, status, { error: message }, { 'X-Error-Code': code, 'X-Error-Message': message });

  /** The repo and commit a request names, or an answer already sent. */
  const lookup = (req: IncomingMessage, res: ServerResponse, id: string, rev: string): { repo: StandInRepo; sha: string } | null => {
    const repo = options.repos[id];
    if (!repo) {
      fail(res, 404, 'RepoNotFound', 'Repository not found');
      return null;
    }
    if (repo.private && req.headers.authorization !== `Bearer ${options.token}`) {
      fail(res, 401, 'GatedRepo', `Access to model ${id} is restricted. You must have access to it and be authenticated to access it. Please log in.`);
      return null;
    }
    const sha = commits.get(id)!;
    if (rev !== 'main' && rev !== sha && !(repo.refs ?? []).includes(rev)) {
      fail(res, 404, 'RevisionNotFound', `Invalid rev id: ${rev}`);
      return null;
    }
    return { repo, sha };
  };

  const serveBytes = (req: IncomingMessage, res: ServerResponse, data: Uint8Array, file: string, headers: Record<string, string>) => {
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    const start = m ? Number(m[1]) : 0;
    const end = m && m[2] ? Math.min(Number(m[2]), data.length - 1) : data.length - 1;
    const body = data.subarray(start, end + 1);
    res.writeHead(m ? 206 : 200, {
      ...headers, 'Accept-Ranges': 'bytes', 'Content-Length': String(body.length), 'Content-Type': 'application/octet-stream',
      ...(m ? { 'Content-Range': `bytes ${start}-${end}/${data.length}` } : {}),
    });
    if (req.method === 'HEAD') return res.end();
    const keep = options.cut?.({ file, start, length: body.length });
    if (keep === undefined || keep >= body.length) return res.end(body);
    res.write(body.subarray(0, keep), () => res.destroy());
  };

  const server = createServer((req, res) => {
    const url = req.url ?? '/';
    const record: HubRequest = { method: req.method ?? 'GET', url: url.startsWith(prefix) ? url.slice(prefix.length) : url, range: req.headers.range, authorization: req.headers.authorization };
    requests.push(record);
    res.on('finish', () => (record.status = res.statusCode));
    res.on('close', () => (record.status ??= res.statusCode));
    if (!url.startsWith(`${prefix}/`)) return fail(res, 404, 'NotFound', 'not under the prefix');
    const path = decodeURIComponent(record.url.split('?')[0]!);
    let m: RegExpExecArray | null;
    if ((m = /^\/api\/models\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(path)) && req.method === 'GET') {
      const found = lookup(req, res, m[1]!, m[2]!);
      if (!found) return;
      return json(res, 200, {
        _id: found.sha.slice(0, 24), id: m[1], sha: found.sha, private: !!found.repo.private, gated: false, downloads: 0, likes: 0,
        lastModified: '2024-01-01T00:00:00.000Z', pipeline_tag: 'zero-shot-image-classification',
        siblings: Object.keys(found.repo.files).map((rfilename) => ({ rfilename })),
      });
    }
    if ((m = /^\/api\/models\/([^/]+\/[^/]+)\/paths-info\/([^/]+)$/.exec(path)) && req.method === 'POST') {
      const found = lookup(req, res, m[1]!, m[2]!);
      if (!found) return;
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as { paths: string[] };
        json(res, 200, body.paths.filter((p) => p in found.repo.files).map((p) => {
          const data = found.repo.files[p]!;
          const pointer = `version https://git-lfs.github.com/spec/v1\noid sha256:${sha256(data)}\nsize ${data.length}\n`;
          return isLfs(p)
            ? { type: 'file', path: p, oid: gitOid(Buffer.from(pointer)), size: data.length, lfs: { oid: sha256(data), size: data.length, pointerSize: pointer.length } }
            : { type: 'file', path: p, oid: gitOid(data), size: data.length };
        }));
      });
      return;
    }
    if ((m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(path)) && (req.method === 'GET' || req.method === 'HEAD')) {
      const found = lookup(req, res, m[1]!, m[2]!);
      if (!found) return;
      const file = m[3]!;
      const data = found.repo.files[file];
      if (!data) return fail(res, 404, 'EntryNotFound', `${file} does not exist on "${m[2]}"`);
      if (isLfs(file)) {
        const oid = sha256(data);
        res.writeHead(302, {
          Location: `${prefix}/cdn/${oid}?X-Amz-Signature=standin`, 'X-Repo-Commit': found.sha,
          'X-Linked-Etag': `"${oid}"`, 'X-Linked-Size': String(data.length), ETag: `"${gitOid(data)}"`, 'Content-Length': '0',
        });
        return res.end();
      }
      return serveBytes(req, res, data, file, { ETag: `"${gitOid(data)}"`, 'X-Repo-Commit': found.sha });
    }
    if ((m = /^\/cdn\/([0-9a-f]{64})$/.exec(path)) && (req.method === 'GET' || req.method === 'HEAD')) {
      const blob = cdn.get(m[1]!);
      if (!blob) return fail(res, 404, 'EntryNotFound', 'no such object');
      return serveBytes(req, res, blob.data, blob.file, { ETag: `"${m[1]}"` });
    }
    fail(res, 404, 'NotFound', `no endpoint ${req.method} ${path}`);
  });
  await new Promise<void>((ok) => server.listen(0, '127.0.0.1', ok));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}${prefix}`,
    requests,
    sha: (repo) => commits.get(repo)!,
    etag: (repo, file) => {
      const data = options.repos[repo]!.files[file]!;
      return isLfs(file) ? sha256(data) : gitOid(data);
    },
    close: () => new Promise<void>((ok) => {
      server.closeAllConnections();
      server.close(() => ok());
    }),
  };
}
