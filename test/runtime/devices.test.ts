import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { builtinDevices, ortReason } from '../../src/runtime/devices.js';
import { ortBinaryDir, Session } from '../../src/runtime/session.js';
import { TransferCounter } from '../../src/runtime/transfers.js';
import { GraphBuilder } from '../../src/onnx/graph-builder.js';
import { tensor } from '../../src/tensor.js';

const devicesModule = fileURLToPath(new URL('../../src/runtime/devices.js', import.meta.url));

/** Resolves devices in a fresh Node process with the given environment; prints one JSON line per request. */
function resolveIn(env: NodeJS.ProcessEnv, requests: string[]): Array<{ ok?: unknown; error?: string }> {
  const script = `const { resolveDevice } = await import(${JSON.stringify(devicesModule)});
for (const r of ${JSON.stringify(requests)}) {
  try { console.log(JSON.stringify({ ok: await resolveDevice(r) })); } catch (e) { console.log(JSON.stringify({ error: e.message })); }
}`;
  const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { env: { ...process.env, ...env }, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  return out.trim().split('\n').map((l) => JSON.parse(l) as { ok?: unknown; error?: string });
}

describe('built-in devices (real ONNX Runtime)', () => {
  it('cpu always resolves', async () => {
    assert.deepEqual(await builtinDevices().resolve('cpu'), { name: 'cpu', executionProviders: ['cpu'], requested: 'cpu' });
  });

  it('cuda without onnxruntime-node\'s CUDA binaries: one error saying what is missing and how to install it', async (t) => {
    if (existsSync(join(ortBinaryDir(), 'libonnxruntime_providers_cuda.so'))) {
      t.skip('onnxruntime-node\'s CUDA provider is installed here');
      return;
    }
    await assert.rejects(builtinDevices().resolve('cuda'), (e: Error) => {
      assert.equal(e.name, 'DeviceUnavailableError');
      assert.match(e.message, /^device 'cuda' is unavailable: onnxruntime-node's CUDA provider is not installed \(libonnxruntime_providers_shared\.so, libonnxruntime_providers_cuda\.so missing from .*bin\/napi-v6\/linux\/x64\)\./);
      assert.match(e.message, /CUDA provider comes from NuGet \(Microsoft\.ML\.OnnxRuntime\.Gpu\.Linux \d+\.\d+\.\d+\) and npm does not fetch it here/);
      // the script itself, run by hand (npm never runs it: allowScripts denies it), with the flag that forces the download
      const script = /`node (\S+) --onnxruntime-node-install`/.exec(e.message)?.[1];
      assert.ok(script && existsSync(script), `the message names onnxruntime-node's install script: ${script}`);
      assert.match(script, /onnxruntime-node\/script\/install\.js$/);
      assert.doesNotMatch(e.message, /npmrc|npm rebuild/);
      assert.match(e.message, /CUDA 12 and cuDNN 9/);
      return true;
    });
  });

  it('webgpu with no Vulkan driver: one error naming the drivers to install; auto falls back to cpu and says why', { skip: process.platform !== 'linux' && 'Vulkan ICD selection by VK_ICD_FILENAMES is Linux-only' }, () => {
    const [webgpu, auto] = resolveIn({ VK_ICD_FILENAMES: '/nonexistent/icd.json', VK_DRIVER_FILES: '/nonexistent/icd.json' }, ['webgpu', 'auto']);
    assert.match(webgpu!.error!, /^device 'webgpu' is unavailable: ONNX Runtime's WebGPU provider could not start: Failed to get a WebGPU adapter: No supported adapters\. Install Vulkan drivers for the GPU: .*mesa-vulkan-drivers ≥ 24 \(Debian bookworm: apt-get install -t bookworm-backports mesa-vulkan-drivers/);
    assert.deepEqual(auto!.ok, {
      name: 'cpu', executionProviders: ['cpu'], requested: 'auto',
      note: "auto: cpu; webgpu unavailable: ONNX Runtime's WebGPU provider could not start: Failed to get a WebGPU adapter: No supported adapters",
    });
  });

  it('webgpu, where a Vulkan device exists, runs a graph with the CPU\'s results and counts the bytes fed and fetched', async (t) => {
    const devices = builtinDevices();
    let eps: readonly string[];
    try {
      eps = (await devices.resolve('webgpu')).executionProviders;
    } catch (e) {
      t.skip(`no WebGPU device here: ${(e as Error).message}`);
      return;
    }
    assert.deepEqual((await devices.resolve('auto')).name, 'webgpu');
    const g = new GraphBuilder('mm');
    g.output(g.op('MatMul', [g.input('x', 'FLOAT', ['b', 3]), g.input('w', 'FLOAT', [3, 2])]), 'y', 'FLOAT', ['b', 2]);
    const feeds = { x: tensor('float32', Float32Array.of(1, 2, 3, 4, 5, 6), [2, 3]), w: tensor('float32', Float32Array.of(1, 0, 0, 1, 1, 1), [3, 2]) };
    const transfers = new TransferCounter();
    const onDevice = await Session.create(g.toBytes(), 'mm', { executionProviders: eps, transfers });
    const onCpu = await Session.create(g.toBytes(), 'mm', { transfers });
    const a = await onDevice.run(feeds);
    const b = await onCpu.run(feeds);
    await onDevice.release();
    await onCpu.release();
    assert.deepEqual([...a.y!.data], [...b.y!.data]); // 4, 5, 10, 11: exact in float32
    // the device run uploads x (24 B) and w (24 B), downloads y (16 B); the CPU run moves nothing
    assert.deepEqual(transfers.take(), { uploaded: 48, downloaded: 16, runs: 1 });
    assert.deepEqual(transfers.take(), { uploaded: 0, downloaded: 0, runs: 0 });
  });
});

describe('ortReason', () => {
  it('keeps ORT\'s sentence, drops the source location and the assertion', () => {
    const m = '/onnxruntime_src/onnxruntime/core/providers/webgpu/webgpu_context.cc:136 onnxruntime::webgpu::WebGpuContext::Initialize(const onnxruntime::webgpu::WebGpuContextConfig&)::<lambda()> adapter_result.status == wgpu::RequestAdapterStatus::Success was false. Failed to get a WebGPU adapter: No supported adapters\n';
    assert.equal(ortReason(m), 'Failed to get a WebGPU adapter: No supported adapters');
    assert.equal(ortReason('OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library'), 'OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library');
  });
});
