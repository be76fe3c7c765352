/**
 * Routing by table: each path (or path prefix) maps to its handlers by method. GET handlers also
 * answer HEAD (Node drops the body), OPTIONS lists the methods (and answers CORS preflights), any
 * other method gets 405 with `Allow`. The access rules apply here, before any handler reads a byte
 * of the body: a cross-origin request that is not a GET is refused, a protected route needs the key.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AccessPolicy } from './access.js';
import { HttpError } from './http.js';

/** A handler; `rest` is what follows a prefix route's prefix (the file name). */
export type Handler = (req: IncomingMessage, res: ServerResponse, rest: string) => void | Promise<void>;

/** A route: its handlers by method and whether it needs the API key. */
export interface Route {
  readonly methods: Readonly<Partial<Record<'GET' | 'POST', Handler>>>;
  readonly protected?: boolean;
}

/** The methods a route answers, for `Allow`. */
function allowed(route: Route): string {
  const m = Object.keys(route.methods);
  return [...m, ...(m.includes('GET') ? ['HEAD'] : []), 'OPTIONS'].join(', ');
}

/** Exact routes and prefix routes (`/bundle/` → `/bundle/<file>`). */
export class Router {
  constructor(
    private readonly routes: Readonly<Record<string, Route>>,
    private readonly prefixes: Readonly<Record<string, Route>>,
    private readonly access: AccessPolicy,
  ) {}

  /** The route `path` takes: its key (the metrics' `route` label; `other` when none), the route, the rest of the path. */
  resolve(path: string): { key: string; route?: Route; rest: string } {
    if (Object.hasOwn(this.routes, path)) return { key: path, route: this.routes[path], rest: '' };
    for (const [p, r] of Object.entries(this.prefixes)) if (path.startsWith(p)) return { key: p, route: r, rest: path.slice(p.length) };
    return { key: 'other', rest: '' };
  }

  /** Answers `req`, or throws the HttpError its route, method or access rules call for. */
  async dispatch(req: IncomingMessage, res: ServerResponse, url: URL | null): Promise<void> {
    if (!url) throw new HttpError(400, `bad request target ${JSON.stringify(req.url)}`);
    const { route, rest } = this.resolve(url.pathname);
    if (!route) throw new HttpError(404, `no route ${req.method} ${url.pathname}`);
    for (const [k, v] of Object.entries(this.access.corsHeaders(req))) res.setHeader(k, v as string);
    if (req.method === 'OPTIONS') {
      const preflight = req.headers['access-control-request-method'] !== undefined && req.headers.origin !== undefined;
      res.writeHead(204, { Allow: allowed(route), ...(preflight ? this.access.preflightHeaders(req) : {}) });
      res.end();
      return;
    }
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const handler = method === 'GET' || method === 'POST' ? route.methods[method] : undefined;
    if (!handler) {
      const allow = allowed(route);
      throw new HttpError(405, `${req.method} is not allowed on ${url.pathname}; use ${allow.replace(', OPTIONS', '')}${route.methods.POST ? ' with an image body or a multipart field "image"' : ''}`, { Allow: allow });
    }
    if (method !== 'GET') this.access.checkCrossOrigin(req);
    if (route.protected) this.access.authenticate(req);
    await handler(req, res, rest);
  }
}
