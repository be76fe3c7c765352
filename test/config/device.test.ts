import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openDevice, resolveDeviceSetting } from '../../src/config/device.js';
import { resolveEvalConfig } from '../../src/eval/config.js';
import { ortBinaryDir } from '../../src/runtime/session.js';
import { resolveSearchConfig } from '../../src/search/config.js';
import { resolveFinetuneConfig } from '../../src/train/config.js';
import { fixture, REPO_ROOT } from '../helpers/fixtures.js';

const MODEL = fixture('clip-tiny-a');
const cudaInstalled = existsSync(join(ortBinaryDir(), 'libonnxruntime_providers_cuda.so'));

function setar(...args: string[]): { code: number; stderr: string } {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'setar.js'), ...args], { encoding: 'utf8' });
  return { code: r.status ?? -1, stderr: r.stderr };
}

describe('--device and the official configs\' "device" key', () => {
  it('the flag wins over the key; the key is read ("cuda" → cuda); default cpu', () => {
    assert.deepEqual(resolveDeviceSetting({}, undefined), { device: 'cpu' });
    assert.deepEqual(resolveDeviceSetting({ device: 'cuda' }, undefined, 'SeTAR.json'), { device: 'cuda', deviceOrigin: 'SeTAR.json: config key "device"' });
    assert.deepEqual(resolveDeviceSetting({ device: 'cuda' }, 'webgpu', 'SeTAR.json'), { device: 'webgpu' });
    const base = { model: MODEL, id: `ID=${MODEL}`, ood: [`O=${MODEL}`], out: '/tmp/x' };
    assert.equal(resolveEvalConfig({ device: 'cuda' }, base).device, 'cuda');
    assert.equal(resolveSearchConfig({ device: 'cuda' }, { ...base, device: 'auto' }).device, 'auto');
    assert.equal(resolveFinetuneConfig({ device: 'cuda' }, { ...base, loraR: 2 }).device, 'cuda');
  });

  it('a bad value names the flag or the file and key, and the allowed values', () => {
    assert.throws(() => resolveDeviceSetting({ device: 'cuda:0' }, undefined, 'my.json'), { name: 'ConfigError', message: 'my.json: config key "device" must be one of cpu, webgpu, cuda, auto, got "cuda:0"' });
    assert.throws(() => resolveEvalConfig(null, { model: MODEL, id: `ID=${MODEL}`, ood: [`O=${MODEL}`], out: '/tmp/x', device: 'gpu' }), { message: '--device must be one of cpu, webgpu, cuda, auto, got "gpu"' });
  });

  it('an official config\'s "cuda" on a machine without CUDA: one error saying what to install, and that --device overrides it', { skip: cudaInstalled && 'onnxruntime-node\'s CUDA provider is installed here' }, async () => {
    await assert.rejects(openDevice(resolveDeviceSetting({ device: 'cuda' }, undefined, 'SeTAR.json')), (e: Error) => {
      assert.equal(e.name, 'DeviceUnavailableError');
      assert.match(e.message, /^device 'cuda' is unavailable: onnxruntime-node's CUDA provider is not installed \(.*\)\. SeTAR\.json: config key "device" asks for it \(--device cpu, webgpu or auto overrides it\)\. onnxruntime-node's CUDA provider comes from NuGet/);
      return true;
    });
  });
});

describe('setar … --device', () => {
  it('--device cuda without onnxruntime-node\'s CUDA binaries fails with one message naming the device and how to get them', { skip: cudaInstalled && 'onnxruntime-node\'s CUDA provider is installed here' }, () => {
    const dir = mkdtempSync(join(tmpdir(), 'setar-device-'));
    try {
      const r = setar('embed', '--device', 'cuda', '--model', MODEL, '--pixel-values', join(MODEL, 'reference.safetensors'), '--out', join(dir, 'x.safetensors'));
      assert.equal(r.code, 1);
      assert.match(r.stderr, /^setar: error: device 'cuda' is unavailable: onnxruntime-node's CUDA provider is not installed .* run `node \S+\/onnxruntime-node\/script\/install\.js --onnxruntime-node-install`/);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.equal(existsSync(join(dir, 'x.safetensors')), false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an unknown device is a usage error listing the four', () => {
    const r = setar('classify', '--device', 'gpu', '--model', MODEL, 'x.jpg');
    assert.equal(r.code, 1);
    assert.match(r.stderr, /--device must be one of cpu, webgpu, cuda, auto, got 'gpu'/);
  });

  it('--device auto says on stderr which device it took', () => {
    const dir = mkdtempSync(join(tmpdir(), 'setar-device-'));
    try {
      const r = setar('embed', '--device', 'auto', '--model', MODEL, '--pixel-values', join(MODEL, 'reference.safetensors'), '--out', join(dir, 'x.safetensors'));
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /^auto: (webgpu|cpu; webgpu unavailable: .+)$/m);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('every command that runs a model takes --device', () => {
    for (const c of ['embed', 'classify', 'eval', 'search', 'finetune', 'bundle', 'serve']) {
      const r = spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'setar.js'), c, '--help'], { encoding: 'utf8' });
      assert.match(r.stdout, /--device <name>\s+where the model runs: cpu \| webgpu/, c);
    }
  });
});
