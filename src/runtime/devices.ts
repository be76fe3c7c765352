import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { GraphBuilder } from '../onnx/graph-builder.js';
import { tensor } from '../tensor.js';
import type { Device, DeviceRequest, ResolvedDevice } from './device.js';
import { DeviceRegistry } from './device-registry.js';
import { ortBackends, ortBinaryDir, ortVersion, Session } from './session.js';

/**
 * The devices setar knows: `cpu` (ORT's CPU provider), `webgpu` (ORT's WebGPU provider, bundled
 * with onnxruntime-node on Linux x64, Windows and macOS: Vulkan, D3D12 or Metal, no CUDA needed)
 * and `cuda` (ORT's CUDA provider, whose binaries onnxruntime-node's install script downloads).
 * `auto` tries webgpu, then cpu; cuda only when asked for by name.
 */

/** Relu on [-1, 2]: a graph small enough to compile anywhere, checked for [0, 2]. */
async function runProbe(executionProviders: readonly string[]): Promise<void> {
  const g = new GraphBuilder('device_probe');
  g.output(g.op('Relu', [g.input('x', 'FLOAT', [2])]), 'y', 'FLOAT', [2]);
  const s = await Session.create(g.toBytes(), `device probe (${executionProviders.join(', ')})`, { executionProviders, threads: 1 });
  try {
    const y = (await s.run({ x: tensor('float32', Float32Array.of(-1, 2), [2]) })).y!.data;
    if (y[0] !== 0 || y[1] !== 2) throw new Error(`a probe graph gave [${[...(y as Float32Array)].join(', ')}] instead of [0, 2]`);
  } finally {
    await s.release();
  }
}

/** ORT's message without its source location and assertion text ("…cc:136 f() cond was false. Failed to…"). */
export function ortReason(message: string): string {
  const line = message.split('\n')[0]!.trim();
  const i = line.lastIndexOf(' was false. ');
  return (i >= 0 ? line.slice(i + ' was false. '.length) : line).replace(/^\/\S+:\d+ /, '').trim();
}

function bundles(name: string): boolean {
  return ortBackends().some((b) => b.name === name);
}

const cpu: Device = {
  executionProviders: ['cpu'],
  init: async () => undefined,
  install: '',
};

const webgpu: Device = {
  executionProviders: ['webgpu'],
  async init() {
    if (!bundles('webgpu')) throw new Error(`onnxruntime-node ${ortVersion()} for ${process.platform}/${process.arch} has no WebGPU provider`);
    try {
      await runProbe(['webgpu']);
    } catch (e) {
      throw new Error(`ONNX Runtime's WebGPU provider could not start: ${ortReason((e as Error).message)}`);
    }
  },
  install: 'Install Vulkan drivers for the GPU: the GPU vendor\'s (NVIDIA, AMD, Intel), or Mesa\'s mesa-vulkan-drivers ≥ 24 ' +
    '(Debian bookworm: apt-get install -t bookworm-backports mesa-vulkan-drivers; bookworm\'s own 22.3 is refused by the WebGPU runtime); ' +
    'on a machine without a GPU, Mesa\'s lavapipe driver in that package runs WebGPU on the CPU.',
};

/** The CUDA provider's libraries, as onnxruntime-node's install script places them. */
function cudaLibraries(): string[] {
  return process.platform === 'win32'
    ? ['onnxruntime_providers_shared.dll', 'onnxruntime_providers_cuda.dll']
    : ['libonnxruntime_providers_shared.so', 'libonnxruntime_providers_cuda.so'];
}

/**
 * How to get the CUDA provider. npm does not run onnxruntime-node's install script here
 * (package.json's allowScripts denies it: it only downloads, so `npm ci` stays offline-clean), so
 * the user runs that script themselves where the network allows; `--onnxruntime-node-install`
 * forces its download (its `=cuda12` spelling is read as "no flag" by the 1.30 script).
 */
function cudaInstall(): string {
  const pkg = `Microsoft.ML.OnnxRuntime.Gpu.${process.platform === 'win32' ? 'Windows' : 'Linux'}`;
  const script = join(ortBinaryDir(), '..', '..', '..', '..', 'script', 'install.js');
  return `onnxruntime-node's CUDA provider comes from NuGet (${pkg} ${ortVersion()}) and npm does not fetch it here (package.json's allowScripts keeps onnxruntime-node's install script from running): ` +
    `where the network reaches api.nuget.org, run \`node ${script} --onnxruntime-node-install\` (behind a proxy set GLOBAL_AGENT_HTTPS_PROXY), ` +
    `or copy ${cudaLibraries().join(' and ')} from that package's runtimes/${process.platform === 'win32' ? 'win' : 'linux'}-x64/native/ into ${ortBinaryDir()}. ` +
    'The provider also needs CUDA 12 and cuDNN 9 libraries and an NVIDIA driver on the machine.';
}

const cuda: Device = {
  executionProviders: ['cuda'],
  async init() {
    if (!bundles('cuda')) throw new Error(`onnxruntime-node ${ortVersion()} for ${process.platform}/${process.arch} has no CUDA provider`);
    const dir = ortBinaryDir();
    const missing = cudaLibraries().filter((f) => !existsSync(join(dir, f)));
    if (missing.length) throw new Error(`onnxruntime-node's CUDA provider is not installed (${missing.join(', ')} missing from ${dir})`);
    try {
      await runProbe(['cuda']);
    } catch (e) {
      throw new Error(`ONNX Runtime's CUDA provider could not start: ${ortReason((e as Error).message)}`);
    }
  },
  get install() {
    return cudaInstall();
  },
};

/**
 * A registry of the built-in devices (webgpu priority 1, cpu 0, cuda −1: not tried by `auto`).
 * Each call gives a fresh registry; {@link resolveDevice} keeps one per process, so each device
 * is probed once.
 */
export function builtinDevices(): DeviceRegistry {
  const r = new DeviceRegistry();
  r.register('webgpu', webgpu, 1);
  r.register('cpu', cpu, 0);
  r.register('cuda', cuda, -1);
  return r;
}

let processDevices: DeviceRegistry | undefined;

/**
 * The device for `--device` (or a config's `device`): `cpu`, `webgpu`, `cuda` or `auto`.
 * Throws DeviceUnavailableError naming the device, the reason and what to install.
 *
 * @example
 * const d = await resolveDevice('auto');
 * if (d.note) console.error(d.note); // "auto: webgpu" or "auto: cpu; webgpu unavailable: …"
 * const model = await ClipModel.load(dir, { executionProviders: d.executionProviders });
 */
export function resolveDevice(request: DeviceRequest): Promise<ResolvedDevice> {
  processDevices ??= builtinDevices();
  return processDevices.resolve(request);
}

/** Adds a device to the process's registry (after the built-in ones); throws if the name is taken. */
export function registerDevice(name: string, device: Device, priority: number): void {
  processDevices ??= builtinDevices();
  processDevices.register(name, device, priority);
}
