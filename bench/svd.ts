/**
 * Times `svd` on CLIP ViT-B/16 weight shapes (one core, float64).
 *
 *   node --import tsx bench/svd.ts            # from the repository root
 *   node dist/bench/svd.js                    # after `npm run build`
 *
 * Matrices: i.i.d. Gaussian (well conditioned) and a Gaussian with columns scaled from 1 down to
 * 1/100 (a spread spectrum like a trained layer's, which exercises the Jacobi refinement).
 */
import { svd } from '../src/lowrank/svd.js';
import { mulberry32 } from '../src/rng.js';


function gaussianMatrix(rows: number, cols: number, seed: number, spread: number): Float32Array {
  const rand = mulberry32(seed);
  const a = new Float32Array(rows * cols);
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < cols; j++) {
      const g = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
      a[i * cols + j] = g * spread ** (-j / Math.max(1, cols - 1));
    }
  }
  return a;
}

function residuals(a: Float32Array, f: ReturnType<typeof svd>, samples: number): { recon: number; orthoU: number } {
  // Sampled checks, so the benchmark stays fast: a few entries of A − U S Vᵀ and of UᵀU − I.
  const { u, s, vh, k, rows, cols } = f;
  const rand = mulberry32(7);
  let recon = 0;
  let orthoU = 0;
  for (let t = 0; t < samples; t++) {
    const i = Math.floor(rand() * rows);
    const j = Math.floor(rand() * cols);
    let x = 0;
    for (let l = 0; l < k; l++) x += u[i * k + l] * s[l] * vh[l * cols + j];
    recon = Math.max(recon, Math.abs(x - a[i * cols + j]) / s[0]);
    const p = Math.floor(rand() * k);
    const q = Math.floor(rand() * k);
    let y = 0;
    for (let r = 0; r < rows; r++) y += u[r * k + p] * u[r * k + q];
    orthoU = Math.max(orthoU, Math.abs(y - (p === q ? 1 : 0)));
  }
  return { recon, orthoU };
}

const cases: Array<[rows: number, cols: number, spread: number]> = [
  [3072, 768, 1],
  [3072, 768, 100],
  [768, 3072, 1],
  [768, 768, 1],
  [768, 768, 100],
];
// Warm-up, so that the first timing does not include JIT compilation.
svd(gaussianMatrix(256, 128, 1, 10), 256, 128);
for (const [rows, cols, spread] of cases) {
  const a = gaussianMatrix(rows, cols, rows * 31 + cols, spread);
  const t0 = performance.now();
  const f = svd(a, rows, cols);
  const seconds = (performance.now() - t0) / 1000;
  const { recon, orthoU } = residuals(a, f, 200);
  const label = `${rows}x${cols}${spread === 1 ? ' gaussian' : ` columns scaled 1..1/${spread}`}`;
  console.log(
    `${label.padEnd(34)} ${seconds.toFixed(2)} s   s_max/s_min ${(f.s[0] / f.s[f.k - 1]).toFixed(1).padStart(7)}` +
      `   sampled |A-USVh|/s_max ${recon.toExponential(1)}   |UtU-I| ${orthoU.toExponential(1)}`,
  );
}
