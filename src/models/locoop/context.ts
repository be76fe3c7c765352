import { closeSync, openSync, readSync } from 'node:fs';
import { SafetensorsError, SafetensorsFile } from '../../io/safetensors.js';
import { readTorchPickle, TensorRef } from '../../io/torch-checkpoint.js';
import { describePickled } from '../../io/torch-unpickler.js';
import type { ClipTextConfig } from '../clip/config.js';

/**
 * A LoCoOp prompt context (SPEC §9): `n` learned vectors of the text tower's width, shared by all
 * classes, inserted after the start token of every prompt. Stored raw — position embeddings are
 * added when a prompt is built.
 */
export interface LocoopContext {
  /** [n, width] row-major, float32 (F16 / BF16 checkpoints widened exactly). */
  readonly ctx: Float32Array;
  /** Number of context vectors (`n_ctx`), from the checkpoint. */
  readonly n: number;
  /** Width of each vector; must be the text hidden size ({@link checkLocoopContext}). */
  readonly width: number;
  /** The element type stored in the file. */
  readonly dtype: 'F32' | 'F16' | 'BF16' | 'F64';
  /** The file it was read from, for messages. */
  readonly source: string;
  /** Dassl's `epoch`, when the file records one. */
  readonly epoch?: number;
}

/** Options of {@link readLocoopContext}. */
export interface ReadLocoopOptions {
  /** The `n_ctx` the caller expects (`--n-ctx`, config `"n_ctx"`); a checkpoint with another count is an error naming both. */
  readonly nCtx?: number;
  /** How the caller spelled it, for that message (default `n_ctx`), e.g. `--n-ctx` or `config key "n_ctx"`. */
  readonly nCtxName?: string;
}

/** A LoCoOp checkpoint that cannot be used; the message names the file and what was expected. */
export class LocoopCheckpointError extends Error {
  constructor(message: string, readonly file: string) {
    super(message);
    this.name = 'LocoopCheckpointError';
  }
}

const FLOAT_TYPES = ['F32', 'F16', 'BF16', 'F64'] as const;

/**
 * Reads the context of a LoCoOp checkpoint: LoCoOp's `prompt_learner/model.pth.tar-<epoch>` (a
 * torch.save zip in Dassl's layout, `{"state_dict": {"ctx", "token_prefix", "token_suffix"},
 * "epoch", "optimizer", "scheduler", "val_result"}`), or a `ctx.safetensors` with a tensor `ctx`.
 * Only `state_dict.ctx` is taken (a bare state dict with `ctx` at the top is accepted too). The
 * pickle's Python objects (Dassl's warm-up scheduler keeps a CosineAnnealingLR object holding the
 * SGD object) are read as inert placeholders: nothing is imported or called.
 *
 * @example
 * const c = readLocoopContext('locoop/prompt_learner/model.pth.tar-50', { nCtx: 16 });
 * // c.n = 16, c.width = 512, c.ctx: Float32Array(8192)
 */
export function readLocoopContext(file: string, options: ReadLocoopOptions = {}): LocoopContext {
  const { nCtx } = options;
  const name = options.nCtxName ?? 'n_ctx';
  if (nCtx !== undefined && !(Number.isInteger(nCtx) && nCtx >= 1)) {
    throw new RangeError(`${name} must be a positive integer, got ${nCtx}`);
  }
  const c = isSafetensors(file) ? fromSafetensors(file) : fromTorch(file);
  if (nCtx !== undefined && nCtx !== c.n) {
    throw new LocoopCheckpointError(`'${file}': the checkpoint's context has ${c.n} vectors (n_ctx ${c.n}), but ${name} ${nCtx} was given`, file);
  }
  return c;
}

/**
 * Checks that a context fits a CLIP text tower: its width is `text_config.hidden_size`, and start
 * token + n vectors + end token fit in `max_position_embeddings`.
 */
export function checkLocoopContext(c: LocoopContext, text: Pick<ClipTextConfig, 'hidden_size' | 'max_position_embeddings'>): void {
  if (c.width !== text.hidden_size) {
    throw new LocoopCheckpointError(
      `'${c.source}': the LoCoOp context has width ${c.width}, but this CLIP model's text hidden size (text_config.hidden_size) is ${text.hidden_size}; the checkpoint was trained for another CLIP`, c.source);
  }
  if (c.n > text.max_position_embeddings - 2) {
    throw new LocoopCheckpointError(
      `'${c.source}': n_ctx ${c.n} leaves no room for the start and end tokens in ${text.max_position_embeddings} positions (at most ${text.max_position_embeddings - 2})`, c.source);
  }
}

/** safetensors files start with an 8-byte header length and then '{'; everything else goes to the torch reader, whose errors name the format. */
function isSafetensors(file: string): boolean {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new LocoopCheckpointError(`cannot open LoCoOp checkpoint '${file}': ${(e as Error).message}`, file);
  }
  try {
    const head = Buffer.alloc(9);
    return readSync(fd, head, 0, 9, 0) === 9 && head[8] === 0x7b && head.readUInt32LE(4) === 0;
  } finally {
    closeSync(fd);
  }
}

function fromTorch(file: string): LocoopContext {
  return readTorchPickle(file, (root, read) => {
    const fail = (msg: string): never => { throw new LocoopCheckpointError(`'${file}': ${msg}`, file); };
    if (!(root instanceof Map)) {
      return fail(`the pickle holds ${describePickled(root)}, not Dassl's checkpoint dict {"state_dict", "epoch", …}; expected LoCoOp's prompt_learner/model.pth.tar-<epoch>`);
    }
    const keys = (m: Map<unknown, unknown>) => [...m.keys()].slice(0, 8).map((k) => (typeof k === 'string' ? `'${k}'` : describePickled(k))).join(', ');
    let where = 'state_dict.ctx';
    let holder = root.get('state_dict');
    if (holder === undefined && root.has('ctx')) {
      holder = root;
      where = 'ctx';
    }
    if (!(holder instanceof Map)) {
      return fail(holder === undefined
        ? `no "state_dict" (top-level keys: ${keys(root)}); expected LoCoOp's prompt_learner/model.pth.tar-<epoch> as Dassl saves it`
        : `"state_dict" is ${describePickled(holder)}, not a dict`);
    }
    const ref = holder.get('ctx');
    if (ref === undefined) return fail(`state_dict has no 'ctx' (keys: ${keys(holder)}); is this a prompt-learner checkpoint?`);
    if (!(ref instanceof TensorRef)) return fail(`${where} is ${describePickled(ref)}, not a tensor`);
    const t = read(ref, where);
    const dtype = t.dtype;
    if (!(FLOAT_TYPES as readonly string[]).includes(dtype)) return fail(`${where} has dtype ${dtype}; expected a float tensor (F32, F16, BF16 or F64)`);
    const epoch = root.get('epoch');
    return context(file, where, t.shape, t.data instanceof Float32Array ? t.data : Float32Array.from(t.data as Float64Array), dtype as LocoopContext['dtype'],
      typeof epoch === 'number' ? epoch : undefined);
  }, { placeholders: true });
}

function fromSafetensors(file: string): LocoopContext {
  let f: SafetensorsFile;
  try {
    f = SafetensorsFile.open(file);
  } catch (e) {
    if (e instanceof SafetensorsError) throw new LocoopCheckpointError(`'${file}' is neither a torch.save zip nor a safetensors file: ${e.message}`, file);
    throw e;
  }
  try {
    if (!f.entries.has('ctx')) {
      throw new LocoopCheckpointError(`'${file}' has no tensor 'ctx' (tensors: ${[...f.entries.keys()].slice(0, 8).map((k) => `'${k}'`).join(', ')})`, file);
    }
    const e = f.entry('ctx');
    if (!(FLOAT_TYPES as readonly string[]).includes(e.dtype)) {
      throw new LocoopCheckpointError(`'${file}': tensor 'ctx' has dtype ${e.dtype}; expected F32, F16, BF16 or F64`, file);
    }
    return context(file, 'ctx', e.shape, f.readFloat32('ctx'), e.dtype as LocoopContext['dtype']);
  } finally {
    f.close();
  }
}

function context(file: string, where: string, shape: readonly number[], data: Float32Array, dtype: LocoopContext['dtype'], epoch?: number): LocoopContext {
  if (shape.length === 3) {
    throw new LocoopCheckpointError(
      `'${file}': ${where} has shape [${shape.join(', ')}], a class-specific context [n_cls, n_ctx, width]; setar reads LoCoOp's context shared by all classes, [n_ctx, width]`, file);
  }
  if (shape.length !== 2 || shape[0]! < 1 || shape[1]! < 1) {
    throw new LocoopCheckpointError(`'${file}': ${where} has shape [${shape.join(', ')}]; expected [n_ctx, width]`, file);
  }
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) throw new LocoopCheckpointError(`'${file}': ${where} holds a non-finite value (${data[i]}) at flat index ${i}`, file);
  }
  return { ctx: data, n: shape[0]!, width: shape[1]!, dtype, source: file, ...(epoch !== undefined ? { epoch } : {}) };
}

