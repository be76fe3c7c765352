import { GraphBuilder } from '../../onnx/graph-builder.js';
import { DeviceMemory } from '../../runtime/device-memory.js';
import { disposeResident, type Resident } from '../../runtime/device-tensor.js';
import { Session, type SessionOptions } from '../../runtime/session.js';
import { shapeString, tensor, type Tensor } from '../../tensor.js';

/** L2-normalises each row of a [N, P] (or [..., P]) float tensor, in float64 then rounded to float32. */
export function l2Normalize(x: Tensor<'float32'>): Tensor<'float32'> {
  const p = x.dims[x.dims.length - 1]!;
  const out = new Float32Array(x.data.length);
  for (let r = 0; r < x.data.length / p; r++) {
    let s = 0;
    for (let i = 0; i < p; i++) s += x.data[r * p + i]! ** 2;
    const inv = 1 / Math.sqrt(s);
    for (let i = 0; i < p; i++) out[r * p + i] = x.data[r * p + i]! * inv;
  }
  return tensor('float32', out, x.dims);
}

/**
 * CLIP's logits: exp(logit_scale) · cos(image, text), computed in float64.
 * @param image [..., P] image features (global [N, P] or local [N, g, g, P])
 * @param text [T, P] text features
 * @param logitScale the stored log value (ln 100 for OpenAI CLIP)
 * @returns [..., T] float64
 */
export function clipLogits(image: Tensor<'float32'>, text: Tensor<'float32'>, logitScale: number): Tensor<'float64'> {
  const p = image.dims[image.dims.length - 1]!;
  const [t, pt] = text.dims as [number, number];
  if (pt !== p) throw new RangeError(`clipLogits: image features ${shapeString(image.dims)} and text features ${shapeString(text.dims)} differ in width`);
  const scale = Math.exp(logitScale);
  const rows = image.data.length / p;
  const tn = new Float64Array(t * p);
  for (let j = 0; j < t; j++) {
    let s = 0;
    for (let i = 0; i < p; i++) s += text.data[j * p + i]! ** 2;
    const inv = 1 / Math.sqrt(s);
    for (let i = 0; i < p; i++) tn[j * p + i] = text.data[j * p + i]! * inv;
  }
  const out = new Float64Array(rows * t);
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let i = 0; i < p; i++) s += image.data[r * p + i]! ** 2;
    const inv = scale / Math.sqrt(s);
    for (let j = 0; j < t; j++) {
      let dot = 0;
      for (let i = 0; i < p; i++) dot += image.data[r * p + i]! * tn[j * p + i]!;
      out[r * t + j] = dot * inv;
    }
  }
  return tensor('float64', out, [...image.dims.slice(0, -1), t]);
}

/**
 * CLIP's logits on ONNX Runtime: image features are normalised in the graph and multiplied by
 * the prompts' normalised features scaled by exp(logit_scale), one MatMul per batch — for
 * GL-MCM's local logits that is 196 × 1,000 dot products per ImageNet image, too many for a JS
 * loop. The prompts' features are an input, so a search can swap them per candidate; on webgpu
 * they are uploaded once per {@link setText} and stay on the device.
 */
export class ClipLogitsHead {
  private text!: Resident;
  classes = 0;

  private constructor(private readonly session: Session, private readonly logitScale: number, private readonly memory: DeviceMemory) {}

  /** @param text `text_embeds` [C, P] of the class prompts; @param logitScale the stored log value. */
  static async create(text: Tensor<'float32'>, logitScale: number, options: SessionOptions = {}): Promise<ClipLogitsHead> {
    const p = text.dims[1]!;
    const g = new GraphBuilder('clip_logits');
    const x = g.input('image_features', 'FLOAT', ['rows', p]);
    const t = g.input('text_features', 'FLOAT', [p, 'classes']);
    const norm = g.op('Sqrt', [g.op('ReduceSum', [g.op('Mul', [x, x]), g.constInt64([-1])], { keepdims: 1 })]);
    g.output(g.op('MatMul', [g.op('Div', [x, norm]), t]), 'logits', 'FLOAT', ['rows', 'classes']);
    const head = new ClipLogitsHead(await Session.create(g.toBytes(), 'clip_logits', { memoryArena: true, ...options }), logitScale, new DeviceMemory(options));
    await head.setText(text);
    return head;
  }

  /** Replaces the prompts' features (`text_embeds` [C, P]). */
  async setText(text: Tensor<'float32'>): Promise<void> {
    const [c, p] = text.dims as [number, number];
    const n = l2Normalize(text).data;
    const scale = Math.exp(this.logitScale);
    const w = new Float32Array(p * c); // [P, C]: scaled, normalised prompts as MatMul's B
    for (let j = 0; j < c; j++) for (let i = 0; i < p; i++) w[i * c + j] = n[j * p + i]! * scale;
    const old = this.text;
    this.text = await this.memory.upload(tensor('float32', w, [p, c], 'text_features'));
    this.classes = c;
    if (old) disposeResident(old);
  }

  /** Image features [..., P] → logits [..., C] (float32). */
  async logits(features: Tensor<'float32'>): Promise<Tensor<'float32'>> {
    const p = features.dims[features.dims.length - 1]!;
    const rows = features.data.length / p;
    const out = await this.session.run({ image_features: tensor('float32', features.data, [rows, p], 'image_features'), text_features: this.text });
    return tensor('float32', out.logits!.data as Float32Array, [...features.dims.slice(0, -1), this.classes], 'logits');
  }

  async release(): Promise<void> {
    await this.session.release();
    await this.memory.release();
  }
}
