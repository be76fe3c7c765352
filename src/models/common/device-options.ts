import type { ResolvedDevice } from '../../runtime/device.js';
import type { SessionOptions } from '../../runtime/session.js';

/**
 * A family loader's options as its sessions take them: the device's execution providers (when a
 * device is given) in place of `executionProviders`, everything else as it is.
 */
export function onDevice<T extends SessionOptions & { readonly device?: ResolvedDevice }>(options: T): T {
  return options.device ? { ...options, executionProviders: options.device.executionProviders } : options;
}

/** The options a family passes to the sessions it makes besides the model's (a logits head): device, threads and the byte counter. */
export function headSessionOptions(options: SessionOptions): SessionOptions {
  return { threads: options.threads, executionProviders: options.executionProviders, transfers: options.transfers, profile: options.profile };
}
