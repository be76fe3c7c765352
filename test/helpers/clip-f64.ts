import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from '../../src/io/safetensors.js';

/**
 * A float64 CLIP written from HF's `CLIPModel` definition, independent of setar's ONNX graphs, for
 * parity tests on models no reference file exists for: text features (plain, or LoCoOp's with a
 * context spliced in after the start token, SPEC §9), image features and SeTAR's GL-MCM local
 * features (SPEC §1). Plain loops over Float64Arrays; fine for tiny models only.
 * test/models/locoop/reference-f64.test.ts checks it against clip-tiny-a's OpenAI float64 outputs.
 */

type Mat = Float64Array<ArrayBufferLike>;

interface TowerConfig {
  hidden_size: number;
  num_attention_heads: number;
  num_hidden_layers: number;
  layer_norm_eps?: number;
  hidden_act?: string;
}

export class ClipF64 {
  private readonly w = new Map<string, Mat>();
  readonly text: TowerConfig & { max_position_embeddings: number; eos_token_id?: number };
  readonly vision: TowerConfig & { image_size: number; patch_size: number; num_channels?: number };
  readonly logitScale: number;

  constructor(dir: string) {
    const cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8')) as { text_config: ClipF64['text']; vision_config: ClipF64['vision'] };
    this.text = cfg.text_config;
    this.vision = cfg.vision_config;
    const f = SafetensorsFile.open(join(dir, 'model.safetensors'));
    try {
      for (const name of f.entries.keys()) this.w.set(name, Float64Array.from(f.readFloat32(name)));
    } finally {
      f.close();
    }
    this.logitScale = this.w.get('logit_scale')![0]!;
  }

  private get(name: string): Mat {
    const m = this.w.get(name);
    if (!m) throw new Error(`clip-f64: no tensor '${name}'`);
    return m;
  }

  /** x [rows, in] · Wᵀ (+ b), W [out, in]. */
  private linear(x: Mat, rows: number, name: string, bias = true): Mat {
    const w = this.get(`${name}.weight`);
    const b = bias ? this.get(`${name}.bias`) : null;
    const out = w.length / (x.length / rows);
    const inn = x.length / rows;
    const y = new Float64Array(rows * out);
    for (let r = 0; r < rows; r++) {
      for (let o = 0; o < out; o++) {
        let s = b ? b[o]! : 0;
        for (let i = 0; i < inn; i++) s += x[r * inn + i]! * w[o * inn + i]!;
        y[r * out + o] = s;
      }
    }
    return y;
  }

  private layerNorm(x: Mat, rows: number, name: string, eps: number): Mat {
    const g = this.get(`${name}.weight`);
    const b = this.get(`${name}.bias`);
    const d = g.length;
    const y = new Float64Array(x.length);
    for (let r = 0; r < rows; r++) {
      let m = 0;
      for (let i = 0; i < d; i++) m += x[r * d + i]!;
      m /= d;
      let v = 0;
      for (let i = 0; i < d; i++) v += (x[r * d + i]! - m) ** 2;
      v /= d;
      const s = 1 / Math.sqrt(v + eps);
      for (let i = 0; i < d; i++) y[r * d + i] = (x[r * d + i]! - m) * s * g[i]! + b[i]!;
    }
    return y;
  }

  private act(x: Mat, kind: string): Mat {
    if (kind === 'quick_gelu') return x.map((v) => v / (1 + Math.exp(-1.702 * v)));
    if (kind === 'relu') return x.map((v) => Math.max(0, v));
    throw new Error(`clip-f64: activation ${kind} not implemented`);
  }

  private mlp(x: Mat, rows: number, p: string, act: string): Mat {
    return this.linear(this.act(this.linear(x, rows, `${p}.mlp.fc1`), act), rows, `${p}.mlp.fc2`);
  }

  /** One pre-LN encoder block on h [L, D]. */
  private block(h: Mat, l: number, p: string, c: TowerConfig, causal: boolean): Mat {
    const d = c.hidden_size;
    const heads = c.num_attention_heads;
    const hd = d / heads;
    const eps = c.layer_norm_eps ?? 1e-5;
    const x = this.layerNorm(h, l, `${p}.layer_norm1`, eps);
    const q = this.linear(x, l, `${p}.self_attn.q_proj`);
    const k = this.linear(x, l, `${p}.self_attn.k_proj`);
    const v = this.linear(x, l, `${p}.self_attn.v_proj`);
    const ctx = new Float64Array(l * d);
    const scale = hd ** -0.5;
    for (let hh = 0; hh < heads; hh++) {
      for (let i = 0; i < l; i++) {
        const s = new Float64Array(l).fill(-Infinity);
        let max = -Infinity;
        for (let j = 0; j < (causal ? i + 1 : l); j++) {
          let dot = 0;
          for (let t = 0; t < hd; t++) dot += q[i * d + hh * hd + t]! * scale * k[j * d + hh * hd + t]!;
          s[j] = dot;
          max = Math.max(max, dot);
        }
        let sum = 0;
        for (let j = 0; j < l; j++) {
          s[j] = Number.isFinite(s[j]!) ? Math.exp(s[j]! - max) : 0;
          sum += s[j]!;
        }
        for (let j = 0; j < l; j++) for (let t = 0; t < hd; t++) ctx[i * d + hh * hd + t] += (s[j]! / sum) * v[j * d + hh * hd + t]!;
      }
    }
    const h1 = this.linear(ctx, l, `${p}.self_attn.out_proj`).map((y, i) => y + h[i]!);
    const m = this.mlp(this.layerNorm(h1, l, `${p}.layer_norm2`, eps), l, p, c.hidden_act ?? 'quick_gelu');
    return h1.map((y, i) => y + m[i]!);
  }

  /** Text tower from the hidden states entering layer 0 [L, D] → text_embeds [P], pooled at row `pool`. */
  textFrom(h: Mat, pool: number): Mat {
    const c = this.text;
    const d = c.hidden_size;
    const l = h.length / d;
    for (let i = 0; i < c.num_hidden_layers; i++) h = this.block(h, l, `text_model.encoder.layers.${i}`, c, true);
    const row = this.layerNorm(h.subarray(pool * d, (pool + 1) * d), 1, 'text_model.final_layer_norm', c.layer_norm_eps ?? 1e-5);
    return this.linear(row, 1, 'text_projection', false);
  }

  /** Plain CLIP text features of ids `[start, …, end]` (pooled at the end token, the last id). */
  textEmbeds(ids: readonly number[]): Mat {
    const d = this.text.hidden_size;
    const tok = this.get('text_model.embeddings.token_embedding.weight');
    const pos = this.get('text_model.embeddings.position_embedding.weight');
    const h = new Float64Array(ids.length * d);
    ids.forEach((id, p) => { for (let i = 0; i < d; i++) h[p * d + i] = tok[id * d + i]! + pos[p * d + i]!; });
    return this.textFrom(h, ids.length - 1);
  }

  /**
   * LoCoOp text features (SPEC §9) of ids `[start, t1 … tk, end]` already cut to fit, with the raw
   * context `ctx` [n, D]: `[emb(start)+pos0, ctx_1+pos1, …, ctx_n+pos_n, emb(t1)+pos_{n+1}, …]`,
   * pooled at the end token's position + n.
   */
  locoopTextEmbeds(ids: readonly number[], ctx: Float32Array, n: number): Mat {
    const d = this.text.hidden_size;
    const tok = this.get('text_model.embeddings.token_embedding.weight');
    const pos = this.get('text_model.embeddings.position_embedding.weight');
    const rows: number[][] = [];
    rows.push(Array.from(tok.subarray(ids[0]! * d, (ids[0]! + 1) * d)));
    for (let k = 0; k < n; k++) rows.push(Array.from(ctx.subarray(k * d, (k + 1) * d)));
    for (const id of ids.slice(1)) rows.push(Array.from(tok.subarray(id * d, (id + 1) * d)));
    const h = new Float64Array(rows.length * d);
    rows.forEach((r, p) => { for (let i = 0; i < d; i++) h[p * d + i] = r[i]! + pos[p * d + i]!; });
    return this.textFrom(h, rows.length - 1);
  }

  /** One image's pixel_values [3, S, S] → `image_embeds` [P] and GL-MCM `image_embeds_local` [grid², P]. */
  imageEmbeds(px: Float32Array): { global: Mat; local: Mat } {
    const c = this.vision;
    const d = c.hidden_size;
    const s = c.image_size;
    const ps = c.patch_size;
    const ch = c.num_channels ?? 3;
    const g = s / ps;
    const eps = c.layer_norm_eps ?? 1e-5;
    const conv = this.get('vision_model.embeddings.patch_embedding.weight');
    const cls = this.get('vision_model.embeddings.class_embedding');
    const pos = this.get('vision_model.embeddings.position_embedding.weight');
    const l = 1 + g * g;
    let h: Mat = new Float64Array(l * d);
    for (let i = 0; i < d; i++) h[i] = cls[i]! + pos[i]!;
    for (let py = 0; py < g; py++) {
      for (let pxx = 0; pxx < g; pxx++) {
        const t = 1 + py * g + pxx;
        for (let o = 0; o < d; o++) {
          let acc = 0;
          for (let cc = 0; cc < ch; cc++) for (let y = 0; y < ps; y++) for (let x = 0; x < ps; x++) {
            acc += conv[((o * ch + cc) * ps + y) * ps + x]! * px[(cc * s + py * ps + y) * s + pxx * ps + x]!;
          }
          h[t * d + o] = acc + pos[t * d + o]!;
        }
      }
    }
    h = this.layerNorm(h, l, 'vision_model.pre_layrnorm', eps);
    const last = c.num_hidden_layers - 1;
    for (let i = 0; i < last; i++) h = this.block(h, l, `vision_model.encoder.layers.${i}`, c, false);
    const p = `vision_model.encoder.layers.${last}`;
    // local (SPEC §1): the value path of the last block, from its input, each patch on its own
    const vproj = this.linear(this.linear(this.layerNorm(h, l, `${p}.layer_norm1`, eps), l, `${p}.self_attn.v_proj`), l, `${p}.self_attn.out_proj`);
    let v: Mat = h.map((x, i) => x + vproj[i]!);
    const m = this.mlp(this.layerNorm(v, l, `${p}.layer_norm2`, eps), l, p, c.hidden_act ?? 'quick_gelu');
    v = v.map((x, i) => x + m[i]!);
    const localTokens = this.layerNorm(v.subarray(d), l - 1, 'vision_model.post_layernorm', eps);
    const local = this.linear(localTokens, l - 1, 'visual_projection', false);
    h = this.block(h, l, p, c, false);
    const pooled = this.layerNorm(h.subarray(0, d), 1, 'vision_model.post_layernorm', eps);
    return { global: this.linear(pooled, 1, 'visual_projection', false), local };
  }
}

/** Row-wise cosine × exp(logit_scale): image [P] (or rows of it) against text rows [C, P] → [rows, C]. */
export function logitsF64(image: Mat, text: readonly Mat[], logitScale: number): Float64Array {
  const p = text[0]!.length;
  const rows = image.length / p;
  const norm = (v: Mat, o: number) => Math.sqrt(Array.from(v.subarray(o, o + p)).reduce((a, x) => a + x * x, 0));
  const out = new Float64Array(rows * text.length);
  const scale = Math.exp(logitScale);
  for (let r = 0; r < rows; r++) {
    const ni = norm(image, r * p);
    text.forEach((t, c) => {
      let dot = 0;
      for (let i = 0; i < p; i++) dot += image[r * p + i]! * t[i]!;
      out[r * text.length + c] = (scale * dot) / (ni * norm(t, 0));
    });
  }
  return out;
}

/** SPEC §3 at temperature T: MCM (−max softmax of the global logits) and GL-MCM (+ −max over patches and classes of the local softmax). */
export function mcmScoresF64(global: Float64Array, local: Float64Array, classes: number, temperature: number): { mcm: number; gl_mcm: number } {
  const maxSoftmax = (row: Float64Array) => {
    const m = Math.max(...row);
    let sum = 0;
    for (const x of row) sum += Math.exp((x - m) / temperature);
    return 1 / sum;
  };
  const mcm = -maxSoftmax(global);
  let lm = 0;
  for (let r = 0; r < local.length / classes; r++) lm = Math.max(lm, maxSoftmax(local.subarray(r * classes, (r + 1) * classes)));
  return { mcm, gl_mcm: mcm - lm };
}
