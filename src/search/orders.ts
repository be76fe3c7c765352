import type { Tower, WeightType } from '../lowrank/settings.js';

/** The greedy search orders of SPEC §6. */
export const SEARCHERS = ['visual_text', 'text_visual', 'visual_only', 'text_only', 'modality_interleaved', 'layer_exhaustive'] as const;
export type Searcher = (typeof SEARCHERS)[number];

/** One place the search decides a ratio for: a tower's weight of one layer (`null` for W_p). */
export interface SearchSlot {
  readonly tower: Tower;
  readonly weight: WeightType;
  readonly layer: number | null;
}

/** A tower's slots, top layer first, with its projection first when projections are searched. */
function towerSlots(tower: Tower, weight: WeightType, layers: number, freezeProj: boolean): SearchSlot[] {
  const slots: SearchSlot[] = freezeProj ? [] : [{ tower, weight: 'W_p', layer: null }];
  for (let l = layers - 1; l >= 0; l--) slots.push({ tower, weight, layer: l });
  return slots;
}

/**
 * The slots in the order the searcher decides them. For `layer_exhaustive` the order is only the
 * pool each round chooses from (every undecided slot is tried in every round).
 * @param depth encoder layers per tower (ViT-L/14: 24 visual, 12 text)
 */
export function searchSlots(searcher: Searcher, weight: WeightType, depth: { visual: number; text: number }, freezeProj: boolean): SearchSlot[] {
  const v = towerSlots('visual', weight, depth.visual, freezeProj);
  const t = towerSlots('text', weight, depth.text, freezeProj);
  switch (searcher) {
    case 'visual_text':
      return [...v, ...t];
    case 'text_visual':
      return [...t, ...v];
    case 'visual_only':
      return v;
    case 'text_only':
      return t;
    case 'modality_interleaved': {
      // v_p, t_p, v11, t11, v10, t10, …; the deeper tower's extra layers come after
      const out: SearchSlot[] = [];
      for (let i = 0; i < Math.max(v.length, t.length); i++) {
        if (i < v.length) out.push(v[i]!);
        if (i < t.length) out.push(t[i]!);
      }
      return out;
    }
    case 'layer_exhaustive':
      return [...v, ...t];
  }
}

/** `visual_projection` / layer N, for logs. */
export function slotLabel(s: SearchSlot): string {
  return s.layer === null ? `${s.tower} ${s.weight}` : `${s.tower} ${s.weight} layer ${s.layer}`;
}
