import { DEVICE_REQUESTS, DeviceUnavailableError, type DeviceRequest, type ResolvedDevice } from '../runtime/device.js';
import { resolveDevice } from '../runtime/devices.js';
import { ConfigError } from '../models/common/config.js';

/** Where a run's device request came from, for messages. */
export interface DeviceSetting {
  readonly device: DeviceRequest;
  /** `my.json: config key "device"` when the config file gave it; absent for the flag or the default. */
  readonly deviceOrigin?: string;
}

/**
 * The device of a run: `--device` (which wins), else the official config's `device` key (its
 * `"cuda"` is cuda), else cpu. A bad value is a ConfigError naming the flag or the file and key.
 */
export function resolveDeviceSetting(j: Record<string, unknown>, flag: string | undefined, configFile = 'config'): DeviceSetting {
  const fromConfig = flag === undefined && j.device !== undefined && j.device !== null;
  const value = flag ?? (fromConfig ? j.device : 'cpu');
  const origin = fromConfig ? `${configFile}: config key "device"` : '--device';
  if (!(typeof value === 'string' && (DEVICE_REQUESTS as readonly string[]).includes(value))) {
    throw new ConfigError(`${origin} must be one of ${DEVICE_REQUESTS.join(', ')}, got ${JSON.stringify(value)}`, fromConfig ? configFile : undefined, 'device');
  }
  return { device: value as DeviceRequest, ...(fromConfig ? { deviceOrigin: origin } : {}) };
}

/**
 * A resolved config as its output files record it: the device only when it is not the default
 * cpu, so a run on the CPU writes what it wrote before devices existed.
 */
export function recordedConfig<T extends DeviceSetting>(config: T): Omit<T, 'device' | 'deviceOrigin'> & { readonly device?: DeviceRequest } {
  const { device, deviceOrigin: _origin, ...rest } = config;
  return device === 'cpu' ? rest : { ...rest, device };
}

/**
 * The device a run asked for, checked once per process: DeviceUnavailableError when it cannot run
 * here (a config key's request says so and how to override it). `auto` says which device it
 * chose through `notice`.
 */
export async function openDevice(setting: DeviceSetting, notice?: (line: string) => void): Promise<ResolvedDevice> {
  let d: ResolvedDevice;
  try {
    d = await resolveDevice(setting.device);
  } catch (e) {
    if (e instanceof DeviceUnavailableError && setting.deviceOrigin) {
      throw new DeviceUnavailableError(e.device, e.reason, `${setting.deviceOrigin} asks for it (--device cpu, webgpu or auto overrides it). ${e.install}`);
    }
    throw e;
  }
  if (d.note) notice?.(d.note);
  return d;
}
