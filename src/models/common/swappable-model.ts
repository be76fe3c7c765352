import type { SafetensorsDtype } from '../../io/safetensors.js';
import { DeviceMemory } from '../../runtime/device-memory.js';
import { disposeResident, type Resident } from '../../runtime/device-tensor.js';
import type { SessionOptions } from '../../runtime/session.js';
import { concatBatch, shapeString, tensor, type Tensor } from '../../tensor.js';
import { disposeHiddenStates, type HiddenStates } from './hidden-states.js';
import { transpose } from './layers.js';

/** Where a model's tensors come from: a safetensors checkpoint or a torch `pytorch_model.bin`. */
export interface TensorStore {
  readonly dir: string;
  has(name: string): boolean;
  entry(name: string): { readonly dtype: SafetensorsDtype; readonly shape: readonly number[] };
  readFloat32(name: string): Float32Array;
  close(): void;
}

/**
 * Checks a replacement weight before a model keeps it: the element count of `shape` and finite
 * values only (a NaN would otherwise surface much later as a NaN score).
 */
export function checkReplacement(name: string, shape: readonly number[], value: Float32Array): void {
  const n = shape.reduce((a, b) => a * b, 1);
  if (value.length !== n) throw new RangeError(`setWeight('${name}'): ${value.length} values given, shape ${shapeString(shape)} needs ${n}`);
  for (let i = 0; i < value.length; i++) {
    if (!Number.isFinite(value[i]!)) throw new RangeError(`setWeight('${name}'): value at flat index ${i} is ${value[i]}`);
  }
}

/** How a family's model names itself in messages. */
export interface ModelIdentity {
  /** e.g. 'CLIP', 'Swin V2' */
  readonly displayName: string;
  /** A tensor name of this family, shown when a name is wrong. */
  readonly exampleWeight: string;
}

/**
 * The weights of a model whose graphs take the matrices SeTAR changes as inputs: every family's
 * model extends it. The checkpoint is read lazily per tensor; a replacement is kept in memory and
 * wins over the checkpoint. Swapping a graph-input matrix costs a transpose (the graphs take
 * MatMul's [in, out] layout); any other tensor is compiled into graphs, so replacing one calls
 * {@link onReplaced} for the model to drop the graphs that hold it.
 *
 * On a device with memory of its own (webgpu) the matrices are uploaded once, on first use, and
 * fed to every run from device memory; replacing one uploads that one matrix again, nothing else.
 */
export abstract class SwappableModel {
  private readonly overrides = new Map<string, Float32Array>();
  /** Graph-input matrices in [in, out] layout, built on first use and kept until replaced. */
  private readonly matrices = new Map<string, Tensor<'float32'>>();
  /** Device copies of the matrices (webgpu), uploaded on first use and dropped when replaced. */
  private readonly resident = new Map<string, { readonly tensor: Promise<Resident>; readonly bytes: number }>();
  private residentBytes = 0;
  /** Uploads and downloads for this model's device (a pass-through on cpu and cuda). */
  protected readonly memory: DeviceMemory;

  protected constructor(
    readonly dir: string,
    protected readonly store: TensorStore,
    /** Every tensor of the model with its HF shape. */
    protected readonly expected: ReadonlyMap<string, readonly number[]>,
    private readonly identity: ModelIdentity,
    /** Where the model's sessions run: the device memory follows the same providers and counter. */
    sessionOptions: Pick<SessionOptions, 'executionProviders' | 'transfers'> = {},
  ) {
    this.memory = new DeviceMemory({ executionProviders: sessionOptions.executionProviders, transfers: sessionOptions.transfers });
  }

  /** Whether `name` is a graph input (swapped without recompiling). */
  abstract isSwappable(name: string): boolean;

  /** A tensor compiled into graphs was replaced or restored: drop the graphs that hold it. */
  protected abstract onReplaced(name: string): void;

  /** Reads a tensor's current value (replacement or checkpoint), for building graphs. */
  readonly source = (name: string): Float32Array => this.overrides.get(name) ?? this.store.readFloat32(name);

  /** Shape of a model tensor, HF layout (Linear weights are [out, in]). */
  weightShape(name: string): readonly number[] {
    const s = this.expected.get(name);
    if (!s) throw new RangeError(`'${name}' is not a weight of this ${this.identity.displayName} model (${this.expected.size} tensors; e.g. '${this.identity.exampleWeight}')`);
    return s;
  }

  /** The current value of a tensor (a replacement if one is set), as a fresh float32 array. */
  getWeight(name: string): Float32Array {
    this.weightShape(name);
    const o = this.overrides.get(name);
    return o ? o.slice() : this.store.readFloat32(name);
  }

  /** The checkpoint's value of a tensor, ignoring replacements. */
  getOriginalWeight(name: string): Float32Array {
    this.weightShape(name);
    return this.store.readFloat32(name);
  }

  /**
   * Replaces a tensor by another of the same shape. The array is kept by reference: do not
   * mutate it afterwards.
   */
  setWeight(name: string, value: Float32Array): void {
    checkReplacement(name, this.weightShape(name), value);
    this.overrides.set(name, value);
    this.changed(name);
  }

  /** Restores one tensor (or, with no name, every tensor) to the checkpoint's value. */
  resetWeight(name?: string): void {
    const names = name === undefined ? [...this.overrides.keys()] : [name];
    for (const n of names) if (this.overrides.delete(n)) this.changed(n);
  }

  /** Names of the tensors currently replaced. */
  replacedWeights(): string[] {
    return [...this.overrides.keys()];
  }

  /** The replacement of a tensor, if any (the array the model keeps). */
  protected replacement(name: string): Float32Array | undefined {
    return this.overrides.get(name);
  }

  /** A graph-input matrix as the graphs take it: the current value, transposed to [in, out] (cached until replaced). */
  matrix(name: string): Tensor<'float32'> {
    let m = this.matrices.get(name);
    if (!m) {
      const [out, inn] = this.weightShape(name) as [number, number];
      m = tensor('float32', transpose(this.source(name), out, inn), [inn, out], name);
      this.matrices.set(name, m);
    }
    return m;
  }

  /**
   * A graph-input matrix as runs are fed it: its device copy where the device holds memory
   * (uploaded on first use, counted by the model's TransferCounter), else {@link matrix}.
   */
  residentMatrix(name: string): Promise<Resident> {
    if (!this.memory.holdsDeviceMemory) return Promise.resolve(this.matrix(name));
    let r = this.resident.get(name);
    if (!r) {
      const m = this.matrix(name);
      const entry = { tensor: this.memory.upload(m), bytes: m.data.byteLength };
      this.resident.set(name, entry);
      this.residentBytes += entry.bytes;
      entry.tensor.catch(() => {
        if (this.resident.get(name) === entry) this.forgetResident(name);
      });
      r = entry;
    }
    return r.tensor;
  }

  /** Bytes of weight matrices now held in device memory (0 where the device has none). */
  get deviceWeightBytes(): number {
    return this.residentBytes;
  }

  /** `feeds` plus every swappable weight matrix among `inputNames` that it lacks, as runs take them. */
  protected async withWeights(inputNames: readonly string[], feeds: Readonly<Record<string, Resident>>): Promise<Record<string, Resident>> {
    const all: Record<string, Resident> = { ...feeds };
    for (const n of inputNames) if (!(n in all) && this.isSwappable(n)) all[n] = await this.residentMatrix(n);
    return all;
  }

  /** Hidden states on the host, as one tensor (downloaded where they are on the device). */
  async hostHiddenStates(h: HiddenStates): Promise<Tensor<'float32'>> {
    const parts: Tensor<'float32'>[] = [];
    for (const c of h.chunks) parts.push((await this.memory.download(c)) as Tensor<'float32'>);
    return concatBatch(parts);
  }

  /** {@link hostHiddenStates}, then frees their device memory: for methods that hand out host tensors only. */
  protected async takeHiddenStates(h: HiddenStates): Promise<Tensor<'float32'>> {
    try {
      return await this.hostHiddenStates(h);
    } finally {
      disposeHiddenStates(h);
    }
  }

  /** Forgets every cached matrix and frees the device copies and device memory (when the model is released). */
  protected async clearMatrices(): Promise<void> {
    for (const n of [...this.resident.keys()]) this.forgetResident(n);
    this.matrices.clear();
    await this.memory.release();
  }

  private forgetResident(name: string): void {
    const r = this.resident.get(name);
    if (!r) return;
    this.resident.delete(name);
    this.residentBytes -= r.bytes;
    void r.tensor.then(disposeResident, () => undefined);
  }

  private changed(name: string): void {
    if (this.isSwappable(name)) {
      this.forgetResident(name);
      this.matrices.delete(name);
    } else {
      this.onReplaced(name);
    }
  }
}
