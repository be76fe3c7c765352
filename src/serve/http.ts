import { readFileSync } from 'node:fs';
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';

/** A client-visible failure: its status, a message for the JSON body, and extra headers (Allow, Retry-After…). */
export class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly headers: OutgoingHttpHeaders = {}) {
    super(message);
    this.name = 'HttpError';
  }
}

/**
 * Sends a JSON value (or a string of `type`). Node leaves the body out of a HEAD response and keeps
 * its Content-Length, so GET handlers answer HEAD as they are.
 */
export function send(res: ServerResponse, status: number, body: unknown, type = 'application/json', headers: OutgoingHttpHeaders = {}): void {
  const text = type === 'application/json' ? JSON.stringify(body) : String(body);
  res.writeHead(status, {
    ...headers,
    'Content-Type': type === 'application/json' ? 'application/json; charset=utf-8' : type,
    'Content-Length': Buffer.byteLength(text),
    'Cache-Control': 'no-store',
  });
  res.end(text);
}

/** A static file, read on each request (they are small or cached by the OS; no-store so a rebuilt bundle is seen). */
export function sendFile(res: ServerResponse, path: string, type: string, headers: OutgoingHttpHeaders = {}): void {
  let body: Buffer;
  try {
    body = readFileSync(path);
  } catch {
    throw new HttpError(404, `not available: ${path.split(/[\\/]/).pop()}${type.startsWith('text/javascript') ? ' (run `npm run build` to build the browser client)' : ''}`);
  }
  res.writeHead(200, { ...headers, 'Content-Type': type, 'Content-Length': body.length, 'Cache-Control': 'no-store', 'X-Content-Type-Options': 'nosniff' });
  res.end(body);
}
