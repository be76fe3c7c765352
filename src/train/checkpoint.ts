import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../io/atomic.js';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../io/safetensors.js';
import { NonFiniteLossError, type TrainLogRow } from './train-log.js';

/** Where a training run stands after an epoch: enough to go on as if it had never stopped. */
export interface TrainProgress {
  readonly epoch: number;
  readonly step: number;
  /** The shuffling RNG's state. */
  readonly rng: number;
  readonly log: readonly TrainLogRow[];
}

/**
 * A training run's end-of-epoch checkpoint in `<out>/checkpoint`: the trained tensors (and the
 * optimiser's momentum) in `<kind>-epoch<e>.safetensors`, and `state.json`, written last and
 * atomically, which names that file. A run killed between the two writes therefore resumes from
 * a matching pair; a fingerprint of the settings keeps a run from resuming another's work.
 */
export class EpochCheckpoint {
  readonly dir: string;
  /** The last epoch on disk (resumed or saved by this run), or null before the first. */
  private lastEpoch: number | null = null;

  /** `kind` names what is trained (`adapters`, `context`): the tensor file and state.json's key. */
  constructor(out: string, private readonly fingerprint: string, private readonly kind: string) {
    this.dir = join(out, 'checkpoint');
  }

  get exists(): boolean {
    return existsSync(join(this.dir, 'state.json'));
  }

  /**
   * The last finished epoch's progress, with its tensor file open for `restore` (closed after),
   * or null when no epoch has finished.
   */
  resume(restore: (tensors: SafetensorsFile) => void): TrainProgress | null {
    if (!this.exists) return null;
    const st = JSON.parse(readFileSync(join(this.dir, 'state.json'), 'utf8')) as TrainProgress & { fingerprint: string } & Record<string, unknown>;
    if (st.fingerprint !== this.fingerprint) throw new Error(`'${this.dir}' holds a checkpoint of a run with other settings; use another --out folder or delete it`);
    // checkpoints from before per-epoch files named a fixed `<kind>.safetensors`
    const file = typeof st[this.kind] === 'string' ? st[this.kind] as string : `${this.kind}.safetensors`;
    const f = SafetensorsFile.open(join(this.dir, file));
    try {
      restore(f);
    } finally {
      f.close();
    }
    this.lastEpoch = st.epoch;
    return { epoch: st.epoch, step: st.step, rng: st.rng, log: st.log };
  }

  /**
   * Where the run starts: after the last finished epoch (its tensors restored, the shuffling RNG
   * set back, a line logged) or at the beginning. The log is a fresh copy the run appends to.
   */
  start(restore: (tensors: SafetensorsFile) => void, rng: { state: number }, log: (line: string) => void): { epoch: number; step: number; log: TrainLogRow[] } {
    const resumed = this.resume(restore);
    if (!resumed) return { epoch: 0, step: 0, log: [] };
    rng.state = resumed.rng;
    log(`resuming after epoch ${resumed.epoch} (step ${resumed.step})`);
    return { epoch: resumed.epoch, step: resumed.step, log: [...resumed.log] };
  }

  /** Writes the epoch's tensors, then the state naming them; removes older epochs' files. */
  save(progress: TrainProgress, tensors: Record<string, TensorToWrite>): void {
    mkdirSync(this.dir, { recursive: true });
    const file = `${this.kind}-epoch${progress.epoch}.safetensors`;
    writeSafetensors(join(this.dir, file), tensors);
    const { epoch, step, rng, log } = progress;
    writeFileAtomic(join(this.dir, 'state.json'), JSON.stringify({ fingerprint: this.fingerprint, epoch, step, rng, log, [this.kind]: file }));
    const stale = new RegExp(`^${this.kind}(-epoch\\d+)?\\.safetensors$`);
    for (const old of readdirSync(this.dir)) if (stale.test(old) && old !== file) rmSync(join(this.dir, old), { force: true });
    this.lastEpoch = epoch;
  }

  /** The error that stops a run whose loss stopped being finite, naming what is kept. */
  nonFiniteLoss(loss: number, step: number, epoch: number): NonFiniteLossError {
    const kept = this.lastEpoch !== null ? `The last good checkpoint (after epoch ${this.lastEpoch}) is kept in '${this.dir}'.` : 'No epoch had finished, so there is no checkpoint.';
    return new NonFiniteLossError(`the training loss became ${loss} at step ${step} (epoch ${epoch}); stopping. ${kept} Lower --learning-rate.`);
  }
}
