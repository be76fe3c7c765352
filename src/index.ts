/**
 * setar: SeTAR (selective low-rank approximation for out-of-distribution detection) on ONNX
 * Runtime, for CLIP and Swin Transformer V2. Every export below is public API.
 */

// Model families: one interface, a registry keyed by config.json's model_type.
export type {
  ModelFamily, FamilyModel, FamilyDefaults, FamilyTower, FamilyLoadOptions, Classifier, Logits, SearchSubject, SearchTower, TrainSetup,
  TrainAugment, BundleParts, FamilyBase, LocoopInit, ContextTrainingRecipe, PromptContext, PromptContextSaveInfo,
} from './models/family.js';
export { registerFamily, resolveFamily, listFamilies, loadModel } from './models/registry.js';
export { ConfigError } from './models/common/config.js';
export { disposeHiddenStates, type HiddenStates } from './models/common/hidden-states.js';

// Devices (`--device`): where sessions run, device-resident tensors, bytes moved
export { resolveDevice, registerDevice } from './runtime/devices.js';
export { DeviceUnavailableError, parseDeviceRequest, type Device, type DeviceName, type DeviceRequest, type ResolvedDevice } from './runtime/device.js';
export { isDeviceTensor, disposeResident, type DeviceTensor, type Resident } from './runtime/device-tensor.js';
export { TransferCounter } from './runtime/transfers.js';

// CLIP
export { ClipModel, type ClipModelOptions, type ImageFeatures, type TokenIds } from './models/clip/model.js';
export { ClipPipeline, DEFAULT_TEMPLATE, fillTemplate, type Prediction } from './models/clip/pipeline.js';
export { ClipTokenizer, type TokenizedBatch, type EncodeBatchOptions } from './models/clip/tokenizer.js';
export { loadClipConfig, parseClipConfig, type ParseClipConfigOptions, type ClipConfig, type ClipTextConfig, type ClipVisionConfig } from './models/clip/config.js';
export { clipLogits, l2Normalize } from './models/clip/logits.js';
export { clipWeightName } from './models/clip/weights.js';
export { writeRandomClip, VIT_B16_CONFIG } from './models/clip/random.js';
export { clipFamily } from './models/clip/family.js';
export type { ClipPromptEncoder, TextLayer0 } from './models/clip/prompts.js';

// LoCoOp prompt models (CLIP with a learned context, SPEC §9)
export { readLocoopContext, checkLocoopContext, LocoopCheckpointError, type LocoopContext, type ReadLocoopOptions } from './models/locoop/context.js';
export { LOCOOP_CLASS_TEMPLATE, locoopClassPrompts, truncateLocoopIds, locoopInputsEmbeds } from './models/locoop/prompt.js';
export { encodeLocoopTexts, encodeLocoopTokenRows } from './models/locoop/text.js';
export { coopTokenBuffers, type CoopTokenBuffers } from './models/locoop/coop-buffers.js';
export { writeLocoopCheckpoint, sgdStateDict, type LocoopCheckpointContents, type LocoopCheckpointFiles, type SgdGroup } from './models/locoop/checkpoint-writer.js';
export { initLocoopContext, type LocoopContextInit } from './models/locoop/init.js';
export { locoopFamily } from './models/locoop/family.js';

// Swin Transformer V2
export { SwinV2Model, type SwinV2Outputs } from './models/swinv2/model.js';
export { loadSwinV2Config, parseSwinV2Config, type SwinV2Config } from './models/swinv2/config.js';
export { swinWeightName } from './models/swinv2/weights.js';
export { swinPreprocess } from './models/swinv2/preprocess.js';
export { swinV2Family } from './models/swinv2/family.js';

// Images, checkpoints
export { decodeImage, readImageHeader, ImageDecodeError, ImageTooLargeError, DEFAULT_MAX_PIXELS, type DecodedImage, type ImageHeader } from './image/decode.js';
export { preprocessClip, loadAndPreprocess, CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, type PreprocessOptions } from './image/preprocess.js';
export { SafetensorsFile, Checkpoint, SafetensorsError, writeSafetensors, type TensorToWrite } from './io/safetensors.js';
export { openTensorSource, TensorSourceError, type TensorSource, type TensorInfo } from './io/tensor-source.js';
export { openTensorFile, OverlayTensorSource, checkOverlay } from './io/tensor-overlay.js';
export { resolveModel, HubError, type ResolveModelOptions, type DownloadProgress } from './hub/resolve-model.js';
export { hubSettings, type HubSettings } from './hub/hub-env.js';

// Low-rank approximation (SPEC §2)
export { svd, type SvdFactors } from './lowrank/svd.js';
export { getSvd, defaultSvdCacheDir } from './lowrank/svd-cache.js';
export { lowRankApprox, loraSplit, dropRank, pythonRound, type PruneMode } from './lowrank/lowrank.js';
export { parseLoraSettings, LoraSettingsError, type LowRankSetting, type LowRankTarget, type LayerId, type WeightSlot, type WeightType, type Tower } from './lowrank/settings.js';
export { applyLoraSettings } from './lowrank/apply.js';

// Scores, metrics, the LoCoOp objective (SPEC §3–5)
export { mcm_score, l_mcm_score, gl_mcm_score, energy_score, entropy_score, var_score, SCORERS, computeScores } from './ood/scores.js';
export { auroc, aupr, fprAtRecall, oodMetrics, accuracy, benchmarkTable } from './ood/metrics.js';
export { locoop_loss, pseudoOodMetrics } from './ood/locoop.js';

export { tensor, type Tensor, type DType } from './tensor.js';
