// Child process of the ViT-B/16 benchmark: loads a checkpoint, compiles every session, reads
// every weight, and reports the process's peak resident memory (VmHWM, which exec resets, unlike
// getrusage's maxrss that a child inherits from its parent on Linux).
import { readFileSync } from 'node:fs';
import { ClipModel } from '../src/models/clip/model.js';

function statusBytes(key: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

const dir = process.argv[2];
if (!dir) throw new Error('usage: load-rss.js MODEL_DIR');
const before = statusBytes('VmHWM');
const t0 = performance.now();
const model = await ClipModel.load(dir);
await model.prepare();
const seconds = (performance.now() - t0) / 1000;
const peak = statusBytes('VmHWM');
const after = statusBytes('VmRSS');
await model.dispose();
process.stdout.write(JSON.stringify({ before, peak, after, seconds }) + '\n');
