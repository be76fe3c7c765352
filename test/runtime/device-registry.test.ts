import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DeviceRegistry } from '../../src/runtime/device-registry.js';
import { DeviceUnavailableError, parseDeviceRequest, type Device } from '../../src/runtime/device.js';

/** A device whose init succeeds or fails as told, counting its calls. */
function fake(eps: string[], failure: string | null): Device & { calls: number } {
  const d = {
    executionProviders: eps,
    install: `Install ${eps[0]}.`,
    calls: 0,
    async init() {
      d.calls++;
      await new Promise((r) => setTimeout(r, 5));
      if (failure !== null) throw new Error(failure);
    },
  };
  return d;
}

describe('DeviceRegistry', () => {
  it('resolves a name to its execution providers, initialising it once even when asked concurrently', async () => {
    const r = new DeviceRegistry();
    const gpu = fake(['webgpu'], null);
    r.register('gpu', gpu, 1);
    const [a, b] = await Promise.all([r.resolve('gpu'), r.resolve('gpu')]);
    assert.deepEqual(a, { name: 'gpu', executionProviders: ['webgpu'], requested: 'gpu' });
    assert.deepEqual(b, a);
    await r.resolve('gpu');
    assert.equal(gpu.calls, 1);
  });

  it('an unavailable device is one error naming it, the reason and what to install; the failure is kept', async () => {
    const r = new DeviceRegistry();
    const gpu = fake(['webgpu'], 'no adapter');
    r.register('gpu', gpu, 1);
    await assert.rejects(r.resolve('gpu'), (e: Error) => {
      assert.ok(e instanceof DeviceUnavailableError);
      assert.equal(e.message, "device 'gpu' is unavailable: no adapter. Install webgpu.");
      assert.equal((e as DeviceUnavailableError).device, 'gpu');
      return true;
    });
    await assert.rejects(r.resolve('gpu'), /no adapter/);
    assert.equal(gpu.calls, 1);
  });

  it('auto takes the highest-priority working device, says which and why it passed over others, never tries negative priorities', async () => {
    const r = new DeviceRegistry();
    const cpu = fake(['cpu'], null);
    const gpu = fake(['webgpu'], 'no adapter');
    const cuda = fake(['cuda'], null);
    r.register('cpu', cpu, 0);
    r.register('cuda', cuda, -1);
    r.register('gpu', gpu, 1);
    assert.deepEqual(r.names(), ['gpu', 'cpu', 'cuda']);
    const d = await r.resolve('auto');
    assert.deepEqual(d, { name: 'cpu', executionProviders: ['cpu'], requested: 'auto', note: 'auto: cpu; gpu unavailable: no adapter' });
    assert.equal(cuda.calls, 0);

    const r2 = new DeviceRegistry();
    r2.register('cpu', fake(['cpu'], null), 0);
    r2.register('gpu', fake(['webgpu'], null), 1);
    assert.deepEqual(await r2.resolve('auto'), { name: 'gpu', executionProviders: ['webgpu'], requested: 'auto', note: 'auto: gpu' });
  });

  it('auto with nothing working lists every failure', async () => {
    const r = new DeviceRegistry();
    r.register('a', fake(['x'], 'broken a'), 2);
    r.register('b', fake(['y'], 'broken b'), 1);
    await assert.rejects(r.resolve('auto'), { message: 'auto: no device is available (a unavailable: broken a; b unavailable: broken b)' });
  });

  it('rejects duplicate names, non-integer priorities and unknown devices (listing the known ones)', async () => {
    const r = new DeviceRegistry();
    r.register('cpu', fake(['cpu'], null), 0);
    assert.throws(() => r.register('cpu', fake(['cpu'], null), 3), { message: "device 'cpu' is already registered" });
    assert.throws(() => r.register('x', fake(['x'], null), 0.5), RangeError);
    await assert.rejects(r.resolve('gpu'), { name: 'RangeError', message: "unknown device 'gpu'; known devices: 'cpu', 'auto'" });
  });
});

describe('parseDeviceRequest', () => {
  it('accepts the four spellings, the official configs\' "cuda" among them', () => {
    for (const d of ['cpu', 'webgpu', 'cuda', 'auto']) assert.equal(parseDeviceRequest(d), d);
  });
  it('names the flag or key and the allowed values', () => {
    assert.throws(() => parseDeviceRequest('gpu'), { name: 'RangeError', message: `--device must be one of 'cpu', 'webgpu', 'cuda', 'auto', got "gpu"` });
    assert.throws(() => parseDeviceRequest(0, 'config key "device"'), { message: `config key "device" must be one of 'cpu', 'webgpu', 'cuda', 'auto', got 0` });
  });
});
