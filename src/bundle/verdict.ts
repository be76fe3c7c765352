/**
 * A bundle's verdict math, shared by the server ({@link Detector.scoreBatch} in bundle.ts) and the
 * browser client (src/web/client.ts): image embeddings → cosine logits against the bundle's text
 * features → every scorer's score, the top classes, the OOD flag and the GL-MCM patch map.
 *
 * Pure TypeScript (no node:*, no onnxruntime): esbuild bundles it for the browser. Dot products,
 * norms and softmaxes are evaluated in float64; logits are stored as float32 (as the server always
 * did), so the two paths differ only by what their ONNX runtimes return for the embeddings.
 */
import { computeScores, SCORER_NAMES } from '../ood/scores.js';

/** One image's verdict, as `POST /v1/score` returns it. */
export interface Verdict {
  readonly label: string;
  /**
   * The five most probable classes with their classification probability: the softmax of the
   * logits (CLIP's already include exp(logit_scale)), as `setar classify` reports it — not the
   * score's tempered softmax.
   */
  readonly top: readonly { readonly label: string; readonly prob: number }[];
  /** Every scorer's score (lower = more in-distribution). */
  readonly scores: Readonly<Record<string, number>>;
  /** The bundle's scorer: the one the threshold belongs to. */
  readonly scorer: string;
  /** That scorer's score, `scores[scorer]`. */
  readonly score: number;
  /** `score > threshold`. */
  readonly ood: boolean;
  readonly threshold: number;
  /** grid x grid: each patch's −max local probability at the score temperature (GL-MCM's local evidence). */
  readonly patch_map: readonly (readonly number[])[];
  /** grid x grid: each patch's highest class probability (softmax of its logits, as `top`), in [1/C, 1]. */
  readonly patch_probability: readonly (readonly number[])[];
}

/** What the verdict needs from the bundle manifest (threshold absent → never OOD). */
export interface VerdictManifest {
  readonly labels: readonly string[];
  readonly scorer: string;
  readonly temperature: number;
  readonly grid: number;
  readonly threshold?: number;
}

/** The bundle's text side: text_features [C, P] (L2-normalised) and exp(logit_scale). */
export interface TextSide {
  readonly text: Float32Array;
  readonly scale: number;
}

/** rows x P features → rows x C logits: scale · (f / |f|) · text_j, in float64, stored as float32. */
export function cosineLogits(feat: Float32Array, rows: number, t: TextSide, c: number): Float32Array {
  const p = feat.length / rows;
  const r = new Float32Array(rows * c);
  for (let i = 0; i < rows; i++) {
    let n = 0;
    for (let k = 0; k < p; k++) n += feat[i * p + k]! ** 2;
    n = Math.sqrt(n);
    for (let j = 0; j < c; j++) {
      let d = 0;
      for (let k = 0; k < p; k++) d += feat[i * p + k]! * t.text[j * p + k]!;
      r[i * c + j] = (t.scale * d) / n;
    }
  }
  return r;
}

/** Softmax of row / t, max-shifted, in float64. */
export function softmax(row: ArrayLike<number>, t: number): number[] {
  let mx = -Infinity;
  for (let i = 0; i < row.length; i++) mx = Math.max(mx, row[i]! / t);
  const e = Array.from(row, (x) => Math.exp(x / t - mx));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
}

/**
 * The encoder's outputs for b images (image_embeds [b, P], image_embeds_local [b, g, g, P]) →
 * one verdict per image.
 */
export function verdictsFromEmbeddings(
  embeds: { readonly global: Float32Array; readonly local: Float32Array },
  b: number,
  t: TextSide,
  m: VerdictManifest,
): Verdict[] {
  const c = m.labels.length;
  const g2 = m.grid * m.grid;
  return verdictsFromLogits({ global: cosineLogits(embeds.global, b, t, c), local: cosineLogits(embeds.local, b * g2, t, c) }, b, m);
}

/**
 * Logits for b images (global [b, C], local [b, g, g, C], float32) → one verdict per image: the
 * CLIP path after its cosine logits, and a classifier bundle's outputs (Swin V2) as given.
 */
export function verdictsFromLogits(
  logits: { readonly global: Float32Array; readonly local: Float32Array },
  b: number,
  m: VerdictManifest,
): Verdict[] {
  const c = m.labels.length;
  const g2 = m.grid * m.grid;
  const global = { data: logits.global, dims: [b, c] };
  const local = { data: logits.local, dims: [b, g2, c] };
  const scores: Record<string, Float64Array> = {};
  for (const s of SCORER_NAMES) scores[s] = computeScores(s, { global, local }, m.temperature);
  return Array.from({ length: b }, (_, i) => {
    const row = global.data.subarray(i * c, (i + 1) * c);
    const probs = softmax(row, 1);
    const order = [...probs.keys()].sort((x, y) => probs[y]! - probs[x]! || x - y);
    const patch: number[][] = [];
    const patchProb: number[][] = [];
    for (let r = 0; r < m.grid; r++) {
      patch.push([]);
      patchProb.push([]);
      for (let q = 0; q < m.grid; q++) {
        const at = i * g2 + r * m.grid + q;
        const logits = local.data.subarray(at * c, (at + 1) * c);
        patch[r]!.push(-Math.max(...softmax(logits, m.temperature)));
        patchProb[r]!.push(Math.max(...softmax(logits, 1)));
      }
    }
    const own = Object.fromEntries(SCORER_NAMES.map((s) => [s, scores[s]![i]!]));
    const threshold = m.threshold ?? Infinity;
    const score = own[m.scorer]!;
    return {
      label: m.labels[order[0]!]!, top: order.slice(0, 5).map((j) => ({ label: m.labels[j]!, prob: probs[j]! })), scores: own, scorer: m.scorer, score,
      ood: score > threshold, threshold, patch_map: patch, patch_probability: patchProb,
    };
  });
}
