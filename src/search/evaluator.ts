import type { LayerId, WeightSlot } from '../lowrank/settings.js';
import { concatHiddenStates, disposeHiddenStates, type HiddenStates } from '../models/common/hidden-states.js';
import type { SearchSubject, SearchTower } from '../models/family.js';
import { concatBatch, type Tensor } from '../tensor.js';
import { ObjectiveAccumulator, type CandidateFigures, type ObjectiveOptions } from './objective.js';

/** Work counters: how many times a layer ran over the whole validation set (or prompt set). */
export interface SearchStats {
  visionLayerEvals: number;
  textLayerEvals: number;
  candidatesEvaluated: number;
  candidatesFromCache: number;
}

/**
 * Memory the cached search may spend on hidden states entering every layer (ViT-B/16: 7.3 MB per
 * image), host or device memory wherever the device keeps them.
 */
const HIDDEN_CACHE_BYTES = 2 * 1024 ** 3;
/** Images per objective chunk: bounds the local logits held at once (chunk × patches × classes floats). */
const OBJECTIVE_CHUNK = 32;

/** One tower's state under the current decisions. */
interface TowerState {
  readonly tower: SearchTower;
  /** Cached mode: hidden states entering block 0 (null in no-cache mode). */
  readonly entry: HiddenStates | null;
  /** No-cache mode: the tower's raw input (the images' pixels, or null). */
  readonly input: Tensor<'float32'> | null;
  /** Hidden states entering each block above 0, kept while they fit HIDDEN_CACHE_BYTES. */
  readonly hidden: Map<number, HiddenStates>;
  /** The tower's output, recomputed only when a decision changes it. */
  output?: unknown;
}

/**
 * Measures the search objective (SPEC §5) of the model as it stands, for any family: the family
 * exposes its towers as chains of blocks, and the evaluator runs only what a candidate changes.
 *
 * With caching, the hidden states entering the searched block are computed once per step (and
 * those entering every block are kept while they fit in memory, so a top-down search runs the
 * blocks below once per tower), the other towers' outputs once per change of that tower, and a
 * candidate runs the searched tower from its block to the head. Without, every candidate runs
 * every tower from its input, as the reference does.
 *
 * Hidden states stay where the device keeps them (device memory on webgpu) and are freed when the
 * cache drops them; call {@link release} when done.
 */
export class Evaluator {
  readonly stats: SearchStats = { visionLayerEvals: 0, textLayerEvals: 0, candidatesEvaluated: 0, candidatesFromCache: 0 };
  private slotHidden: HiddenStates | null = null;
  /** Whether slotHidden belongs to no cache (computed past the memory budget): freed when replaced. */
  private slotHiddenOwned = false;

  private constructor(
    private readonly subject: SearchSubject,
    private readonly towers: TowerState[],
    private readonly labels: Int32Array,
    private readonly objective: ObjectiveOptions,
    readonly cache: boolean,
  ) {}

  /**
   * @param batches the validation images, preprocessed, in dataset order, with each one's class
   *   (cached mode embeds them batch by batch, as they come)
   */
  static async create(subject: SearchSubject, batches: AsyncIterable<{ pixels: Tensor<'float32'>; labels: ArrayLike<number> }>, objective: ObjectiveOptions, cache: boolean): Promise<Evaluator> {
    const imageTowers = subject.towers.filter((t) => t.readsImages);
    const embedded: HiddenStates[][] = imageTowers.map(() => []);
    const pixels: Tensor<'float32'>[] = [];
    const labels: number[] = [];
    for await (const b of batches) {
      if (cache) for (let i = 0; i < imageTowers.length; i++) embedded[i]!.push(await imageTowers[i]!.embed(b.pixels));
      else pixels.push(b.pixels);
      for (let i = 0; i < b.labels.length; i++) labels.push(b.labels[i]!);
    }
    if (labels.length === 0) return new Evaluator(subject, [], new Int32Array(0), objective, cache);
    const input = cache ? null : concatBatch(pixels);
    const towers: TowerState[] = [];
    for (const tower of subject.towers) {
      const i = imageTowers.indexOf(tower);
      if (!cache) towers.push({ tower, entry: null, input: i >= 0 ? input : null, hidden: new Map() });
      else towers.push({ tower, entry: i >= 0 ? concatHiddenStates(embedded[i]!) : await tower.embed(null), input: null, hidden: new Map() });
    }
    return new Evaluator(subject, towers, Int32Array.from(labels), objective, cache);
  }

  /** The number of validation images. */
  get images(): number {
    return this.labels.length;
  }

  private count(t: TowerState, layers: number): void {
    if (t.tower.tower === 'visual') this.stats.visionLayerEvals += layers;
    else this.stats.textLayerEvals += layers;
  }

  private towerOf(slot: WeightSlot): TowerState {
    const t = this.towers.find((x) => x.tower.tower === slot.tower);
    if (!t) throw new RangeError(`the model has no ${slot.tower} tower`);
    return t;
  }

  /** The block a slot's weight is in (W_p: the last block, which runs with the head). */
  private blockOf(t: TowerState, layer: LayerId | null): number {
    if (layer === null) return t.tower.layers.length - 1;
    const key = JSON.stringify(layer);
    const i = t.tower.layers.findIndex((l) => JSON.stringify(l) === key);
    if (i < 0) throw new RangeError(`layer ${key} is not a block of the ${t.tower.tower} tower`);
    return i;
  }

  /** The tower's output from its input under the current weights. */
  private async full(t: TowerState): Promise<unknown> {
    const n = t.tower.layers.length;
    this.count(t, n);
    if (this.cache) return t.tower.head(t.entry!, 0);
    const entry = await t.tower.embed(t.input);
    try {
      return await t.tower.head(entry, 0);
    } finally {
      disposeHiddenStates(entry);
    }
  }

  /** Hidden states entering block `from` under the current decisions, and whether no cache holds them. */
  private async hiddenAt(t: TowerState, from: number): Promise<{ hidden: HiddenStates; owned: boolean }> {
    const entry = t.entry!;
    if (entry.byteLength * t.tower.layers.length > HIDDEN_CACHE_BYTES) {
      this.count(t, from);
      return { hidden: await t.tower.run(entry, 0, from), owned: from > 0 };
    }
    let start = 0;
    for (const k of t.hidden.keys()) if (k <= from && k > start) start = k;
    let h = start === 0 ? entry : t.hidden.get(start)!;
    for (let j = start; j < from; j++) {
      h = await t.tower.run(h, j, j + 1);
      this.count(t, 1);
      t.hidden.set(j + 1, h);
    }
    return { hidden: h, owned: false };
  }

  /** Before a slot's candidates: the hidden states entering its block, and the other towers' outputs. */
  async beginSlot(slot: WeightSlot): Promise<void> {
    if (!this.cache) return;
    const t = this.towerOf(slot);
    this.dropSlotHidden();
    const { hidden, owned } = await this.hiddenAt(t, this.blockOf(t, slot.layer));
    this.slotHidden = hidden;
    this.slotHiddenOwned = owned;
    for (const o of this.towers) if (o !== t) o.output ??= await this.full(o);
  }

  private dropSlotHidden(): void {
    if (this.slotHiddenOwned) disposeHiddenStates(this.slotHidden);
    this.slotHidden = null;
    this.slotHiddenOwned = false;
  }

  /** The objective of the model as it stands, the slot's weight being a candidate's. */
  async measure(slot: WeightSlot): Promise<CandidateFigures> {
    let outputs: unknown[];
    if (!this.cache) {
      outputs = [];
      for (const t of this.towers) outputs.push(await this.full(t));
    } else {
      const t = this.towerOf(slot);
      const from = this.blockOf(t, slot.layer);
      this.count(t, t.tower.layers.length - from);
      const out = await t.tower.head(this.slotHidden!, from);
      outputs = this.towers.map((o) => (o === t ? out : o.output));
    }
    this.stats.candidatesEvaluated++;
    return this.figures(outputs);
  }

  /** A decision changed a slot's weight: its tower's output and the hidden states above its block are stale. */
  decided(slot: WeightSlot): void {
    const t = this.towerOf(slot);
    t.output = undefined;
    if (slot.layer === null) return;
    const block = this.blockOf(t, slot.layer);
    for (const [k, h] of [...t.hidden]) {
      if (k <= block) continue;
      if (h === this.slotHidden) this.slotHidden = null;
      disposeHiddenStates(h);
      t.hidden.delete(k);
    }
  }

  /** Frees every hidden state the evaluator holds (device memory on webgpu). */
  release(): void {
    this.dropSlotHidden();
    for (const t of this.towers) {
      for (const h of t.hidden.values()) disposeHiddenStates(h);
      t.hidden.clear();
      disposeHiddenStates(t.entry);
    }
  }

  private async figures(outputs: readonly unknown[]): Promise<CandidateFigures> {
    const acc = new ObjectiveAccumulator(this.objective);
    const n = this.labels.length;
    for (let s = 0; s < n; s += OBJECTIVE_CHUNK) {
      const k = Math.min(OBJECTIVE_CHUNK, n - s);
      const { global, local } = await this.subject.logits(outputs, s, k);
      acc.add(global, local, this.labels.subarray(s, s + k));
    }
    return acc.result();
  }
}
