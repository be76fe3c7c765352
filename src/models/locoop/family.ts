import { clipFamily, ClipFamilyModel, poolIndex } from '../clip/family.js';
import { ClipPipeline, fillTemplate } from '../clip/pipeline.js';
import { CLIP_CONTEXT_LENGTH } from '../clip/tokenizer.js';
import { clipTrainGraph } from '../clip/train-graph.js';
import { onDevice } from '../common/device-options.js';
import type { TrainLossOptions } from '../common/locoop-train-graph.js';
import type { FamilyLoadOptions, ModelFamily, PromptContext, PromptContextSaveInfo, TrainSetup } from '../family.js';
import { writeLocoopCheckpoint, sgdStateDict } from './checkpoint-writer.js';
import { checkLocoopContext, readLocoopContext, type LocoopContext } from './context.js';
import { coopTokenBuffers } from './coop-buffers.js';
import { DEFAULT_N_CTX, initLocoopContext } from './init.js';
import { LOCOOP_CLASS_TEMPLATE, truncateLocoopIds } from './prompt.js';
import { locoopPromptEncoder } from './prompt-encoder.js';
import { locoopTrainFeeds, locoopTrainText } from './train-graph.js';

/**
 * The context of a loaded LoCoOp model: the prompts read it at every call, so {@link set} takes
 * effect at once. Search and SeTAR+FT never call `set`; only `setar finetune --method locoop` does.
 */
class LocoopPromptContext implements PromptContext {
  constructor(private readonly clip: ClipPipeline, public context: LocoopContext) {}

  get n(): number {
    return this.context.n;
  }

  get width(): number {
    return this.context.width;
  }

  get source(): string {
    return this.context.source;
  }

  get epoch(): number | undefined {
    return this.context.epoch;
  }

  value(): Float32Array {
    return Float32Array.from(this.context.ctx);
  }

  set(ctx: Float32Array): void {
    const c = this.context;
    if (ctx.length !== c.n * c.width) throw new RangeError(`the new context has ${ctx.length} values; [${c.n}, ${c.width}] needs ${c.n * c.width}`);
    const bad = ctx.findIndex((x) => !Number.isFinite(x));
    if (bad >= 0) throw new RangeError(`the new context holds a non-finite value (${ctx[bad]}) at flat index ${bad}`);
    this.context = { ...c, ctx: Float32Array.from(ctx), dtype: 'F32' };
  }

  async trainSetup(loss: TrainLossOptions, prompts: { readonly labels: readonly string[]; readonly template: string }): Promise<TrainSetup> {
    const model = this.clip.model;
    const c = this.context;
    const layer0 = await locoopPromptEncoder(this.clip, () => c).layer0(prompts.labels.map((l) => fillTemplate(prompts.template, l)));
    const text = locoopTrainText(model.textEmbeddingTables().position_embedding, c.n, c.width);
    const graph = clipTrainGraph(model.config, model.source, new Map(), model.logitScale, loss, { text });
    return {
      graph,
      feeds: { ...locoopTrainFeeds(layer0, c.n), pool_index: poolIndex(layer0.hidden, layer0.positions) },
      patchesPerImage: model.grid ** 2,
    };
  }

  save(out: string, info: PromptContextSaveInfo): { checkpoint: string; safetensors: string } {
    const model = this.clip.model;
    const c = this.context;
    const positions = Math.min(CLIP_CONTEXT_LENGTH, model.config.text_config.max_position_embeddings);
    const rows = info.labels.map((l) => truncateLocoopIds(this.clip.tokenizer.encode(fillTemplate(info.template, l)), c.n, positions));
    const o = info.optimizer;
    return writeLocoopCheckpoint(out, {
      context: c,
      epoch: info.epoch,
      buffers: coopTokenBuffers(rows, c.n, model.textEmbeddingTables().token_embedding, c.width, positions),
      optimizer: o ? sgdStateDict({ lr: o.lr, momentum: o.momentum, weightDecay: o.weightDecay, initialLr: o.initialLr }, o.momentumBuffer ? { data: o.momentumBuffer, shape: [c.n, c.width] } : undefined) : undefined,
      scheduler: info.scheduler,
    });
  }
}

/**
 * A LoCoOp model (SPEC §9): a CLIP model whose class prompts carry a learned context — CLIP's
 * image tower and text weights unchanged, every text feature from the context's prompts.
 */
class LocoopFamilyModel extends ClipFamilyModel {
  constructor(clip: ClipPipeline, options: FamilyLoadOptions, readonly promptContext: LocoopPromptContext) {
    super(clip, options, locoopFamily, locoopPromptEncoder(clip, () => promptContext.context));
  }
}

/** The context a load asks for: a checkpoint file, or a fresh one (`locoopInit`); checked against the model. */
function contextFor(clip: ClipPipeline, options: FamilyLoadOptions, read: LocoopContext | null): LocoopContext {
  const model = clip.model;
  const tc = model.config.text_config;
  const c = read ?? initLocoopContext(clip.tokenizer, model.textEmbeddingTables(), tc.hidden_size, {
    phrase: options.locoopInit?.phrase, nCtx: options.nCtx, nCtxName: options.nCtxName, seed: options.locoopInit?.seed ?? 0,
  });
  checkLocoopContext(c, { hidden_size: tc.hidden_size, max_position_embeddings: Math.min(CLIP_CONTEXT_LENGTH, tc.max_position_embeddings) });
  return c;
}

/**
 * LoCoOp (Miyai et al.; SPEC §9): a CLIP folder plus a prompt context — LoCoOp's
 * `prompt_learner/model.pth.tar-<epoch>` or `ctx.safetensors` (`locoopCkpt`), or a fresh one to
 * train (`locoopInit`). Class prompts are `"{label}."`: the context takes the place of
 * "a photo of a".
 */
export const locoopFamily: ModelFamily = {
  name: 'locoop',
  displayName: 'LoCoOp',
  modelTypes: [],
  officialModelTypes: ['LoCoOp'],
  buildsOn: {
    family: clipFamily.name,
    selectedBy: ['locoopCkpt', 'locoopInit'],
    given: 'a LoCoOp context (--locoop-ckpt FILE or config key "locoop_ckpt"; or training one with --method locoop)',
  },
  towers: clipFamily.towers,
  layerIds: clipFamily.layerIds,
  defaults: {
    ...clipFamily.defaults,
    template: LOCOOP_CLASS_TEMPLATE,
    // SPEC §9: LoCoOp's own training recipe (Dassl configs of the LoCoOp code)
    contextTraining: {
      lambda: 0.25, topKShare: 0.2, nCtx: DEFAULT_N_CTX, shots: 16, learningRate: 0.002, momentum: 0.9, weightDecay: 5e-4,
      epochs: 50, warmupEpochs: 1, warmupLr: 1e-5, batchSize: 32, cropScale: [0.08, 1],
    },
  },
  async load(dir, options = {}) {
    if (options.locoopCkpt === undefined && options.locoopInit === undefined) {
      throw new RangeError(`a LoCoOp model needs its context: give locoopCkpt (LoCoOp's prompt_learner/model.pth.tar-<epoch> or a ctx.safetensors) or locoopInit, besides the CLIP folder '${dir}'`);
    }
    if (options.locoopCkpt !== undefined && options.locoopInit !== undefined) {
      throw new RangeError('give a LoCoOp context file (locoopCkpt) or a fresh context (locoopInit), not both');
    }
    // the checkpoint first: a wrong file fails before the CLIP weights load
    const read = options.locoopCkpt !== undefined ? readLocoopContext(options.locoopCkpt, { nCtx: options.nCtx, nCtxName: options.nCtxName }) : null;
    const o = onDevice(options);
    const clip = await ClipPipeline.load(dir, o);
    try {
      return new LocoopFamilyModel(clip, o, new LocoopPromptContext(clip, contextFor(clip, o, read)));
    } catch (e) {
      await clip.dispose();
      throw e;
    }
  },
};
