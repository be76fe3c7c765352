// Wraps onnxruntime-node's InferenceSession.create so every session the project creates is profiled
// (enableProfiling) and can be asked for its profile file; used by placements.mjs.
import * as ort from 'onnxruntime-node';
import { mkdirSync } from 'node:fs';
export const created = [];
const orig = ort.InferenceSession.create;
export function installProfiling(dir, extra = {}) {
  mkdirSync(dir, { recursive: true });
  ort.InferenceSession.create = async function (bytes, options) {
    const name = `s${created.length}`;
    const s = await orig.call(ort.InferenceSession, bytes, { ...options, ...extra, enableProfiling: true, profileFilePrefix: `${dir}/${name}` });
    const entry = { name, session: s, file: null };
    created.push(entry);
    const release = s.release.bind(s);
    s.release = async () => { if (!entry.file) entry.file = s.endProfiling?.() ?? null; return release(); };
    return s;
  };
}
