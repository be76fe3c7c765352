import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

/** Environment variables, as `process.env` holds them. */
export type Env = Readonly<Record<string, string | undefined>>;

/** Where and how setar talks to the Hugging Face hub, read from the environment as huggingface_hub does. */
export interface HubSettings {
  /** The hub cache: `$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`. */
  readonly cacheDir: string;
  /** `$HF_ENDPOINT` without a trailing slash, else `https://huggingface.co`. */
  readonly endpoint: string;
  /** `$HF_TOKEN`, else the token file `huggingface-cli login` writes (`$HF_TOKEN_PATH`, else `$HF_HOME/token`). */
  readonly token?: string;
  /** `$HF_HUB_OFFLINE` (or transformers' `$TRANSFORMERS_OFFLINE`) is 1, ON, YES or TRUE: the network is never touched. */
  readonly offline: boolean;
}

export const DEFAULT_ENDPOINT = 'https://huggingface.co';

const TRUE_VALUES = ['1', 'ON', 'YES', 'TRUE'];

/**
 * The hub settings of an environment, with huggingface_hub's precedence (its `constants.py`):
 * HF_HUB_CACHE > HUGGINGFACE_HUB_CACHE > HF_HOME/hub > XDG_CACHE_HOME/huggingface/hub >
 * ~/.cache/huggingface/hub; a leading `~` is expanded. So setar and Python tools share one cache.
 */
export function hubSettings(env: Env = process.env): HubSettings {
  const home = env.HOME || env.USERPROFILE || homedir();
  const expand = (p: string) => (p === '~' || p.startsWith('~/') ? join(home, p.slice(1)) : p);
  const hfHome = expand(env.HF_HOME || join(env.XDG_CACHE_HOME ? expand(env.XDG_CACHE_HOME) : join(home, '.cache'), 'huggingface'));
  const cacheDir = expand(env.HF_HUB_CACHE || env.HUGGINGFACE_HUB_CACHE || join(hfHome, 'hub'));
  const endpoint = (env.HF_ENDPOINT || DEFAULT_ENDPOINT).replace(/\/+$/, '');
  const flag = (v: string | undefined) => v !== undefined && TRUE_VALUES.includes(v.trim().toUpperCase());
  return { cacheDir, endpoint, token: readToken(env, hfHome, expand), offline: flag(env.HF_HUB_OFFLINE) || flag(env.TRANSFORMERS_OFFLINE) };
}

function readToken(env: Env, hfHome: string, expand: (p: string) => string): string | undefined {
  const direct = env.HF_TOKEN?.trim();
  if (direct) return direct;
  try {
    const saved = readFileSync(expand(env.HF_TOKEN_PATH || join(hfHome, 'token')), 'utf8').trim();
    return saved || undefined;
  } catch {
    return undefined;
  }
}
