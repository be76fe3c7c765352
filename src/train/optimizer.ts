/** One trainable tensor and its optimiser state. */
export interface Param {
  readonly name: string;
  readonly value: Float32Array;
  /** Weight decay applies (not to biases and LayerNorm weights, as the reference's param groups). */
  readonly decay: boolean;
}

/** SGD options (PyTorch's `torch.optim.SGD` without dampening or Nesterov). */
export interface SgdOptions {
  readonly momentum: number;
  readonly weightDecay: number;
}

/**
 * SGD with momentum and decoupled-from-nothing (L2) weight decay, exactly PyTorch's update:
 * `g = grad + wd·p` (decayed params only); `buf = g` on the first step, else `buf = m·buf + g`;
 * `p -= lr·buf`. Computed in float64 per element, stored in float32 like PyTorch's float32 params.
 */
export class Sgd {
  private readonly buffers = new Map<string, Float32Array>();

  constructor(readonly params: readonly Param[], readonly options: SgdOptions) {}

  step(grads: ReadonlyMap<string, Float32Array>, lr: number): void {
    const { momentum, weightDecay } = this.options;
    for (const p of this.params) {
      const g = grads.get(p.name);
      if (!g) throw new Error(`no gradient for parameter '${p.name}'`);
      if (g.length !== p.value.length) throw new RangeError(`gradient of '${p.name}' has ${g.length} values, the parameter ${p.value.length}`);
      const wd = p.decay ? weightDecay : 0;
      let buf = this.buffers.get(p.name);
      const first = !buf;
      if (!buf) {
        buf = new Float32Array(p.value.length);
        this.buffers.set(p.name, buf);
      }
      const v = p.value;
      for (let i = 0; i < v.length; i++) {
        const d = g[i]! + wd * v[i]!;
        const b = momentum === 0 ? d : first ? d : momentum * buf[i]! + d;
        buf[i] = b;
        v[i] = v[i]! - lr * b;
      }
    }
  }

  /** Momentum buffers, for checkpoints. */
  state(): Map<string, Float32Array> {
    return new Map(this.buffers);
  }

  loadState(state: ReadonlyMap<string, Float32Array>): void {
    this.buffers.clear();
    for (const [k, v] of state) this.buffers.set(k, Float32Array.from(v));
  }
}

/** AdamW options (PyTorch's `torch.optim.AdamW`). */
export interface AdamWOptions {
  readonly beta1: number;
  readonly beta2: number;
  readonly eps: number;
  readonly weightDecay: number;
}

/**
 * AdamW, PyTorch's update: `p −= lr·wd·p` (decayed params), then Adam with bias correction.
 * Used to train the demo CLIP from scratch, where plain SGD is too slow to converge.
 */
export class AdamW {
  private readonly m = new Map<string, Float32Array>();
  private readonly v = new Map<string, Float32Array>();
  private t = 0;

  constructor(readonly params: readonly Param[], readonly options: AdamWOptions) {}

  step(grads: ReadonlyMap<string, Float32Array>, lr: number): void {
    const { beta1, beta2, eps, weightDecay } = this.options;
    this.t++;
    const c1 = 1 - beta1 ** this.t;
    const c2 = 1 - beta2 ** this.t;
    for (const p of this.params) {
      const g = grads.get(p.name);
      if (!g) throw new Error(`no gradient for parameter '${p.name}'`);
      let m = this.m.get(p.name);
      let v = this.v.get(p.name);
      if (!m || !v) {
        m = new Float32Array(p.value.length);
        v = new Float32Array(p.value.length);
        this.m.set(p.name, m);
        this.v.set(p.name, v);
      }
      const decay = p.decay ? 1 - lr * weightDecay : 1;
      const x = p.value;
      for (let i = 0; i < x.length; i++) {
        const gi = g[i]!;
        const mi = beta1 * m[i]! + (1 - beta1) * gi;
        const vi = beta2 * v[i]! + (1 - beta2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        x[i] = x[i]! * decay - (lr * (mi / c1)) / (Math.sqrt(vi / c2) + eps);
      }
    }
  }
}
