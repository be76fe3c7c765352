import type { LayerId, Tower, WeightSlot, WeightType } from '../lowrank/settings.js';
import type { FamilyTower } from '../models/family.js';

/**
 * The greedy search orders of SPEC §6, one row per searcher: which towers it walks, in what
 * order, and how a step decides (one slot per step, or an exhaustive round over every
 * undecided slot). A tower's own order is always its top layer first, its projection (W_p)
 * before its layers when projections are searched.
 */
export interface SearcherRow {
  readonly name: string;
  readonly loop: 'greedy' | 'exhaustive';
  /** The towers it walks. */
  readonly towers: readonly Tower[];
  /** How the models it applies to name layers (SPEC §2): encoder indices, or `[stage, block]`. */
  readonly layerIds: 'index' | 'stage-block';
  /** The models it applies to, for messages. */
  readonly models: string;
  /** The slots in decision order (for `exhaustive`, the pool each round chooses from), from each tower's own order. */
  order(slots: Readonly<Partial<Record<Tower, WeightSlot[]>>>): WeightSlot[];
}

/** v_p, t_p, v11, t11, v10, t10, …; the deeper tower's extra layers come after. */
function interleave(v: readonly WeightSlot[], t: readonly WeightSlot[]): WeightSlot[] {
  const out: WeightSlot[] = [];
  for (let i = 0; i < Math.max(v.length, t.length); i++) {
    if (i < v.length) out.push(v[i]!);
    if (i < t.length) out.push(t[i]!);
  }
  return out;
}

const CLIP_MODELS = 'a two-tower model (CLIP)';

export const SEARCHER_TABLE: readonly SearcherRow[] = [
  { name: 'visual_text', loop: 'greedy', towers: ['visual', 'text'], layerIds: 'index', models: CLIP_MODELS, order: (s) => [...s.visual!, ...s.text!] },
  { name: 'text_visual', loop: 'greedy', towers: ['visual', 'text'], layerIds: 'index', models: CLIP_MODELS, order: (s) => [...s.text!, ...s.visual!] },
  { name: 'visual_only', loop: 'greedy', towers: ['visual'], layerIds: 'index', models: CLIP_MODELS, order: (s) => [...s.visual!] },
  { name: 'text_only', loop: 'greedy', towers: ['text'], layerIds: 'index', models: CLIP_MODELS, order: (s) => [...s.text!] },
  { name: 'modality_interleaved', loop: 'greedy', towers: ['visual', 'text'], layerIds: 'index', models: CLIP_MODELS, order: (s) => interleave(s.visual!, s.text!) },
  { name: 'layer_exhaustive', loop: 'exhaustive', towers: ['visual', 'text'], layerIds: 'index', models: CLIP_MODELS, order: (s) => [...s.visual!, ...s.text!] },
  // stages from the last, blocks from the last
  { name: 'visual_only_swin', loop: 'greedy', towers: ['visual'], layerIds: 'stage-block', models: 'a Swin V2 model ([stage, block] layers)', order: (s) => [...s.visual!] },
];

/** The searchers of models with encoder-index layers (CLIP), in the table's order. */
export const SEARCHERS: readonly string[] = SEARCHER_TABLE.filter((r) => r.layerIds === 'index').map((r) => r.name);

/** The row of a searcher; throws listing the valid names. */
export function searcherRow(name: string): SearcherRow {
  const row = SEARCHER_TABLE.find((r) => r.name === name);
  if (!row) throw new RangeError(`unknown searcher "${name}"; valid: ${SEARCHER_TABLE.map((r) => r.name).join(', ')}`);
  return row;
}

/** Whether a searcher applies to a family: the same layer naming, and every tower it walks exists. */
export function searcherApplies(row: SearcherRow, family: { readonly layerIds: string; readonly towers: readonly FamilyTower[] }): boolean {
  return row.layerIds === family.layerIds && row.towers.every((t) => family.towers.some((f) => f.tower === t));
}

/**
 * A tower's slots in its own search order: its projection first when projections are searched
 * (`freezeProj` false), then its layers from the top.
 * @param layers the tower's layer ids in forward order
 */
export function towerSlots(tower: Tower, weight: WeightType, layers: readonly LayerId[], projection: boolean, freezeProj: boolean): WeightSlot[] {
  const slots: WeightSlot[] = projection && !freezeProj ? [{ tower, weight: 'W_p', layer: null }] : [];
  for (let l = layers.length - 1; l >= 0; l--) slots.push({ tower, weight, layer: layers[l]! });
  return slots;
}

/**
 * The slots of a model with encoder-index layers, in the searcher's order.
 * @param depth encoder layers per tower (ViT-L/14: 24 visual, 12 text)
 */
export function searchSlots(searcher: string, weight: WeightType, depth: { visual: number; text: number }, freezeProj: boolean): WeightSlot[] {
  const row = searcherRow(searcher);
  if (row.layerIds !== 'index') throw new RangeError(`searcher "${searcher}" needs ${row.models}; valid for encoder-index layers: ${SEARCHERS.join(', ')}`);
  const range = (n: number) => Array.from({ length: n }, (_, i) => i);
  return row.order({
    visual: towerSlots('visual', weight, range(depth.visual), true, freezeProj),
    text: towerSlots('text', weight, range(depth.text), true, freezeProj),
  });
}

/** `visual_projection` / layer N, for logs. */
export function slotLabel(s: WeightSlot): string {
  if (s.layer === null) return `${s.tower} ${s.weight}`;
  return typeof s.layer === 'number' ? `${s.tower} ${s.weight} layer ${s.layer}` : `${s.tower} ${s.weight} stage ${s.layer[0]} block ${s.layer[1]}`;
}
