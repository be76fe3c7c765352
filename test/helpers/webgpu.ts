import type { TestContext } from 'node:test';
import { builtinDevices } from '../../src/runtime/devices.js';

type Probe = { readonly executionProviders: readonly string[] } | { readonly why: string };
let probe: Promise<Probe> | null = null;

/**
 * WebGPU's execution providers where this machine has a Vulkan device (Mesa's lavapipe in CI),
 * or the reason it has none; asked once per test file.
 */
export function probeWebgpu(): Promise<Probe> {
  probe ??= builtinDevices().resolve('webgpu').then(
    (d) => ({ executionProviders: d.executionProviders }),
    (e: unknown) => ({ why: (e as Error).message }),
  );
  return probe;
}

/** The WebGPU providers, or null after marking `t` skipped with the reason. */
export async function webgpuOrSkip(t: TestContext): Promise<readonly string[] | null> {
  const p = await probeWebgpu();
  if ('why' in p) {
    t.skip(`no WebGPU device here: ${p.why}`);
    return null;
  }
  return p.executionProviders;
}
