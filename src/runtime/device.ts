/**
 * Devices: where setar's graphs run. A device names the ONNX Runtime execution providers it
 * maps to and knows how to check that it works on this machine; {@link DeviceRegistry} resolves
 * a requested name (or `auto`) to one that does.
 */

/** Devices a user can ask for; `auto` is resolved to one of the others. */
export type DeviceName = 'cpu' | 'webgpu' | 'cuda';
export type DeviceRequest = DeviceName | 'auto';
export const DEVICE_REQUESTS: readonly DeviceRequest[] = ['cpu', 'webgpu', 'cuda', 'auto'];

/** One way of running graphs, as registered in a {@link DeviceRegistry}. */
export interface Device {
  /** ONNX Runtime execution providers, most preferred first (ORT puts nodes they lack on its CPU provider). */
  readonly executionProviders: readonly string[];
  /**
   * Checks that the device can run a graph here; rejects with the reason when it cannot. Called at
   * most once per registry (the outcome is kept, as onnxruntime-common keeps a backend's init).
   */
  init(): Promise<void>;
  /** What to install when {@link init} fails, as a sentence; appended to the error. */
  readonly install: string;
}

/** A device that {@link DeviceRegistry.resolve} found working. */
export interface ResolvedDevice {
  readonly name: string;
  readonly executionProviders: readonly string[];
  /** What was asked for (`auto` or the name itself). */
  readonly requested: string;
  /** For `auto`: which device it chose and why, e.g. `auto: webgpu (it initialised)`; else undefined. */
  readonly note?: string;
}

/** A requested device cannot run here; the message names it, the reason and what to install. */
export class DeviceUnavailableError extends Error {
  constructor(readonly device: string, readonly reason: string, readonly install: string) {
    super(`device '${device}' is unavailable: ${reason}. ${install}`);
    this.name = 'DeviceUnavailableError';
  }
}

/**
 * Reads a device request as spelled by a flag or a config key (`source`, used in the message):
 * one of {@link DEVICE_REQUESTS}. The official SeTAR configs' `"device": "cuda"` reads as `cuda`.
 */
export function parseDeviceRequest(value: unknown, source = '--device'): DeviceRequest {
  if (typeof value === 'string' && (DEVICE_REQUESTS as readonly string[]).includes(value)) return value as DeviceRequest;
  throw new RangeError(`${source} must be one of ${DEVICE_REQUESTS.map((d) => `'${d}'`).join(', ')}, got ${JSON.stringify(value)}`);
}
