import type { Tower, WeightType } from '../lowrank/settings.js';

/** The greedy search orders of SPEC §6. */
export const SEARCHERS = ['visual_text', 'text_visual', 'visual_only', 'text_only', 'modality_interleaved', 'layer_exhaustive'] as const;
/** The Swin V2 order (SPEC §6): stages from the last, blocks from the last. */
export const SWIN_SEARCHERS = ['visual_only_swin'] as const;
export type Searcher = (typeof SEARCHERS)[number] | (typeof SWIN_SEARCHERS)[number];

/** One place the search decides a ratio for: a tower's weight of one layer (`null` for W_p; `[stage, block]` for Swin). */
export interface SearchSlot {
  readonly tower: Tower;
  readonly weight: WeightType;
  readonly layer: number | readonly [stage: number, block: number] | null;
}

/**
 * `visual_only_swin`: `[stage, block]` slots, the last stage first and, within a stage, the last
 * block first ([3,1], [3,0], [2,17], …, [0,0] for Swin V2-B).
 * @param depths blocks per stage
 */
export function swinSearchSlots(weight: WeightType, depths: readonly number[]): SearchSlot[] {
  const slots: SearchSlot[] = [];
  for (let s = depths.length - 1; s >= 0; s--) for (let b = depths[s]! - 1; b >= 0; b--) slots.push({ tower: 'visual', weight, layer: [s, b] });
  return slots;
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
    case 'visual_only_swin':
      throw new RangeError(`searcher "visual_only_swin" needs a Swin V2 model (model_type "swinv2"); valid for CLIP: ${SEARCHERS.join(', ')}`);
  }
}

/** `visual_projection` / layer N, for logs. */
export function slotLabel(s: SearchSlot): string {
  if (s.layer === null) return `${s.tower} ${s.weight}`;
  return typeof s.layer === 'number' ? `${s.tower} ${s.weight} layer ${s.layer}` : `${s.tower} ${s.weight} stage ${s.layer[0]} block ${s.layer[1]}`;
}
