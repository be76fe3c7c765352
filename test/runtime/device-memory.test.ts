import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { GraphBuilder } from '../../src/onnx/graph-builder.js';
import { DeviceMemory } from '../../src/runtime/device-memory.js';
import { isDeviceTensor } from '../../src/runtime/device-tensor.js';
import { Session } from '../../src/runtime/session.js';
import { TransferCounter } from '../../src/runtime/transfers.js';
import { tensor, type Tensor } from '../../src/tensor.js';
import { webgpuOrSkip } from '../helpers/webgpu.js';

/** h = x·w (kept on the device when asked), s = Σh (always to the host). */
function graph(): Uint8Array {
  const g = new GraphBuilder('mm');
  const h = g.op('MatMul', [g.input('x', 'FLOAT', ['b', 3]), g.input('w', 'FLOAT', [3, 2])]);
  g.output(h, 'h', 'FLOAT', ['b', 2]);
  g.output(g.op('ReduceSum', [h], { keepdims: 0 }), 's', 'FLOAT', []);
  return g.toBytes();
}

const x = tensor('float32', Float32Array.of(1, 2, 3, 4, 5, 6), [2, 3]);
const w = tensor('float32', Float32Array.of(0.5, -1, 0.25, 2, -0.125, 1), [3, 2]);
// x·w in exact binary fractions: [[0.625, 6], [2.5, 12]], Σ = 21.125
const H = [0.625, 6, 2.5, 12];

describe('DeviceMemory and device-resident outputs', () => {
  describe('on the CPU: the same calls, nothing moves', () => {
    it('upload and download hand back the host tensor; deviceOutputs come back on the host', async () => {
      const transfers = new TransferCounter();
      const mem = new DeviceMemory({ transfers });
      assert.equal(mem.holdsDeviceMemory, false);
      assert.equal(await mem.upload(w), w);
      const s = await Session.create(graph(), 'mm', { deviceOutputs: ['h'], transfers });
      const out = await s.runResident({ x, w });
      assert.equal(isDeviceTensor(out.h!), false);
      assert.deepEqual([...(await mem.download(out.h!)).data], H);
      await s.release();
      await mem.release();
      assert.deepEqual(transfers.take(), { uploaded: 0, downloaded: 0, runs: 0 });
    });
  });

  describe('on webgpu, where a Vulkan device exists', () => {
    it('a weight uploaded once is fed without a copy; an output kept on the device feeds the next run; bytes are counted', async (t) => {
      const eps = await webgpuOrSkip(t);
      if (!eps) return;
      const transfers = new TransferCounter();
      const mem = new DeviceMemory({ executionProviders: eps, transfers });
      const wd = await mem.upload(w);
      assert.ok(isDeviceTensor(wd));
      assert.deepEqual([wd.dtype, [...wd.dims], wd.byteLength], ['float32', [3, 2], 24]);
      assert.deepEqual(transfers.take(), { uploaded: 24, downloaded: 0, runs: 1 });

      const s = await Session.create(graph(), 'mm', { executionProviders: eps, deviceOutputs: ['h'], transfers });
      const out = await s.runResident({ x, w: wd });
      assert.ok(isDeviceTensor(out.h!));
      assert.equal((out.s as Tensor).data[0], 21.125);
      assert.deepEqual(transfers.take(), { uploaded: 24, downloaded: 4, runs: 1 }); // x in, s out; w and h stay

      // h [2, 2] as the next run's x would need [b, 3]: read it back instead, and feed w again
      assert.deepEqual([...(await mem.download(out.h!)).data], H);
      assert.deepEqual(transfers.take(), { uploaded: 0, downloaded: 16, runs: 1 });
      await assert.rejects(s.run({ x, w: wd }), { message: "session 'mm' keeps outputs on the device: use runResident" });

      const plain = await Session.create(graph(), 'mm plain', { executionProviders: eps, transfers });
      const again = await plain.run({ x, w: wd });
      assert.deepEqual([...again.h!.data], H);

      // releasing the producer frees its outputs; feeding one afterwards is an error, not a crash
      const h = out.h!;
      await s.release();
      assert.equal((h as { disposed: boolean }).disposed, true);
      const g2 = new GraphBuilder('neg');
      g2.output(g2.op('Neg', [g2.input('a', 'FLOAT', [2, 2])]), 'b', 'FLOAT', [2, 2]);
      const neg = await Session.create(g2.toBytes(), 'neg', { executionProviders: eps });
      await assert.rejects(neg.run({ a: h }), { message: "session 'neg': input 'a' is h of session 'mm', which was disposed (or its session released)" });

      // a disposed upload likewise; dispose twice is harmless
      (wd as { dispose(): void }).dispose();
      (wd as { dispose(): void }).dispose();
      await assert.rejects(plain.run({ x, w: wd }), /input 'w' is y of session 'upload float32\[2\]', which was disposed/);
      await plain.release();
      await neg.release();
      await mem.release();
    });

    it('deviceOutputs must name outputs of the graph', async (t) => {
      const eps = await webgpuOrSkip(t);
      if (!eps) return;
      await assert.rejects(Session.create(graph(), 'mm', { executionProviders: eps, deviceOutputs: ['hidden'] }), {
        name: 'RangeError', message: "session 'mm': deviceOutputs names 'hidden', which is not an output of the graph",
      });
    });
  });
});
