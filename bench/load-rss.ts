// Child process of the ViT-B/16 benchmark: loads a checkpoint, compiles every session, and
// reports the process's peak resident memory, so that nothing else the benchmark did counts.
import { ClipModel } from '../src/models/clip/model.js';

const dir = process.argv[2];
if (!dir) throw new Error('usage: load-rss.js MODEL_DIR');
const before = process.resourceUsage().maxRSS * 1024;
const t0 = performance.now();
const model = await ClipModel.load(dir);
await model.prepare();
const seconds = (performance.now() - t0) / 1000;
const peak = process.resourceUsage().maxRSS * 1024;
const after = process.memoryUsage().rss;
await model.dispose();
process.stdout.write(JSON.stringify({ before, peak, after, seconds }) + '\n');
