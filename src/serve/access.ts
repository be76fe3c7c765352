/**
 * Who may use `setar serve`: the API key (`Authorization: Bearer KEY`), the origins whose pages
 * may post to it (CORS), and the rule that a server reachable from other machines has a key.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import type { IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import { isIP } from 'node:net';
import { HttpError } from './http.js';

/** Options of {@link AccessPolicy}. */
export interface AccessOptions {
  /** The key `Authorization: Bearer KEY` must carry on protected routes; absent: no authentication. */
  readonly apiKey?: string;
  /** Origins (`https://app.example.com`, or `*`) whose pages may call the API from a browser. */
  readonly corsOrigins?: readonly string[];
}

const digest = (s: string) => createHash('sha256').update(s, 'utf8').digest();

/** Methods and request headers a cross-origin page may use, answered to its preflight. */
const CORS_METHODS = 'GET, HEAD, POST';
const CORS_HEADERS = 'Authorization, Content-Type';

/**
 * The API key check and the cross-origin rule.
 *
 * A browser may send a multipart or raw POST to any server, loopback included, from any page
 * (multipart/form-data is a CORS-safelisted type, so there is no preflight): the server must refuse
 * it itself. A request is same-origin when its `Origin` names the host it was sent to (the scheme
 * is not compared: TLS may end at a proxy); a request without `Origin` comes from no browser page
 * (curl, SDKs); any other origin must be listed in `corsOrigins`.
 */
export class AccessPolicy {
  private readonly key: Buffer | null;
  private readonly origins: ReadonlySet<string>;

  constructor(o: AccessOptions = {}) {
    if (o.apiKey !== undefined && o.apiKey.trim() === '') throw new RangeError('--api-key must not be empty');
    this.key = o.apiKey === undefined ? null : digest(o.apiKey);
    for (const origin of o.corsOrigins ?? []) {
      if (origin === '*') continue;
      let parsed: URL | null = null;
      try {
        parsed = new URL(origin);
      } catch { /* reported below */ }
      if (!parsed || parsed.origin !== origin) throw new RangeError(`--cors-origin must be an origin such as https://app.example.com (scheme, host and port only) or *, got '${origin}'`);
    }
    this.origins = new Set(o.corsOrigins ?? []);
  }

  /** Whether requests must carry the key. */
  get keyRequired(): boolean {
    return this.key !== null;
  }

  /**
   * Throws 401 unless the request carries `Authorization: Bearer KEY` (or no key is set). The
   * comparison is of SHA-256 digests with timingSafeEqual: its time depends on neither the key
   * nor how much of it a guess gets right.
   */
  authenticate(req: IncomingMessage): void {
    if (!this.key) return;
    const m = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(req.headers.authorization ?? '');
    const ok = m !== null && timingSafeEqual(digest(m[1]!), this.key);
    if (!ok) {
      throw new HttpError(401, req.headers.authorization ? 'wrong API key' : 'this server needs an API key: send the header Authorization: Bearer KEY', { 'WWW-Authenticate': 'Bearer' });
    }
  }

  /** The request's `Origin` when it is another origin than the server's own, else null. */
  crossOrigin(req: IncomingMessage): string | null {
    const origin = req.headers.origin;
    if (origin === undefined) return null;
    let host: string | null = null;
    try {
      host = new URL(origin).host;
    } catch { /* "null" and other opaque origins are cross-origin */ }
    return host !== null && host.toLowerCase() === (req.headers.host ?? '').toLowerCase() ? null : origin;
  }

  /** Whether `origin` may call the API from a browser. */
  allows(origin: string): boolean {
    return this.origins.has('*') || this.origins.has(origin);
  }

  /**
   * The CORS headers for a response to `req` (empty for same-origin requests and origins not
   * allowed, whose pages then cannot read the response).
   */
  corsHeaders(req: IncomingMessage): OutgoingHttpHeaders {
    const origin = this.crossOrigin(req);
    if (origin === null || !this.allows(origin)) return {};
    return { 'Access-Control-Allow-Origin': origin, Vary: 'Origin' };
  }

  /** Refuses (403) a cross-origin request that changes or costs something, unless its origin is allowed. */
  checkCrossOrigin(req: IncomingMessage): void {
    const origin = this.crossOrigin(req);
    if (origin !== null && !this.allows(origin)) {
      throw new HttpError(403, `cross-origin request from ${origin} refused; start the server with --cors-origin ${origin} to allow that page`);
    }
  }

  /** The answer to a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`) from an allowed origin. */
  preflightHeaders(req: IncomingMessage): OutgoingHttpHeaders {
    this.checkCrossOrigin(req);
    return { ...this.corsHeaders(req), 'Access-Control-Allow-Methods': CORS_METHODS, 'Access-Control-Allow-Headers': CORS_HEADERS, 'Access-Control-Max-Age': '600' };
  }
}

function isLoopbackAddress(address: string): boolean {
  if (isIP(address) === 4) return address.startsWith('127.');
  const a = address.toLowerCase();
  return a === '::1' || /^::ffff:127\./.test(a);
}

/** Whether `host` (an address or a name) reaches only this machine: every address it resolves to is loopback. */
export async function isLoopbackHost(host: string): Promise<boolean> {
  const h = host.replace(/^\[(.*)\]$/, '$1');
  if (isIP(h)) return isLoopbackAddress(h);
  try {
    const all = await lookup(h, { all: true });
    return all.length > 0 && all.every((a) => isLoopbackAddress(a.address));
  } catch {
    return false;
  }
}

/**
 * Refuses to serve on an address other machines can reach without an API key: the detector would
 * be open to the network. `insecureNoAuth` (`--insecure-no-auth`) allows it; `warn` then says so.
 */
export async function checkBindSafety(host: string, o: { apiKey?: string; insecureNoAuth?: boolean; warn?: (line: string) => void }): Promise<void> {
  if (o.apiKey !== undefined || (await isLoopbackHost(host))) return;
  if (!o.insecureNoAuth) {
    throw new Error(`refusing to serve on ${host} without authentication: it is reachable from other machines. Give --api-key KEY (or set SETAR_API_KEY), or pass --insecure-no-auth to serve it open`);
  }
  o.warn?.(`warning: serving on ${host} with no API key (--insecure-no-auth): anyone who can reach this address can use the detector and download the model`);
}
