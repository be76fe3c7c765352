import { DeviceUnavailableError, type Device, type ResolvedDevice } from './device.js';

interface Entry {
  readonly device: Device;
  readonly priority: number;
  /** The one init() of this device (settled: ok, or the reason it failed). */
  outcome?: Promise<string | null>;
}

/**
 * Devices by name, in the manner of onnxruntime-common's backend registry: each registered with
 * a priority (higher first; a negative priority keeps a device out of `auto`), initialised on
 * first use only and once, its outcome kept. A duplicate name throws.
 *
 * @example
 * const devices = builtinDevices();
 * const d = await devices.resolve('auto'); // { name: 'webgpu', executionProviders: ['webgpu'], note: 'auto: webgpu (…)' }
 */
export class DeviceRegistry {
  private readonly entries = new Map<string, Entry>();

  /** Adds a device; throws if `name` is taken. */
  register(name: string, device: Device, priority: number): void {
    if (this.entries.has(name)) throw new Error(`device '${name}' is already registered`);
    if (!Number.isInteger(priority)) throw new RangeError(`device '${name}': priority must be an integer, got ${priority}`);
    this.entries.set(name, { device, priority });
  }

  /** Registered names, highest priority first. */
  names(): string[] {
    return [...this.entries].sort((a, b) => b[1].priority - a[1].priority).map(([n]) => n);
  }

  /** Initialises a device once; resolves to null when it works, else to the reason it does not. */
  private check(name: string): Promise<string | null> {
    const e = this.entries.get(name)!;
    e.outcome ??= e.device.init().then(() => null, (err: unknown) => (err instanceof Error ? err.message : String(err)));
    return e.outcome;
  }

  /**
   * The device to run on. A name gives that device or throws {@link DeviceUnavailableError}
   * (the reason and what to install); `auto` gives the first working device of priority ≥ 0,
   * highest first, with a note saying which it chose and why it passed over the others.
   */
  async resolve(request: string): Promise<ResolvedDevice> {
    if (request === 'auto') {
      const skipped: string[] = [];
      for (const name of this.names()) {
        const e = this.entries.get(name)!;
        if (e.priority < 0) continue;
        const reason = await this.check(name);
        if (reason === null) {
          const why = skipped.length ? `; ${skipped.join('; ')}` : '';
          return { name, executionProviders: e.device.executionProviders, requested: request, note: `auto: ${name}${why}` };
        }
        skipped.push(`${name} unavailable: ${reason}`);
      }
      throw new Error(`auto: no device is available (${skipped.join('; ') || 'none registered'})`);
    }
    const e = this.entries.get(request);
    if (!e) throw new RangeError(`unknown device '${request}'; known devices: ${[...this.names(), 'auto'].map((n) => `'${n}'`).join(', ')}`);
    const reason = await this.check(request);
    if (reason !== null) throw new DeviceUnavailableError(request, reason, e.device.install);
    return { name: request, executionProviders: e.device.executionProviders, requested: request };
  }
}
