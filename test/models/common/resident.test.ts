import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { SafetensorsFile } from '../../../src/io/safetensors.js';
import { disposeHiddenStates, type HiddenStates } from '../../../src/models/common/hidden-states.js';
import { SessionCache } from '../../../src/models/common/session-cache.js';
import { ClipModel } from '../../../src/models/clip/model.js';
import { clipFamily } from '../../../src/models/clip/family.js';
import { SwinV2Model } from '../../../src/models/swinv2/model.js';
import { GraphBuilder } from '../../../src/onnx/graph-builder.js';
import { isDeviceTensor, type DeviceTensor } from '../../../src/runtime/device-tensor.js';
import { Session } from '../../../src/runtime/session.js';
import { TransferCounter } from '../../../src/runtime/transfers.js';
import { Evaluator } from '../../../src/search/evaluator.js';
import { tensor, type Tensor } from '../../../src/tensor.js';
import { fixture } from '../../helpers/fixtures.js';
import { webgpuOrSkip } from '../../helpers/webgpu.js';

const CLIP = fixture('clip-tiny-a');
const SWIN = fixture('swinv2-tiny-a');

function referencePixels(dir: string): Tensor<'float32'> {
  const f = SafetensorsFile.open(join(dir, 'reference.safetensors'));
  try {
    return tensor('float32', f.readFloat32('pixel_values'), f.entry('pixel_values').shape, 'pixel_values');
  } finally {
    f.close();
  }
}

/** Neg, its output kept on the device when asked. */
function negGraph(): Uint8Array {
  const g = new GraphBuilder('neg');
  g.output(g.op('Neg', [g.input('x', 'FLOAT', [2])]), 'y', 'FLOAT', [2]);
  return g.toBytes();
}
const x = tensor('float32', Float32Array.of(1, 2), [2]);

describe('resident weights, hidden states and their sessions', () => {
  it('SessionCache keeps the few sessions used last and releases the others (cpu)', async () => {
    const cache = new SessionCache(2);
    const made: Session[] = [];
    const create = (name: string) => async () => {
      const s = await Session.create(negGraph(), name);
      made.push(s);
      return s;
    };
    const a = await cache.get('a', create('a'));
    await cache.get('b', create('b'));
    assert.equal(await cache.get('a', create('a again')), a); // a is now the most recent
    await cache.get('c', create('c'));                         // evicts b, the least recently used
    await new Promise((r) => setImmediate(r));
    await assert.rejects(made[1]!.run({ x }));                 // b was released
    assert.deepEqual([...(await a.run({ x })).y!.data], [-1, -2]);
    await cache.release();
  });

  it('SessionCache never releases a session whose device outputs are alive; it does once they are disposed', async (t) => {
    const eps = await webgpuOrSkip(t);
    if (!eps) return;
    const cache = new SessionCache(1);
    const a = await cache.get('a', () => Session.create(negGraph(), 'a', { executionProviders: eps, deviceOutputs: ['y'] }));
    const y = (await a.runResident({ x })).y as DeviceTensor;
    assert.equal(a.liveOutputs, 1);
    await cache.get('b', () => Session.create(negGraph(), 'b', { executionProviders: eps }));
    await new Promise((r) => setImmediate(r));
    assert.equal(y.disposed, false, 'the cached output survives');
    y.dispose();
    assert.equal(a.liveOutputs, 0);
    await cache.get('c', () => Session.create(negGraph(), 'c', { executionProviders: eps })); // now a goes
    await new Promise((r) => setImmediate(r));
    await assert.rejects(a.runResident({ x }));
    await cache.release();
  });

  it('webgpu: weights go up once; replacing one uploads that matrix alone (CLIP and Swin V2, the shared SwappableModel)', async (t) => {
    const eps = await webgpuOrSkip(t);
    if (!eps) return;
    const transfers = new TransferCounter();
    const clip = await ClipModel.load(CLIP, { executionProviders: eps, transfers });
    const swin = await SwinV2Model.load(SWIN, { executionProviders: eps, transfers });
    try {
      for (const [model, px, run, fc1] of [
        [clip, referencePixels(CLIP), (p: Tensor<'float32'>) => clip.encodeImages(p), 'vision_model.encoder.layers.1.mlp.fc1.weight'],
        [swin, referencePixels(SWIN), (p: Tensor<'float32'>) => swin.classify(p), 'swinv2.encoder.layers.3.blocks.1.intermediate.dense.weight'],
      ] as const) {
        await run(px);
        const first = transfers.take();
        const weights = model.deviceWeightBytes;
        assert.ok(weights > 0);
        assert.equal(first.uploaded, weights + px.data.byteLength, 'first run: every weight matrix once, and the pixels');
        await run(px);
        const again = transfers.take();
        assert.equal(again.uploaded, px.data.byteLength, 'later runs: the pixels only');
        assert.equal(again.downloaded, first.downloaded);
        const w = model.getWeight(fc1);
        model.setWeight(fc1, w.map((v) => v * 0.5));
        await run(px);
        assert.equal(transfers.take().uploaded, px.data.byteLength + w.byteLength, 'after setWeight: the pixels and that one matrix');
        assert.equal(model.deviceWeightBytes, weights);
      }
    } finally {
      await clip.dispose();
      await swin.dispose();
    }
  });

  it('webgpu: the search keeps hidden states on the device and frees those a decision makes stale, and all on release', async (t) => {
    const eps = await webgpuOrSkip(t);
    if (!eps) return;
    const model = await clipFamily.load(CLIP, { executionProviders: eps });
    const subject = await model.searchSubject(['a', 'b'], { template: 'a photo of a {}' });
    // the real towers, recording every hidden state they hand out
    const seen: HiddenStates[] = [];
    const record = <T extends HiddenStates>(h: T): T => (seen.push(h), h);
    const towers = subject.towers.map((tw) => ({ ...tw, embed: async (p: Tensor<'float32'> | null) => record(await tw.embed(p)), run: async (h: HiddenStates, a: number, b: number) => record(await tw.run(h, a, b)) }));
    const px = referencePixels(CLIP);
    async function* batches() {
      yield { pixels: px, labels: Int32Array.from({ length: px.dims[0]! }, (_, i) => i % 2) };
    }
    const evaluator = await Evaluator.create({ ...subject, towers }, batches(), { objective: { kind: 'loss', metric: 'locoop_loss' }, topK: 1, lambda: 0.1, usePredLabel: false, temperature: 100, recallLevel: 0.95 }, true);
    try {
      const slot = { tower: 'visual', weight: 'W_up', layer: 1 } as const;
      await evaluator.beginSlot(slot);
      await evaluator.measure(slot);
      const vision = seen.filter((h) => h.chunks.some(isDeviceTensor));
      assert.equal(vision.length, 2, 'the images\' entry and the states entering layer 1, on the device');
      const [entry, layer1] = vision as [HiddenStates, HiddenStates];
      const disposed = (h: HiddenStates) => h.chunks.every((c) => (c as DeviceTensor).disposed);
      evaluator.decided({ tower: 'visual', weight: 'W_up', layer: 1 });
      assert.equal(disposed(layer1), false, 'a decision at layer 1 leaves the states entering it');
      evaluator.decided({ tower: 'visual', weight: 'W_up', layer: 0 });
      assert.equal(disposed(layer1), true, 'a decision at layer 0 makes them stale: freed');
      assert.equal(disposed(entry), false);
      evaluator.release();
      assert.equal(disposed(entry), true);
    } finally {
      evaluator.release();
      await subject.release();
      await model.dispose();
      for (const h of seen) disposeHiddenStates(h);
    }
  });
});
