// `npm run bench:search`: the SeTAR search (visual_text, W_up, ratios 0 / 0.2 / 0.4, LoCoOp loss)
// on a random-weight model with the exact ViT-B/16 architecture, cached (the default) vs
// `cache: false` (every candidate recomputes both towers from the images, like the reference).
//
// Prints the SVD warm-up on its own line (the disk cache is filled before timing, so neither mode
// pays for SVDs), then for each mode: wall seconds, the speed-up, `result.stats`, whether the chosen
// `lora_settings` agree, the largest relative difference of `locoop_loss` over every (step, ratio)
// candidate, and peak RSS. Each search runs in its own child process (this script re-invoked with
// `--child MODE MODEL_DIR IMAGES_DIR OUT_DIR`), so each mode's peak RSS (VmHWM) is its own. Memory
// growth per validation image is computed from what the cached search keeps per image and measured
// as (peak RSS with 48 images − peak RSS with 16) / 32.
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { clipWeightName } from '../src/models/clip/weights.js';
import { getSvd } from '../src/lowrank/svd-cache.js';
import { ClipModel } from '../src/models/clip/model.js';
import { mulberry32, VIT_B16_CONFIG, writeRandomClip } from '../src/models/clip/random.js';
import { defaultThreads } from '../src/runtime/session.js';
import { resolveSearchConfig } from '../src/search/config.js';
import { runSearch } from '../src/search/greedy.js';

const here = fileURLToPath(new URL('.', import.meta.url));
const repo = resolve(here, here.includes('/dist/') ? '../..' : '..');
const shared = process.env.SETAR_SHARED ?? resolve(repo, '..', 'shared');
const MB = 1024 * 1024;
const CLASSES = 16;
const RATIOS = [0, 0.2, 0.4];
const TOP_K = 5;

function statusBytes(key: 'VmHWM' | 'VmRSS'): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : NaN;
}

/** What a child reports (one JSON line on stdout, prefixed by {@link MARK}). */
interface ChildReport {
  mode: 'cached' | 'nocache';
  images: number;
  seconds: number;
  loadSeconds: number;
  visualStepSeconds: number;
  textStepSeconds: number;
  stats: { visionLayerEvals: number; textLayerEvals: number; candidatesEvaluated: number; candidatesFromCache: number };
  lora_settings: unknown[];
  candidates: { step: number; ratio: number; locoop_loss: number }[];
  rssBeforeSearch: number;
  peakRss: number;
}
const MARK = 'SETAR_BENCH_CHILD ';

// ---- child: one search, in its own process ---------------------------------------------------

async function child(mode: 'cached' | 'nocache', modelDir: string, imagesDir: string, outDir: string): Promise<void> {
  const config = resolveSearchConfig(null, {
    model: modelDir, id: `bench=${imagesDir}`, candiRatios: RATIOS, locoopTopK: TOP_K, out: outDir, ...(mode === 'nocache' ? { cache: false } : {}),
  });
  const rssBeforeSearch = statusBytes('VmRSS');
  const stepSeconds = { visual: 0, text: 0 };
  let stepStart = 0;
  let stepTower: 'visual' | 'text' = 'visual';
  let searchStart = 0;
  const t0 = performance.now();
  const result = await runSearch(config, {
    onPhase: (p) => {
      if (p === 'search') searchStart = performance.now();
    },
    onStepStart: (_step, _total, label) => {
      stepStart = performance.now();
      stepTower = label.startsWith('text') ? 'text' : 'visual';
    },
    onStepEnd: () => {
      stepSeconds[stepTower] += (performance.now() - stepStart) / 1000;
    },
  });
  const seconds = (performance.now() - t0) / 1000;
  const report: ChildReport = {
    mode,
    images: NaN, // read back from search.log below
    seconds,
    loadSeconds: (searchStart - t0) / 1000,
    visualStepSeconds: stepSeconds.visual,
    textStepSeconds: stepSeconds.text,
    stats: { ...result.stats },
    lora_settings: result.lora_settings as unknown[],
    candidates: result.candidates.map((c) => ({ step: c.step, ratio: c.ratio, locoop_loss: Number(c.locoop_loss) })),
    rssBeforeSearch,
    peakRss: statusBytes('VmHWM'),
  };
  const log = readFileSync(join(outDir, 'search.log'), 'utf8');
  report.images = Number(/validation: (\d+) images/.exec(log)?.[1] ?? NaN);
  process.stdout.write(MARK + JSON.stringify(report) + '\n');
}

// ---- parent ----------------------------------------------------------------------------------

/** A varied, photo-ish JPEG: per-class pattern (stripes, rings, checks, blobs) and colours, plus noise. */
async function writeJpeg(file: string, cls: number, index: number): Promise<void> {
  const sizes: readonly [number, number][] = [[320, 240], [240, 320], [400, 300], [288, 288], [360, 270]];
  const [w, h] = sizes[(cls + index) % sizes.length]!;
  const r = mulberry32(1000 + cls * 97 + index * 13);
  const base = [r() * 255, r() * 255, r() * 255];
  const accent = [255 - base[0]!, (base[1]! + 128) % 256, r() * 255];
  const freq = 4 + cls + r() * 6;
  const angle = (cls / CLASSES) * Math.PI + r() * 0.5;
  const [cx, cy] = [w * (0.3 + 0.4 * r()), h * (0.3 + 0.4 * r())];
  const pattern = cls % 4;
  const px = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const u = x / w;
      const v = y / h;
      let t: number;
      if (pattern === 0) t = 0.5 + 0.5 * Math.sin(2 * Math.PI * freq * (u * Math.cos(angle) + v * Math.sin(angle)));
      else if (pattern === 1) t = 0.5 + 0.5 * Math.cos(Math.hypot(x - cx, y - cy) / (3 + cls * 0.7));
      else if (pattern === 2) t = (Math.floor(u * freq) + Math.floor(v * freq)) % 2;
      else t = Math.exp(-(((x - cx) / (w * 0.25)) ** 2 + ((y - cy) / (h * 0.2)) ** 2)) + 0.3 * Math.sin(7 * u + 5 * v + cls);
      t = Math.min(1, Math.max(0, t));
      const o = (y * w + x) * 3;
      for (let ch = 0; ch < 3; ch++) {
        const shade = 0.75 + 0.25 * v;
        const val = (base[ch]! * (1 - t) + accent[ch]! * t) * shade + (r() - 0.5) * 24;
        px[o + ch] = Math.max(0, Math.min(255, Math.round(val)));
      }
    }
  }
  await sharp(px, { raw: { width: w, height: h, channels: 3 } }).jpeg({ quality: 88 }).toFile(file);
}

function runChild(mode: 'cached' | 'nocache', modelDir: string, imagesDir: string, outDir: string): { report: ChildReport; processSeconds: number } {
  const t0 = performance.now();
  const stdout = execFileSync(process.execPath, ['--enable-source-maps', fileURLToPath(import.meta.url), '--child', mode, modelDir, imagesDir, outDir], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 64 * MB,
  });
  const processSeconds = (performance.now() - t0) / 1000;
  const line = stdout.split('\n').find((l) => l.startsWith(MARK));
  if (!line) throw new Error(`child ${mode} printed no report; its stdout:\n${stdout}`);
  return { report: JSON.parse(line.slice(MARK.length)) as ChildReport, processSeconds };
}

const mib = (b: number) => `${(b / MB).toFixed(0)} MiB`;

async function parent(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'setar-bench-search-'));
  try {
    console.log(`setar search benchmark — CLIP ViT-B/16 architecture, random weights, float32, ${defaultThreads()} threads`);
    console.log(`search: visual_text, W_up, candi_ratios ${RATIOS.join(' / ')}, locoop_loss (top-K ${TOP_K}), ${CLASSES} classes`);
    const modelDir = join(tmp, 'model');
    writeRandomClip(modelDir, VIT_B16_CONFIG, { seed: 0 });
    for (const f of ['vocab.json', 'merges.txt']) copyFileSync(join(shared, 'fixtures', 'clip-tokenizer', f), join(modelDir, f));
    console.log(`checkpoint: ${mib(statSync(join(modelDir, 'model.safetensors')).size)} of weights`);

    // Validation images: 48 (3 per class); the 16-image set is the first of each class.
    const images16 = join(tmp, 'images16');
    const images48 = join(tmp, 'images48');
    for (let c = 0; c < CLASSES; c++) {
      const cls = `c${String(c).padStart(2, '0')}`;
      mkdirSync(join(images16, cls), { recursive: true });
      mkdirSync(join(images48, cls), { recursive: true });
      for (let j = 0; j < 3; j++) await writeJpeg(join(images48, cls, `img${j}.jpg`), c, j);
      copyFileSync(join(images48, cls, 'img0.jpg'), join(images16, cls, 'img0.jpg'));
    }
    console.log(`validation images: ${CLASSES} (one per class) and ${3 * CLASSES} (three per class), JPEG, 240-400 px a side`);

    // Fresh SVD cache, filled before timing: both modes then read the same factors from disk.
    process.env.SETAR_CACHE_DIR = join(tmp, 'cache');
    const model = await ClipModel.load(modelDir);
    const depth = { visual: model.visionLayerCount, text: model.textLayerCount };
    const t0 = performance.now();
    const shapes = new Map<string, number>();
    for (const tower of ['visual', 'text'] as const) {
      for (let l = 0; l < depth[tower]; l++) {
        const name = clipWeightName([tower, 'W_up', l, 0], depth);
        const shape = model.weightShape(name) as [number, number];
        await getSvd(model.getOriginalWeight(name), shape);
        const k = `${shape[0]}x${shape[1]}`;
        shapes.set(k, (shapes.get(k) ?? 0) + 1);
      }
    }
    const svdSeconds = (performance.now() - t0) / 1000;
    await model.dispose();
    console.log(`\nSVD cache warm-up (not in the timings below): ${svdSeconds.toFixed(1)} s for ${[...shapes].map(([k, n]) => `${n} x ${k}`).join(' + ')} W_up weights`);

    console.log('\nrunning the cached search (16 images) ...');
    const cached = runChild('cached', modelDir, images16, join(tmp, 'out-cached'));
    console.log('running the --no-cache search (16 images) ...');
    const nocache = runChild('nocache', modelDir, images16, join(tmp, 'out-nocache'));
    console.log('running the cached search (48 images) ...');
    const cached48 = runChild('cached', modelDir, images48, join(tmp, 'out-cached-48'));

    const a = cached.report;
    const b = nocache.report;
    console.log(`\nwall time of runSearch (${a.images} images; in a child process each):`);
    for (const [name, r, p] of [['cached  ', a, cached.processSeconds], ['no-cache', b, nocache.processSeconds]] as const) {
      console.log(`  ${name}  ${r.seconds.toFixed(1)} s  (load + validation embeddings ${r.loadSeconds.toFixed(1)} s, visual steps ${r.visualStepSeconds.toFixed(1)} s, text steps ${r.textStepSeconds.toFixed(1)} s; whole child process ${p.toFixed(1)} s)`);
    }
    const speedup = b.seconds / a.seconds;
    console.log(`  speed-up: ${speedup.toFixed(2)}x (target >= 3x) ${speedup >= 3 ? 'OK' : 'BELOW TARGET'}`);

    console.log('\nresult.stats:');
    for (const [name, r] of [['cached  ', a], ['no-cache', b]] as const) {
      const s = r.stats;
      console.log(`  ${name}  vision layer evals ${s.visionLayerEvals}, text layer evals ${s.textLayerEvals}, candidates evaluated ${s.candidatesEvaluated}, from cache ${s.candidatesFromCache}`);
    }

    const same = JSON.stringify(a.lora_settings) === JSON.stringify(b.lora_settings);
    const chosen = (s: unknown[]) => (s as [string, string, number | null, number][]).filter((x) => x[3] !== 0).map((x) => `${x[0]}:${x[2]}=${x[3]}`).join(' ') || '(none)';
    console.log(`\nlora_settings identical: ${same ? 'yes' : 'NO'}`);
    console.log(`  cached   non-zero ratios: ${chosen(a.lora_settings)}`);
    if (!same) console.log(`  no-cache non-zero ratios: ${chosen(b.lora_settings)}`);

    const byKey = new Map(b.candidates.map((c) => [`${c.step}:${c.ratio}`, c.locoop_loss]));
    let maxRel = 0;
    let worst = '';
    let compared = 0;
    for (const c of a.candidates) {
      const other = byKey.get(`${c.step}:${c.ratio}`);
      if (other === undefined) continue;
      compared++;
      const rel = Math.abs(c.locoop_loss - other) / Math.max(Math.abs(c.locoop_loss), Math.abs(other), 1e-30);
      if (rel > maxRel) {
        maxRel = rel;
        worst = `step ${c.step} ratio ${c.ratio}: ${c.locoop_loss} vs ${other}`;
      }
    }
    console.log(`locoop_loss, max relative difference over ${compared} (step, ratio) candidates (${a.candidates.length} cached, ${b.candidates.length} no-cache): ${maxRel.toExponential(2)} (target <= 1e-5) ${maxRel <= 1e-5 ? 'OK' : 'ABOVE TARGET'}${worst ? ` — largest at ${worst}` : ''}`);

    console.log('\npeak RSS (VmHWM of each child; RSS before runSearch in brackets):');
    console.log(`  cached    ${a.images} images: ${mib(a.peakRss)} (${mib(a.rssBeforeSearch)})`);
    console.log(`  no-cache  ${b.images} images: ${mib(b.peakRss)} (${mib(b.rssBeforeSearch)})`);
    console.log(`  cached    ${cached48.report.images} images: ${mib(cached48.report.peakRss)} (${mib(cached48.report.rssBeforeSearch)}); runSearch ${cached48.report.seconds.toFixed(1)} s`);

    // What the cached search keeps per validation image (run-search.ts):
    const v = VIT_B16_CONFIG.vision_config;
    const tokens = (v.image_size / v.patch_size) ** 2 + 1;
    const grid = v.image_size / v.patch_size;
    const f4 = 4;
    const embeddings = tokens * v.hidden_size * f4; // `base`, [N, 197, 768], kept for the whole search
    // hidden states entering every vision layer but the first (kept while N · L · size <= 2 GiB)
    const hidden = (v.num_hidden_layers - 1) * tokens * v.hidden_size * f4;
    const global = VIT_B16_CONFIG.projection_dim * f4; // image_embeds [N, 512]
    const local = grid * grid * VIT_B16_CONFIG.projection_dim * f4; // image_embeds_local [N, 14, 14, 512]
    const steady = embeddings + hidden + global + local;
    // byChunks concatenates chunk outputs into a fresh array: for a moment a candidate's features exist twice.
    const withConcat = steady + global + local;
    const measured = (cached48.report.peakRss - a.peakRss) / (cached48.report.images - a.images);
    console.log('\nmemory per validation image (cached mode):');
    console.log(`  computed: embeddings [N, ${tokens}, ${v.hidden_size}] ${embeddings} B + hidden states entering layers 1..${v.num_hidden_layers - 1} ${hidden} B + image features global [N, 512] ${global} B + local [N, ${grid}, ${grid}, 512] ${local} B`);
    console.log(`            = ${steady} B = ${(steady / MB).toFixed(2)} MiB per image (${(withConcat / MB).toFixed(2)} MiB while a candidate's feature chunks are concatenated)`);
    console.log(`  measured: (peak RSS ${cached48.report.images} images − peak RSS ${a.images} images) / ${cached48.report.images - a.images} = ${measured.toFixed(0)} B = ${(measured / MB).toFixed(2)} MiB per image`);
    console.log(`\npeak RSS of this (parent) process: ${mib(statusBytes('VmHWM'))}`);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

const i = process.argv.indexOf('--child');
if (i >= 0) {
  const [mode, modelDir, imagesDir, outDir] = process.argv.slice(i + 1);
  if ((mode !== 'cached' && mode !== 'nocache') || !modelDir || !imagesDir || !outDir) throw new Error('usage: search.js --child cached|nocache MODEL_DIR IMAGES_DIR OUT_DIR');
  await child(mode, modelDir, imagesDir, outDir);
} else {
  await parent();
}
