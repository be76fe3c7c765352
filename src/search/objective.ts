import type { Tensor } from '../tensor.js';
import { locoop_loss } from '../ood/locoop.js';
import { pseudoOodScores } from '../ood/locoop.js';
import { oodMetrics } from '../ood/metrics.js';

/** What the search minimises: a LoCoOp part, or a scorer's metric on pseudo-OOD patches (SPEC §5). */
export type Objective =
  | { readonly kind: 'loss'; readonly metric: 'locoop_loss' | 'loss_id' | 'loss_ood' }
  | { readonly kind: 'scorer'; readonly scorer: string; readonly metric: 'auroc' | 'fpr' | 'aupr' };

/** The figures of one candidate (the columns of search_results.json). */
export interface CandidateFigures {
  locoop_loss: number;
  loss_id: number;
  loss_ood: number;
  acc: number;
  ood_patch_percent: number;
  /** Pseudo-OOD metrics of the objective's scorer, percent (scorer objectives only). */
  [metric: string]: number;
}

/** Name of the objective's column: `locoop_loss`, or `<scorer>_<metric>` such as `gl_mcm_score_auroc`. */
export function objectiveColumn(o: Objective): string {
  return o.kind === 'loss' ? o.metric : `${o.scorer}_${o.metric}`;
}

/** The value the search minimises (AUROC and AUPR are maximised, so negated). */
export function objectiveValue(o: Objective, f: Readonly<Record<string, unknown>>): number {
  const v = f[objectiveColumn(o)] as number;
  return o.kind === 'scorer' && o.metric !== 'fpr' ? -v : v;
}

/** Options of the LoCoOp objective (SPEC §5). */
export interface ObjectiveOptions {
  readonly objective: Objective;
  readonly topK: number;
  readonly lambda: number;
  readonly usePredLabel: boolean;
  readonly temperature: number;
  readonly recallLevel: number;
}

/**
 * Accumulates the objective over the validation set chunk by chunk, as if the whole set were one
 * batch (SPEC §5): `loss_id` is the mean over all images, `loss_ood` the mean over all OOD
 * patches of all images; pseudo-OOD scores are pooled and the metric computed once. Chunks keep
 * the local logits ([n, patches, classes]) small.
 */
export class ObjectiveAccumulator {
  private n = 0;
  private patches = 0;
  private lossIdSum = 0;
  private lossOodSum = 0;
  private nOod = 0;
  private correct = 0;
  private readonly idScores: number[] = [];
  private readonly oodScores: number[] = [];

  constructor(private readonly o: ObjectiveOptions) {}

  /** @param global [n, C] logits @param local [n, g, g, C] logits @param labels [n] */
  add(global: Tensor<'float32'>, local: Tensor<'float32'>, labels: ArrayLike<number>): void {
    const n = global.dims[0]!;
    const c = global.dims[1]!;
    const p = local.data.length / (n * c);
    const r = locoop_loss(global, local, labels, { topK: this.o.topK, lambda: this.o.lambda, usePredLabel: this.o.usePredLabel });
    this.n += n;
    this.patches += n * p;
    this.lossIdSum += r.loss_id * n;
    this.lossOodSum += r.loss_ood * r.n_ood_patches;
    this.nOod += r.n_ood_patches;
    this.correct += (r.acc / 100) * n;
    if (this.o.objective.kind === 'scorer') {
      const s = pseudoOodScores(global, local, r.oodMask, this.o.objective.scorer, this.o.temperature);
      for (const x of s.id) this.idScores.push(x);
      for (const x of s.ood) this.oodScores.push(x);
    }
  }

  /** The figures over everything added. */
  result(): CandidateFigures {
    const loss_id = this.lossIdSum / this.n;
    const loss_ood = this.nOod ? this.lossOodSum / this.nOod : 0;
    const f: CandidateFigures = {
      locoop_loss: loss_id + this.o.lambda * loss_ood,
      loss_id,
      loss_ood,
      acc: (Math.round(this.correct) / this.n) * 100,
      ood_patch_percent: (this.nOod / this.patches) * 100,
    };
    const o = this.o.objective;
    if (o.kind === 'scorer') {
      if (this.oodScores.length === 0) {
        throw new Error(`no OOD patches among the validation images (top-K ${this.o.topK}): the pseudo-OOD ${o.metric} of ${o.scorer} is undefined; lower --locoop-top-k or use the loss objective`);
      }
      const m = oodMetrics(this.idScores, this.oodScores, { recallLevel: this.o.recallLevel });
      f[`${o.scorer}_auroc`] = m.AUROC;
      f[`${o.scorer}_fpr`] = m.FPR;
      f[`${o.scorer}_aupr`] = m.AUPR;
    }
    return f;
  }
}
