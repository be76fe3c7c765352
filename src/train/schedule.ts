/** Learning-rate schedules of transformers' `get_scheduler`. */
export const LR_SCHEDULES = ['cosine', 'linear', 'constant', 'constant_with_warmup'] as const;
export type LrSchedule = (typeof LR_SCHEDULES)[number];

/**
 * The learning rate at optimiser step `step` (0-based, the rate used for that step), as
 * transformers' schedulers compute it: linear warm-up over `warmup` steps, then cosine (half a
 * cycle) or linear decay to 0 at `total` steps, or constant.
 */
export function learningRate(schedule: LrSchedule, base: number, step: number, total: number, warmup = 0): number {
  if (step < warmup) return (base * step) / Math.max(1, warmup);
  if (schedule === 'constant' || schedule === 'constant_with_warmup') return base;
  const progress = (step - warmup) / Math.max(1, total - warmup);
  if (schedule === 'linear') return base * Math.max(0, (total - step) / Math.max(1, total - warmup));
  return base * Math.max(0, 0.5 * (1 + Math.cos(Math.PI * progress)));
}

/**
 * The learning rate of epoch `epoch` (0-based) under Dassl's constant warm-up scheduler wrapping
 * `CosineAnnealingLR(T_max = epochs)`, stepped once per epoch (LoCoOp's trainer, SPEC §9):
 * `warmupLr` for the first `warmupEpochs` epochs, then `base·(1 + cos(π·(epoch − warmupEpochs) / epochs)) / 2`
 * — the cosine starts at `base` right after the warm-up and runs with Dassl's T_max of all epochs.
 */
export function dasslEpochLr(base: number, epoch: number, epochs: number, warmupEpochs: number, warmupLr: number): number {
  if (epoch < warmupEpochs) return warmupLr;
  return (base * (1 + Math.cos((Math.PI * (epoch - warmupEpochs)) / Math.max(1, epochs)))) / 2;
}
