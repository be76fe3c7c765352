/**
 * Which onnxruntime-web execution provider scores in the page: WebGPU when the browser gives a
 * GPU adapter, else WebAssembly on the CPU. Kept apart from the client so the rule is one small
 * function, testable with any `navigator.gpu`-like object.
 */

/** The execution providers the page can use (onnxruntime-web names). */
export type WebBackend = 'webgpu' | 'wasm';

/** What the page needs of `navigator.gpu` (the WebGPU API's GPU object). */
export interface GpuLike {
  requestAdapter(): Promise<unknown>;
}

/** The backend chosen, and why, as the page shows it. */
export interface BackendChoice {
  readonly backend: WebBackend;
  readonly reason: string;
}

/**
 * `webgpu` when `gpu` (default: the browser's `navigator.gpu`; null: none) gives an adapter, else `wasm`
 * with the reason: no WebGPU API, no adapter (no usable GPU, or WebGPU disabled), or the request
 * failed.
 *
 * @example
 * const { backend, reason } = await chooseBackend(); // { backend: 'webgpu', reason: 'a WebGPU adapter is available' }
 */
export async function chooseBackend(gpu: GpuLike | null | undefined = (globalThis.navigator as { gpu?: GpuLike } | undefined)?.gpu): Promise<BackendChoice> {
  if (!gpu || typeof gpu.requestAdapter !== 'function') return { backend: 'wasm', reason: 'this browser has no WebGPU (navigator.gpu is absent)' };
  try {
    const adapter = await gpu.requestAdapter();
    if (!adapter) return { backend: 'wasm', reason: 'navigator.gpu gives no adapter (no usable GPU, or WebGPU is disabled)' };
    return { backend: 'webgpu', reason: 'a WebGPU adapter is available' };
  } catch (e) {
    return { backend: 'wasm', reason: `navigator.gpu.requestAdapter() failed: ${e instanceof Error ? e.message : String(e)}` };
  }
}
