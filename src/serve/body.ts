/**
 * Reading an upload, with an exit for every way it can go wrong: the body too large (declared or
 * counted), the client gone mid-body, a malformed or cut multipart form. Every stream involved —
 * the request, busboy and busboy's file streams — has an 'error' listener, so no upload can raise
 * an unhandled 'error' event (which would end the process and every request in it). The promise
 * always settles; after a failure the rest of the body is drained unread, so the connection stays
 * usable for the response.
 */
import type { IncomingMessage } from 'node:http';
import busboy from 'busboy';
import { HttpError } from './http.js';

/** An uploaded image: its bytes and a name for error messages. */
export interface Upload {
  readonly data: Buffer;
  readonly name: string;
}

/** Room for a multipart form's boundaries and part headers besides the file: the whole body may be `max` + this. */
export const MULTIPART_OVERHEAD = 64 * 1024;

const tooLarge = (max: number) => new HttpError(413, `upload larger than ${max} bytes`);

/** Settles once; on failure, stops listening for the body and drains what is left of it. */
function settleOnce<T>(req: IncomingMessage, resolve: (v: T) => void, reject: (e: unknown) => void) {
  let settled = false;
  return {
    get settled() {
      return settled;
    },
    ok(v: T) {
      if (settled) return;
      settled = true;
      resolve(v);
    },
    fail(e: HttpError, cleanup?: () => void) {
      if (settled) return;
      settled = true;
      cleanup?.();
      if (!req.destroyed) req.resume();
      reject(e);
    },
  };
}

/** The client went away before the body was complete (the response cannot reach it; this frees the request). */
const cutOff = () => new HttpError(400, 'the upload was cut off before the end of its body');

/** A raw body (`Content-Type: image/*`), at most `max` bytes. */
export function readRawBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = settleOnce(req, resolve, reject);
    const chunks: Buffer[] = [];
    let size = 0;
    const onData = (c: Buffer) => {
      size += c.length;
      if (size > max) s.fail(tooLarge(max), () => { req.off('data', onData); chunks.length = 0; });
      else chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () => s.ok(Buffer.concat(chunks)));
    req.on('error', () => s.fail(cutOff()));
    req.on('close', () => { if (!req.complete) s.fail(cutOff()); });
  });
}

/**
 * The file field `image` of a multipart form: at most `max` bytes, and the whole body at most
 * `max` + {@link MULTIPART_OVERHEAD} (other fields and files count too; a form may hold at most 16
 * parts). Other file fields are read and dropped.
 */
export function readMultipartImage(req: IncomingMessage, max: number): Promise<Upload> {
  return new Promise((resolve, reject) => {
    const s = settleOnce<Upload>(req, resolve, reject);
    let bb: busboy.Busboy;
    try {
      bb = busboy({ headers: req.headers, limits: { fileSize: max, files: 4, fields: 12, parts: 16, fieldSize: MULTIPART_OVERHEAD, headerPairs: 32 } });
    } catch (e) {
      s.fail(new HttpError(400, `bad multipart request: ${(e as Error).message}`));
      return;
    }
    const stop = () => req.unpipe(bb);
    const bad = (e: Error) => s.fail(new HttpError(400, `bad multipart request: ${e.message}`), stop);
    let image: Upload | null = null;
    let total = 0;
    const cap = max + MULTIPART_OVERHEAD;
    req.on('data', (c: Buffer) => {
      total += c.length;
      if (total > cap) s.fail(new HttpError(413, `multipart body larger than ${cap} bytes (an image of at most ${max} bytes and ${MULTIPART_OVERHEAD} bytes of form)`), stop);
    });
    req.on('error', () => s.fail(cutOff(), stop));
    req.on('close', () => { if (!req.complete) s.fail(cutOff(), stop); });
    bb.on('file', (field, stream, info) => {
      // A form cut before its closing boundary makes busboy fail the open file stream
      // ("Unexpected end of form"): without this listener that error would end the process.
      stream.on('error', bad);
      if (field !== 'image' || image || s.settled) {
        stream.resume();
        return;
      }
      const chunks: Buffer[] = [];
      stream.on('data', (c: Buffer) => chunks.push(c));
      stream.on('limit', () => s.fail(tooLarge(max), stop));
      stream.on('end', () => {
        if (!stream.truncated) image = { data: Buffer.concat(chunks), name: info.filename || 'upload' };
      });
    });
    bb.on('partsLimit', () => s.fail(new HttpError(413, 'multipart form has more than 16 parts'), stop));
    bb.on('error', bad);
    bb.on('close', () => {
      if (image) s.ok(image);
      else s.fail(new HttpError(400, 'multipart upload has no file field "image"'));
    });
    req.pipe(bb);
  });
}
