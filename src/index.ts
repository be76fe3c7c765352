/**
 * setar: SeTAR (selective low-rank approximation for out-of-distribution detection) for CLIP,
 * on ONNX Runtime. Every export below is public API.
 */
export { ClipModel, type ClipModelOptions, type ImageFeatures, type TokenIds } from './models/clip/model.js';
export { ClipPipeline, DEFAULT_TEMPLATE, fillTemplate, type Prediction } from './models/clip/pipeline.js';
export { ClipTokenizer, type TokenizedBatch, type EncodeBatchOptions } from './models/clip/tokenizer.js';
export { loadClipConfig, parseClipConfig, ConfigError, type ClipConfig, type ClipTextConfig, type ClipVisionConfig } from './models/clip/config.js';
export { clipLogits, l2Normalize } from './models/clip/logits.js';
export { writeRandomClip, VIT_B16_CONFIG } from './models/clip/random.js';
export { decodeImage, readImageHeader, ImageDecodeError, ImageTooLargeError, DEFAULT_MAX_PIXELS, type DecodedImage, type ImageHeader } from './image/decode.js';
export { preprocessClip, loadAndPreprocess, CLIP_MEAN, CLIP_STD, type PreprocessOptions } from './image/preprocess.js';
export { SafetensorsFile, Checkpoint, SafetensorsError, writeSafetensors, type TensorToWrite } from './io/safetensors.js';
export { svd, type SvdFactors } from './lowrank/svd.js';
export { getSvd, defaultSvdCacheDir } from './lowrank/svd-cache.js';
export { lowRankApprox, loraSplit, dropRank, pythonRound, type PruneMode } from './lowrank/lowrank.js';
export { parseLoraSettings, clipWeightName, LoraSettingsError, type LoraSetting, type WeightType } from './lowrank/settings.js';
export { applyLoraSettings } from './lowrank/apply.js';
export { mcm_score, l_mcm_score, gl_mcm_score, energy_score, entropy_score, var_score, SCORERS, computeScores } from './ood/scores.js';
export { auroc, aupr, fprAtRecall, oodMetrics, accuracy, benchmarkTable } from './ood/metrics.js';
export { locoop_loss, pseudoOodMetrics } from './ood/locoop.js';
export { tensor, type Tensor, type DType } from './tensor.js';
