import { join } from 'node:path';
import { writeFileAtomic } from '../../io/atomic.js';
import { writeSafetensors } from '../../io/safetensors.js';
import { PyFloat, PyOrderedDict, SaveTensor, writeTorchSave, type SaveValue } from '../../io/torch-save.js';
import type { CoopTokenBuffers } from './coop-buffers.js';
import type { LocoopContext } from './context.js';

/** What {@link writeLocoopCheckpoint} writes. */
export interface LocoopCheckpointContents {
  /** The context, stored raw (no positions) as float32 `state_dict.ctx` [n, width]. */
  readonly context: Pick<LocoopContext, 'ctx' | 'n' | 'width'>;
  /** Dassl's epoch number; the file is `model.pth.tar-<epoch>`. */
  readonly epoch: number;
  /** CoOp's `token_prefix` / `token_suffix` of the class prompts ({@link coopTokenBuffers}); omitted if absent. */
  readonly buffers?: CoopTokenBuffers;
  /** Dassl's `optimizer` entry (e.g. {@link sgdStateDict}); None if absent. */
  readonly optimizer?: SaveValue;
  /** Dassl's `scheduler` entry, plain data only; None if absent. */
  readonly scheduler?: SaveValue;
  /** Dassl's `val_result`; None if absent. */
  readonly valResult?: number | null;
}

/** Paths {@link writeLocoopCheckpoint} wrote. */
export interface LocoopCheckpointFiles {
  /** `OUT/prompt_learner/model.pth.tar-<epoch>` */
  readonly checkpoint: string;
  /** `OUT/ctx.safetensors` */
  readonly safetensors: string;
}

/**
 * Writes a LoCoOp prompt learner in Dassl's layout, for LoCoOp's own code (Dassl `load_model`),
 * the official SeTAR loader and setar:
 *   - `OUT/prompt_learner/model.pth.tar-<epoch>`: torch.save of `{"state_dict": OrderedDict(ctx,
 *     token_prefix, token_suffix), "epoch", "optimizer", "scheduler", "val_result"}` holding only
 *     plain data and tensors, so `torch.load` reads it with `weights_only` True or False;
 *   - `OUT/prompt_learner/checkpoint`: the latest file's name, as Dassl's save_checkpoint writes it;
 *   - `OUT/ctx.safetensors`: the context alone, tensor `ctx` [n, width] float32.
 * Each file is written atomically.
 */
export function writeLocoopCheckpoint(out: string, contents: LocoopCheckpointContents): LocoopCheckpointFiles {
  const { context: c, epoch, buffers } = contents;
  if (!(Number.isSafeInteger(epoch) && epoch >= 0)) throw new RangeError(`epoch must be a non-negative integer, got ${epoch}`);
  if (c.ctx.length !== c.n * c.width) throw new RangeError(`context holds ${c.ctx.length} values, [${c.n}, ${c.width}] needs ${c.n * c.width}`);
  if (buffers && buffers.width !== c.width) throw new RangeError(`token buffers have width ${buffers.width}, the context ${c.width}`);
  const stateDict = new Map<string, SaveValue>([['ctx', new SaveTensor('F32', [c.n, c.width], c.ctx)]]);
  if (buffers) {
    stateDict.set('token_prefix', new SaveTensor('F32', [buffers.classes, 1, c.width], buffers.tokenPrefix));
    stateDict.set('token_suffix', new SaveTensor('F32', [buffers.classes, buffers.suffixLength, c.width], buffers.tokenSuffix));
  }
  const name = `model.pth.tar-${epoch}`;
  const dir = join(out, 'prompt_learner');
  const checkpoint = join(dir, name);
  writeTorchSave(checkpoint, new Map<string, SaveValue>([
    ['state_dict', new PyOrderedDict(stateDict)],
    ['epoch', epoch],
    ['optimizer', contents.optimizer ?? null],
    ['scheduler', contents.scheduler ?? null],
    ['val_result', contents.valResult === undefined || contents.valResult === null ? null : new PyFloat(contents.valResult)],
  ]));
  writeFileAtomic(join(dir, 'checkpoint'), `${name}\n`);
  const safetensors = join(out, 'ctx.safetensors');
  writeSafetensors(safetensors, { ctx: { dtype: 'F32', shape: [c.n, c.width], data: c.ctx } }, { format: 'pt', n_ctx: String(c.n), epoch: String(epoch) });
  return { checkpoint, safetensors };
}

/** SGD hyper-parameters of one parameter group (SPEC §9 defaults for LoCoOp training). */
export interface SgdGroup {
  readonly lr: number;
  readonly momentum: number;
  readonly weightDecay: number;
  /** The schedule's base lr (`initial_lr`, set by torch's LR schedulers). */
  readonly initialLr?: number;
}

/**
 * `torch.optim.SGD.state_dict()` of an optimizer over the context alone (parameter 0), with its
 * momentum buffer when it has one: `{"state": {0: {"momentum_buffer"}}, "param_groups": [{…,
 * "params": [0]}]}` — what Dassl stores under `"optimizer"`.
 */
export function sgdStateDict(group: SgdGroup, momentumBuffer?: { readonly data: Float32Array; readonly shape: readonly [number, number] }): SaveValue {
  const state = new Map<number, SaveValue>();
  if (momentumBuffer) state.set(0, new Map([['momentum_buffer', new SaveTensor('F32', momentumBuffer.shape, momentumBuffer.data)]]));
  const g = new Map<string, SaveValue>([
    ['lr', new PyFloat(group.lr)], ['momentum', new PyFloat(group.momentum)], ['dampening', 0], ['weight_decay', new PyFloat(group.weightDecay)],
    ['nesterov', false], ['maximize', false], ['foreach', null], ['differentiable', false],
  ]);
  if (group.initialLr !== undefined) g.set('initial_lr', new PyFloat(group.initialLr));
  g.set('params', [0]);
  return new Map<string, SaveValue>([['state', state], ['param_groups', [g]]]);
}
