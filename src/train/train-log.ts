import { join } from 'node:path';
import type { EvalResult } from '../eval/run-eval.js';
import { writeFileAtomic } from '../io/atomic.js';

/** One optimiser step's figures: a row of train_log.csv / train_log.jsonl. */
export interface TrainLogRow {
  step: number;
  epoch: number;
  lr: number;
  locoop_loss: number;
  loss_id: number;
  loss_ood: number;
  acc: number;
  ood_patch_percent: number;
  /** Bytes the step moved from host to device and back (devices other than the CPU only). */
  bytes_up?: number;
  bytes_down?: number;
}

/** Progress hooks of the trainers (`runFinetune`). */
export interface FinetuneHooks {
  readonly onStep?: (step: number, total: number, row: TrainLogRow) => void;
  readonly log?: (line: string) => void;
  /** A line the user should see however the progress is shown (e.g. a default chosen from the data). */
  readonly notice?: (line: string) => void;
}

/** What a training run did. */
export interface FinetuneResult {
  readonly steps: number;
  readonly resumedFromEpoch: number;
  readonly log: readonly TrainLogRow[];
  /** The merged model (SeTAR+FT, LoRA); for `--method locoop`, the CLIP folder the context belongs to (unchanged). */
  readonly modelDir: string;
  /** The LoCoOp context written: Dassl's `prompt_learner/model.pth.tar-<epoch>` and `ctx.safetensors` (LoCoOp models only). */
  readonly context?: { readonly checkpoint: string; readonly safetensors: string };
  /** K of the LoCoOp loss used (with `--method locoop` and no K given: SPEC §9's 200 scaled to the class count). */
  readonly locoopTopK: number;
  readonly evaluation: EvalResult | null;
}

/** The training loss became NaN or infinite; the last good checkpoint is kept. */
export class NonFiniteLossError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NonFiniteLossError';
  }
}

const CSV_COLUMNS: readonly (keyof TrainLogRow)[] = ['step', 'epoch', 'lr', 'locoop_loss', 'loss_id', 'loss_ood', 'acc', 'ood_patch_percent'];
/** Added to train_log.csv where a step moves bytes between host and device (not on the CPU). */
const BYTES_COLUMNS: readonly (keyof TrainLogRow)[] = ['bytes_up', 'bytes_down'];

/** Writes `out/train_log.csv` and `out/train_log.jsonl` (atomically); `bytes` adds the bytes-moved columns. */
export function writeTrainLogs(out: string, rows: readonly TrainLogRow[], bytes = rows.some((r) => r.bytes_up !== undefined)): void {
  const columns = bytes ? [...CSV_COLUMNS, ...BYTES_COLUMNS] : CSV_COLUMNS;
  writeFileAtomic(join(out, 'train_log.csv'), [columns.join(','), ...rows.map((r) => columns.map((c) => r[c] ?? '').join(','))].join('\n') + '\n');
  writeFileAtomic(join(out, 'train_log.jsonl'), rows.map((r) => JSON.stringify(r)).join('\n') + (rows.length ? '\n' : ''));
}
