import { disposeResident, isDeviceTensor, type Resident } from '../../runtime/device-tensor.js';
import { sliceBatch, type Tensor } from '../../tensor.js';

/**
 * Hidden states of a batch of inputs, as consecutive chunks of rows: each chunk is one session
 * run's output, kept where that run left it — in device memory on webgpu (onnxruntime-node can
 * neither concatenate nor slice device tensors from JS, hence chunks), on the host elsewhere.
 * A tower run in pieces passes them from piece to piece without a copy to the host.
 */
export interface HiddenStates {
  readonly chunks: readonly Resident[];
  /** Rows over all chunks (images, or prompts). */
  readonly rows: number;
  /** Bytes over all chunks, wherever they live. */
  readonly byteLength: number;
}

const BYTES: Readonly<Record<string, number>> = { float32: 4, float64: 8, int32: 4, int64: 8, uint8: 1 };

function bytesOf(t: Resident): number {
  return isDeviceTensor(t) ? t.byteLength : t.data.length * BYTES[t.dtype]!;
}

/** Chunks as one {@link HiddenStates}. */
export function hiddenStates(chunks: readonly Resident[]): HiddenStates {
  return {
    chunks,
    rows: chunks.reduce((a, c) => a + c.dims[0]!, 0),
    byteLength: chunks.reduce((a, c) => a + bytesOf(c), 0),
  };
}

/** Host hidden states split into chunks of at most `chunk` rows (views, no copy). */
export function hostHiddenStates(t: Tensor<'float32'>, chunk: number): HiddenStates {
  const b = t.dims[0]!;
  const chunks: Tensor<'float32'>[] = [];
  for (let s = 0; s < b; s += chunk) chunks.push(b <= chunk ? t : sliceBatch(t, s, Math.min(chunk, b - s)));
  return hiddenStates(chunks);
}

/** The rows of several batches, in order (their chunks, not copied). */
export function concatHiddenStates(parts: readonly HiddenStates[]): HiddenStates {
  return hiddenStates(parts.flatMap((p) => p.chunks));
}

/**
 * Runs `f` on each chunk in order (a tower piece, one session run a chunk) and gathers its
 * outputs; if a run fails, the outputs already made are freed before the error goes on.
 */
export async function mapHiddenStates(h: HiddenStates, f: (chunk: Resident) => Promise<Resident>): Promise<HiddenStates> {
  const out: Resident[] = [];
  try {
    for (const c of h.chunks) out.push(await f(c));
  } catch (e) {
    disposeHiddenStates(hiddenStates(out));
    throw e;
  }
  return hiddenStates(out);
}

/** Frees the device memory of every chunk (host chunks are left to garbage collection). */
export function disposeHiddenStates(h: HiddenStates | null | undefined): void {
  if (h) for (const c of h.chunks) disposeResident(c);
}
