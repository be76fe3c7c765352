import { float, GraphBuilder } from '../../onnx/graph-builder.js';

/**
 * Graph pieces every model family builds with: Linear layers whose weight matrix is a graph input
 * (so SeTAR swaps it for free), optional LoRA adapters, LayerNorm and the activations of HF
 * configs' `hidden_act`.
 */

/** Activations the graphs implement, by their HF `hidden_act` names. */
export const HIDDEN_ACTS = ['quick_gelu', 'gelu', 'gelu_new', 'gelu_pytorch_tanh', 'relu'] as const;
export type HiddenAct = (typeof HIDDEN_ACTS)[number];

/** A Linear layer's shape and bias [out]; its weight matrix is fed at run time (see {@link linear}). */
export interface LinearShape {
  readonly bias?: Float32Array;
  readonly out: number;
  readonly in: number;
}

export interface LayerNormWeights {
  readonly weight: Float32Array;
  readonly bias: Float32Array;
}

/** [out, in] → [in, out]. */
export function transpose(w: Float32Array, out: number, inn: number): Float32Array {
  const t = new Float32Array(w.length);
  for (let o = 0; o < out; o++) {
    const row = o * inn;
    for (let i = 0; i < inn; i++) t[i * out + o] = w[row + i]!;
  }
  return t;
}

/** An initializer named by its HF tensor name, added once per graph (the GL-MCM path reuses the last layer's). */
export function param(g: GraphBuilder, name: string, data: Float32Array, dims: readonly number[]): string {
  return g.has(name) ? name : g.initializer(name, data, dims);
}

/**
 * A LoRA adapter on a linear layer: y = x·W + scaling · (x·A)·B, with A [in, r] and B [r, out]
 * (MatMul layouts of PEFT's lora_A [r, in] and lora_B [out, r]) fed as graph inputs named
 * `<prefix>.lora_A` / `<prefix>.lora_B`, so a trainer can feed them each step and ask for their
 * gradients.
 */
export interface LoraAdapter {
  readonly rank: number;
  readonly scaling: number;
}

/**
 * y = x·W (+ b), x [..., in]. The weight matrix is a graph input named by its HF tensor name
 * (`<prefix>.weight`), fed at every run in MatMul's [in, out] layout (the transpose of HF's
 * [out, in]): replacing a weight is then just feeding another matrix. Measured on this project's
 * 2-core machines, MatMul runs as fast with B fed as with B a pre-packed initializer.
 */
export function linear(g: GraphBuilder, x: string, w: LinearShape, prefix: string, lora?: ReadonlyMap<string, LoraAdapter>): string {
  const name = `${prefix}.weight`;
  const wt = g.has(name) ? name : g.bakeWeights ? g.initializer(name, g.bakeWeights(name), [w.in, w.out]) : g.input(name, 'FLOAT', [w.in, w.out]);
  let y = g.op('MatMul', [x, wt]);
  const adapter = lora?.get(prefix);
  if (adapter) {
    const a = g.has(`${prefix}.lora_A`) ? `${prefix}.lora_A` : g.input(`${prefix}.lora_A`, 'FLOAT', [w.in, adapter.rank]);
    const b = g.has(`${prefix}.lora_B`) ? `${prefix}.lora_B` : g.input(`${prefix}.lora_B`, 'FLOAT', [adapter.rank, w.out]);
    let delta = g.op('MatMul', [g.op('MatMul', [x, a]), b]);
    if (adapter.scaling !== 1) delta = g.op('Mul', [delta, g.constFloat([adapter.scaling])]);
    y = g.op('Add', [y, delta]);
  }
  if (w.bias) y = g.op('Add', [y, param(g, `${prefix}.bias`, w.bias, [w.out])]);
  return y;
}

export function layerNorm(g: GraphBuilder, x: string, w: LayerNormWeights, eps: number, prefix: string): string {
  const n = w.weight.length;
  return g.op('LayerNormalization', [x, param(g, `${prefix}.weight`, w.weight, [n]), param(g, `${prefix}.bias`, w.bias, [n])], {
    axis: -1,
    epsilon: float(eps),
  });
}

/** The configured activation; quick_gelu is x·sigmoid(1.702x) as in OpenAI CLIP. */
export function activation(g: GraphBuilder, x: string, act: HiddenAct): string {
  switch (act) {
    case 'quick_gelu':
      return g.op('Mul', [x, g.op('Sigmoid', [g.op('Mul', [x, g.constFloat([1.702])])])]);
    case 'gelu': {
      // exact erf form: 0.5·x·(1 + erf(x/√2))
      const e = g.op('Erf', [g.op('Mul', [x, g.constFloat([Math.SQRT1_2])])]);
      return g.op('Mul', [g.op('Mul', [x, g.constFloat([0.5])]), g.op('Add', [e, g.constFloat([1])])]);
    }
    case 'gelu_new':
    case 'gelu_pytorch_tanh': {
      // 0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))
      const x3 = g.op('Mul', [g.op('Mul', [x, x]), x]);
      const inner = g.op('Mul', [g.op('Add', [x, g.op('Mul', [x3, g.constFloat([0.044715])])]), g.constFloat([Math.sqrt(2 / Math.PI)])]);
      return g.op('Mul', [g.op('Mul', [x, g.constFloat([0.5])]), g.op('Add', [g.op('Tanh', [inner]), g.constFloat([1])])]);
    }
    case 'relu':
      return g.op('Relu', [x]);
  }
}

