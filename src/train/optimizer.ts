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
