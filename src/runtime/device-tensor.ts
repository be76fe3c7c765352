import type { DType, Tensor } from '../tensor.js';

/**
 * A tensor that ONNX Runtime holds in device memory (WebGPU): fed to runs without a copy, read
 * back only through {@link DeviceMemory.download} (onnxruntime-node cannot read device memory
 * from JS). Its memory belongs to the session that produced it: it is freed by {@link dispose}
 * (garbage collection never frees it) or when that session is released, whichever comes first.
 */
export interface DeviceTensor {
  readonly location: 'device';
  readonly dtype: DType;
  readonly dims: readonly number[];
  /** The output it was, for messages: `hidden_states_out of session 'vision:layers:0:6'`. */
  readonly name: string;
  readonly byteLength: number;
  readonly disposed: boolean;
  /** Frees the device memory now; later calls do nothing. */
  dispose(): void;
}

/**
 * What a run keeps for later runs: a {@link DeviceTensor} where the device has memory of its own
 * that onnxruntime-node can hold (WebGPU), else a host {@link Tensor} (cpu; cuda, whose device
 * memory onnxruntime-node does not expose). Code that only feeds it back need not know which.
 */
export type Resident = Tensor | DeviceTensor;

export function isDeviceTensor(t: Resident): t is DeviceTensor {
  return (t as DeviceTensor).location === 'device';
}

/** Frees a resident tensor's device memory, if it has any. */
export function disposeResident(t: Resident | undefined): void {
  if (t && isDeviceTensor(t)) t.dispose();
}
