import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { float } from '../../src/onnx/graph-builder.js';
import { constOf, gradCheck } from './gradcheck.js';

/** MatMul, Gemm (float64) and Conv (float32: ORT's CPU Conv and ConvTranspose are float-only). */

describe('autodiff: MatMul (float64)', () => {
  const cases: Array<[string, number[], number[]]> = [
    ['2-D × 2-D', [3, 4], [4, 5]],
    ['3-D × 2-D weight', [2, 3, 4], [4, 5]],
    ['4-D × 2-D weight', [2, 2, 3, 4], [4, 2]],
    ['batched 4-D × 4-D', [2, 3, 4, 5], [2, 3, 5, 2]],
    ['broadcast batch dims [2, 1, 3, 4] × [3, 4, 5]', [2, 1, 3, 4], [3, 4, 5]],
    ['2-D × 3-D (left operand broadcast)', [3, 4], [2, 4, 5]],
  ];
  for (const [what, sa, sb] of cases) {
    it(what, async () => {
      await gradCheck(`matmul_${what}`, { dtype: 'DOUBLE', inputs: [{ name: 'a', shape: sa }, { name: 'b', shape: sb }], build: (g, v) => g.op('MatMul', [v.a!, v.b!]) });
    });
  }

  it('N-D × 2-D with symbolic batch dims ([batch, tokens, 4] fed as [2, 3, 4])', async () => {
    await gradCheck('matmul_symbolic', {
      dtype: 'DOUBLE',
      inputs: [{ name: 'a', shape: [2, 3, 4], declared: ['batch', 'tokens', 4] }, { name: 'b', shape: [4, 5] }],
      build: (g, v) => g.op('MatMul', [v.a!, v.b!]),
    });
  });

  it('LoRA delta x·A·B·s: the weight gradients are Gemms with no Transpose of a weight', async () => {
    const { graph } = await gradCheck('lora', {
      dtype: 'DOUBLE',
      inputs: [{ name: 'x', shape: [2, 3, 6], wrt: false }, { name: 'A', shape: [6, 2] }, { name: 'B', shape: [2, 5] }],
      build: (g, v) => g.op('Mul', [g.op('MatMul', [g.op('MatMul', [v.x!, v.A!]), v.B!]), constOf(g, 'DOUBLE', [0.5])]),
    });
    const nodes = graph.nodeViews();
    assert.equal(nodes.filter((n) => n.opType === 'Transpose').length, 0);
    assert.equal(nodes.filter((n) => n.opType === 'Gemm').length, 3); // dA, dB, and d(x·A) for dA
  });
});

describe('autodiff: Gemm (float64)', () => {
  for (const transA of [0, 1]) {
    for (const transB of [0, 1]) {
      it(`transA = ${transA}, transB = ${transB}, alpha 0.7, beta 1.3, C broadcast [5]`, async () => {
        await gradCheck(`gemm_${transA}${transB}`, {
          dtype: 'DOUBLE',
          inputs: [{ name: 'a', shape: transA ? [4, 3] : [3, 4] }, { name: 'b', shape: transB ? [5, 4] : [4, 5] }, { name: 'c', shape: [5] }],
          build: (g, v) => g.op('Gemm', [v.a!, v.b!, v.c!], { transA, transB, alpha: float(0.7), beta: float(1.3) }),
        });
      });
    }
  }
});

describe('autodiff: Conv, groups = 1 (float32)', () => {
  it('patch embedding: stride = kernel, no padding (the GEMM path), with bias', async () => {
    const { graph } = await gradCheck('conv_patch', {
      dtype: 'FLOAT',
      inputs: [{ name: 'x', shape: [2, 3, 6, 4] }, { name: 'w', shape: [5, 3, 2, 2] }, { name: 'b', shape: [5] }],
      build: (g, v) => g.op('Conv', [v.x!, v.w!, v.b!], { kernel_shape: [2, 2], strides: [2, 2] }),
    });
    assert.ok(!graph.nodeViews().some((n) => n.opType === 'ConvTranspose'));
  });

  it('patch embedding with a symbolic batch dim', async () => {
    await gradCheck('conv_patch_symbolic', {
      dtype: 'FLOAT',
      inputs: [{ name: 'x', shape: [2, 2, 4, 4], declared: ['batch', 2, 4, 4] }, { name: 'w', shape: [3, 2, 2, 2] }],
      build: (g, v) => g.op('Conv', [v.x!, v.w!], { strides: [2, 2] }),
    });
  });

  const general: Array<[string, Record<string, number[]>, number[], number[]]> = [
    ['3×3, stride 1, pads 1', { pads: [1, 1, 1, 1] }, [1, 2, 5, 5], [3, 2, 3, 3]],
    ['3×3, stride 2, pads 1 (even input: a row no output reads)', { strides: [2, 2], pads: [1, 1, 1, 1] }, [2, 2, 6, 6], [3, 2, 3, 3]],
    ['3×2, strides (2, 1), asymmetric pads, dilation 2', { strides: [2, 1], pads: [1, 0, 2, 1], dilations: [2, 2] }, [1, 2, 7, 6], [2, 2, 3, 2]],
    ['stride ≠ kernel, no pads, stride 3 over 8 (remainder 2)', { strides: [3, 3] }, [1, 1, 8, 8], [2, 1, 2, 2]],
  ];
  for (const [what, attrs, sx, sw] of general) {
    it(what, async () => {
      await gradCheck(`conv_${what}`, {
        dtype: 'FLOAT',
        inputs: [{ name: 'x', shape: sx }, { name: 'w', shape: sw }, { name: 'b', shape: [sw[0]!] }],
        build: (g, v) => g.op('Conv', [v.x!, v.w!, v.b!], attrs),
      });
    });
  }

  it('input size known only at run time (runtime output padding)', async () => {
    await gradCheck('conv_runtime', {
      dtype: 'FLOAT',
      inputs: [{ name: 'x', shape: [1, 2, 6, 7], declared: [1, 2, 'h', 'w'] }, { name: 'w', shape: [2, 2, 3, 3] }],
      build: (g, v) => g.op('Conv', [v.x!, v.w!], { strides: [2, 2], pads: [1, 1, 1, 1] }),
    });
  });

  it('group ≠ 1 is an error naming the node', async () => {
    await assert.rejects(
      gradCheck('conv_group', {
        dtype: 'FLOAT',
        inputs: [{ name: 'x', shape: [1, 2, 4, 4] }, { name: 'w', shape: [2, 1, 3, 3] }],
        build: (g, v) => g.op('Conv', [v.x!, v.w!], { group: 2 }),
      }),
      /Conv node 'n_Conv_\d+'.*group = 1 only/,
    );
  });
});
