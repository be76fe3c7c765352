import type { LayerId, WeightSlot } from '../lowrank/settings.js';
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

/** Memory the cached search may spend on hidden states entering every layer (ViT-B/16: 7.3 MB per image). */
const HIDDEN_CACHE_BYTES = 2 * 1024 ** 3;
/** Images per objective chunk: bounds the local logits held at once (chunk × patches × classes floats). */
const OBJECTIVE_CHUNK = 32;

/** One tower's state under the current decisions. */
interface TowerState {
  readonly tower: SearchTower;
  /** Cached mode: hidden states entering block 0; no-cache mode: the tower's raw input (pixels, or null). */
  readonly entry: Tensor<'float32'> | null;
  /** Hidden states entering each block, kept while they fit HIDDEN_CACHE_BYTES. */
  readonly hidden: Map<number, Tensor<'float32'>>;
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
 */
export class Evaluator {
  readonly stats: SearchStats = { visionLayerEvals: 0, textLayerEvals: 0, candidatesEvaluated: 0, candidatesFromCache: 0 };
  private slotHidden: Tensor<'float32'> | null = null;

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
    const parts: Tensor<'float32'>[][] = imageTowers.map(() => []);
    const labels: number[] = [];
    for await (const b of batches) {
      for (let i = 0; i < imageTowers.length; i++) parts[i]!.push(cache ? await imageTowers[i]!.embed(b.pixels) : b.pixels);
      for (let i = 0; i < b.labels.length; i++) labels.push(b.labels[i]!);
    }
    if (labels.length === 0) return new Evaluator(subject, [], new Int32Array(0), objective, cache);
    const towers: TowerState[] = [];
    for (const tower of subject.towers) {
      const i = imageTowers.indexOf(tower);
      const entry = i >= 0 ? concatBatch(parts[i]!) : cache ? await tower.embed(null) : null;
      towers.push({ tower, entry, hidden: new Map() });
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
    const entry = this.cache ? t.entry : await t.tower.embed(t.entry);
    return t.tower.head(entry!, 0);
  }

  /** Hidden states entering block `from` under the current decisions. */
  private async hiddenAt(t: TowerState, from: number): Promise<Tensor<'float32'>> {
    const entry = t.entry!;
    if (entry.data.byteLength * t.tower.layers.length > HIDDEN_CACHE_BYTES) {
      this.count(t, from);
      return t.tower.run(entry, 0, from);
    }
    t.hidden.set(0, entry);
    let start = 0;
    for (const k of t.hidden.keys()) if (k <= from && k > start) start = k;
    let h = t.hidden.get(start)!;
    for (let j = start; j < from; j++) {
      h = await t.tower.run(h, j, j + 1);
      this.count(t, 1);
      t.hidden.set(j + 1, h);
    }
    return h;
  }

  /** Before a slot's candidates: the hidden states entering its block, and the other towers' outputs. */
  async beginSlot(slot: WeightSlot): Promise<void> {
    if (!this.cache) return;
    const t = this.towerOf(slot);
    this.slotHidden = await this.hiddenAt(t, this.blockOf(t, slot.layer));
    for (const o of this.towers) if (o !== t) o.output ??= await this.full(o);
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
    for (const k of [...t.hidden.keys()]) if (k > block) t.hidden.delete(k);
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
