import { readFile } from 'node:fs/promises';
import { openDevice } from '../config/device.js';
import { resolveModel } from '../hub/resolve-model.js';
import { DEVICE_REQUESTS, type DeviceRequest, type ResolvedDevice } from '../runtime/device.js';
import { DownloadBar } from './download-progress.js';

/** An error caused by what the user gave (flags, files); printed without a stack trace. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

async function readText(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read ${what} '${file}': ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file' : (e as Error).message}`);
  }
}

/**
 * A list of strings from a file: a JSON array of strings, or else one entry per line (UTF-8;
 * `\r\n` accepted; one final newline does not make an extra empty entry). A file whose first
 * non-blank character is `[` is JSON: it parses as an array of strings or fails with the
 * parser's message (a truncated array is never read as one line).
 */
export async function readStringList(file: string, what: string, options: { allowEmptyEntries: boolean }): Promise<string[]> {
  const text = await readText(file, what);
  if (text.replace(/^\uFEFF/, '').trimStart().startsWith('[')) {
    let json: unknown;
    try {
      json = JSON.parse(text.replace(/^\uFEFF/, ''));
    } catch (e) {
      throw new UsageError(`${what} '${file}' starts with '[' but is not a valid JSON array: ${jsonError(e as Error, text)}`);
    }
    if (!Array.isArray(json)) throw new UsageError(`${what} '${file}' starts with '[' but is not a JSON array`);
    const bad = json.findIndex((x) => typeof x !== 'string');
    if (bad >= 0) throw new UsageError(`${what} '${file}': entry ${bad} is ${JSON.stringify(json[bad])}, expected a string`);
    if (!options.allowEmptyEntries) {
      const empty = json.findIndex((x) => (x as string).trim() === '');
      if (empty >= 0) throw new UsageError(`${what} '${file}': entry ${empty} is empty`);
    }
    return json as string[];
  }
  const lines = text.replace(/^\uFEFF/, '').split(/\r?\n/);
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  if (!options.allowEmptyEntries) {
    const empty = lines.findIndex((l) => l.trim() === '');
    if (empty >= 0) throw new UsageError(`${what} '${file}': line ${empty + 1} is empty`);
  }
  return lines;
}

/** JSON.parse's message with where it stopped as line and column (Node says only "position N", or nothing at the end). */
function jsonError(e: Error, text: string): string {
  const m = /position (\d+)/.exec(e.message);
  const pos = m ? Number(m[1]) : /end of JSON/i.test(e.message) ? text.length : -1;
  if (pos < 0) return e.message;
  const before = text.slice(0, pos).split('\n');
  return `${e.message}${m ? '' : ` at position ${pos}`} (line ${before.length}, column ${before.at(-1)!.length + 1})`;
}

/** A JSON file, parsed; errors name the file and where the parser stopped. */
export async function readJson(file: string, what: string): Promise<unknown> {
  const text = await readText(file, what);
  try {
    return JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (e) {
    throw new UsageError(`${what} '${file}' is not valid JSON: ${jsonError(e as Error, text)}`);
  }
}

/** Parses a positive integer flag value, naming the flag on error. */
export function positiveInt(flag: string): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n <= 0) throw new UsageError(`${flag} must be a positive integer, got '${v}'`);
    return n;
  };
}

/** Parses a finite number flag value, naming the flag on error. */
export function finiteNumber(flag: string): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (v.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${flag} must be a number, got '${v}'`);
    return n;
  };
}

/** Parses an integer >= 0 flag value, naming the flag on error. */
export function nonNegativeInt(flag: string): (v: string) => number {
  return (v: string) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new UsageError(`${flag} must be an integer >= 0, got '${v}'`);
    return n;
  };
}

/** Help of `--revision`, shared by every command that takes `--model`. */
export const REVISION_HELP = 'branch, tag or commit of a hub id given to --model (default main)';
/** Help of `--clip-ckpt`, shared by the commands that load a model for inference. */
export const CLIP_CKPT_HELP = 'a state dict saved by torch.save (e.g. the official finetuned_model.pth) or a safetensors file, loaded over --model';

/** Help of `--locoop-ckpt`, shared by every command that takes a CLIP `--model`. */
export const LOCOOP_CKPT_HELP = "a LoCoOp prompt context — LoCoOp's prompt_learner/model.pth.tar-<epoch> (Dassl) or a ctx.safetensors — that makes the CLIP --model a LoCoOp model (config key locoop_ckpt) (default: none, plain CLIP)";
/** Help of `--n-ctx` on the inference commands. */
export const N_CTX_HELP = 'the number of context vectors the --locoop-ckpt must hold; config key n_ctx (default: read from the checkpoint)';
/** Help of `--template`, whose default is the model's (CLIP: "a photo of a {}", LoCoOp: "{}."). */
export const TEMPLATE_HELP = "prompt template; '{}' is the class name (default \"a photo of a {}\" for CLIP, \"{}.\" for LoCoOp, where the context replaces \"a photo of a\")";

/** A config file's `model_name`, when it is a string. */
export function configModelName(json: unknown): string | undefined {
  const v = json && typeof json === 'object' ? (json as Record<string, unknown>).model_name : undefined;
  return typeof v === 'string' ? v : undefined;
}

/**
 * `--model` (or a config's `model_name`) as a local folder: a folder is used as it is; a hub id
 * `ORG/NAME` comes from the Hugging Face cache, downloaded there first (with a progress bar) when
 * missing and HF_HUB_OFFLINE is not set. Undefined stays undefined (the config resolver names it).
 */
export async function resolveModelFlag(model: string | undefined, revision?: string): Promise<string | undefined> {
  if (model === undefined) return undefined;
  const bar = new DownloadBar();
  try {
    return await resolveModel({ model, revision, onFile: bar.onFile, onProgress: bar.onProgress });
  } finally {
    bar.end();
  }
}

/** Help of `--device`, shared by every command that runs a model. */
export const DEVICE_HELP = 'where the model runs: cpu | webgpu (any Vulkan, Metal or D3D12 GPU; no CUDA needed) | cuda | auto (webgpu when a GPU adapter exists, else cpu) (default cpu)';

/** Parses `--device`, naming the flag and the allowed values on error. */
export function deviceFlag(v: string): DeviceRequest {
  if (!(DEVICE_REQUESTS as readonly string[]).includes(v)) throw new UsageError(`--device must be one of ${DEVICE_REQUESTS.join(', ')}, got '${v}'`);
  return v as DeviceRequest;
}

/**
 * The device `--device` names (default cpu), checked here: DeviceUnavailableError says what to
 * install. `auto` says which device it took on stderr.
 */
export function openDeviceFlag(device: DeviceRequest | undefined): Promise<ResolvedDevice> {
  return openDevice({ device: device ?? 'cpu' }, (line) => process.stderr.write(`${line}\n`));
}

/** Which singular components a low-rank setting drops (SPEC §2). */
const PRUNE_MODES = ['small', 'large', 'random'] as const;

/** Help of `--lora-svd-init-type` (the official key's name; `--prune-mode` is its alias). */
export const PRUNE_MODE_HELP = `which singular components a low-rank setting drops: ${PRUNE_MODES.join(' | ')} (default small)`;

/** The prune mode given by either flag, checked; errors name the flag the user typed. */
export function pruneModeOf(f: { loraSvdInitType?: string; pruneMode?: string }): (typeof PRUNE_MODES)[number] | undefined {
  if (f.pruneMode !== undefined && f.loraSvdInitType !== undefined && f.pruneMode !== f.loraSvdInitType) {
    throw new UsageError(`--prune-mode ${f.pruneMode} and --lora-svd-init-type ${f.loraSvdInitType} disagree; give one of them`);
  }
  const flag = f.pruneMode !== undefined ? '--prune-mode' : '--lora-svd-init-type';
  const v = f.pruneMode ?? f.loraSvdInitType;
  if (v !== undefined && !(PRUNE_MODES as readonly string[]).includes(v)) throw new UsageError(`${flag} must be one of ${PRUNE_MODES.join(', ')}, got '${v}'`);
  return v as (typeof PRUNE_MODES)[number] | undefined;
}
