import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { SwinV2Model } from '../../src/models/swinv2/model.js';
import { SeededRng } from '../../src/rng.js';
import { Session } from '../../src/runtime/session.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { setarAdapters as swinSetarAdapters } from '../../src/train/adapters.js';
import { swinTrainGraph } from '../../src/models/swinv2/train-graph.js';
import { fixture } from '../helpers/fixtures.js';

describe('Swin V2 training graph', () => {
  it('gradients of the LoRA-adapted LoCoOp loss match central finite differences (float32, directional)', async () => {
    const model = await SwinV2Model.load(fixture('swinv2-tiny-a'), { threads: 1 });
    const ref = SafetensorsFile.open(fixture('swinv2-tiny-a', 'reference.safetensors'));
    try {
      const adapters = await swinSetarAdapters(model, [['visual', 'W_up', [3, 1], 0.25], ['visual', 'W_q', [1, 0], 0.25]]);
      for (const a of adapters) model.setWeight(`${a.prefix}.weight`, a.base);
      const graph = swinTrainGraph(model.config, model.tensorSource, new Map(adapters.map((a) => [a.prefix, { rank: a.rank, scaling: a.scaling }])), { topK: 3, lambda: 0.5, usePredLabel: false });
      const session = await Session.create(graph.bytes, 'swin_train', { threads: 1 });
      const px = ref.read('pixel_values');
      const b = px.shape[0]!;
      const labels = 7;
      const onehot = new Float32Array(b * labels);
      for (let i = 0; i < b; i++) onehot[i * labels + (i % labels)] = 1;
      const feeds: Record<string, Tensor> = { pixel_values: tensor('float32', px.data as Float32Array, px.shape), labels_onehot: tensor('float32', onehot, [b, labels]) };
      for (const n of session.inputNames) if (n.endsWith('.weight')) feeds[n] = model.matrix(n);
      const setParams = () => {
        for (const a of adapters) {
          feeds[`${a.prefix}.lora_A`] = tensor('float32', a.A, [a.shape[1], a.rank]);
          feeds[`${a.prefix}.lora_B`] = tensor('float32', a.B, [a.rank, a.shape[0]]);
        }
      };
      setParams();
      const out = await session.run(feeds);
      const rng = new SeededRng(11);
      for (const a of adapters) {
        for (const which of ['A', 'B'] as const) {
          const name = `${a.prefix}.lora_${which}`;
          const p = a[which];
          const grad = out[graph.gradients.get(name)!]!.data as Float32Array;
          const d = Float32Array.from(p, () => rng.next() * 2 - 1);
          const norm = Math.sqrt(d.reduce((x, y) => x + y * y, 0));
          d.forEach((x, i) => (d[i] = x / norm));
          const analytic = grad.reduce((acc, g, i) => acc + g * d[i]!, 0);
          const orig = Float32Array.from(p);
          const lossAt = async (eps: number) => {
            for (let i = 0; i < p.length; i++) p[i] = orig[i]! + eps * d[i]!;
            setParams();
            return ((await session.run(feeds)).locoop_loss!.data as Float32Array)[0]!;
          };
          const eps = 1e-2;
          const numeric = ((await lossAt(eps)) - (await lossAt(-eps))) / (2 * eps);
          p.set(orig);
          setParams();
          // same float32 reasoning as the CLIP check: loss resolution ~1e-5 in the quotient, curvature ε²·f'''/6 small
          assert.ok(Math.abs(analytic - numeric) <= 1e-3 + 2e-2 * Math.abs(numeric), `${name}: analytic ${analytic} vs numeric ${numeric}`);
        }
      }
      await session.release();
    } finally {
      ref.close();
      await model.dispose();
    }
  });
});
