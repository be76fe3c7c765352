import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SafetensorsFile } from '../../../src/io/safetensors.js';
import { REPO_ROOT } from '../../helpers/fixtures.js';

/** test/fixtures/locoop-tiny: the float64 LoCoOp reference on clip-tiny-a (test/reference/locoop_reference.py). */
export const LOCOOP_FIXTURE = join(REPO_ROOT, 'test', 'fixtures', 'locoop-tiny');

/** The real torch.save of a Dassl prompt learner (n = 16), written by test/reference/dassl_checkpoint.py with PyTorch 1.13. */
export const DASSL_CHECKPOINT = join(LOCOOP_FIXTURE, 'dassl', 'prompt_learner', 'model.pth.tar-2');

export interface ReferencePrompt {
  readonly text: string | null;
  readonly ids: number[];
  readonly truncated_ids: Record<string, number[]>;
  readonly pool_position: Record<string, number>;
  readonly note?: string;
}

export interface LocoopReference {
  readonly prompts: ReferencePrompt[];
  readonly class_prompts_for_buffers: string[];
  readonly clip_text_check: { readonly max_abs_error_over_max_abs: number };
}

export function loadReference(): { meta: LocoopReference; tensors: SafetensorsFile } {
  const meta = JSON.parse(readFileSync(join(LOCOOP_FIXTURE, 'reference.json'), 'utf8')) as LocoopReference;
  return { meta, tensors: SafetensorsFile.open(join(LOCOOP_FIXTURE, 'reference.safetensors')) };
}
