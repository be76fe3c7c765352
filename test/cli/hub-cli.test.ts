import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile, writeSafetensors, type TensorToWrite } from '../../src/io/safetensors.js';
import { assertRelMax } from '../helpers/close.js';
import { CLIP_TINY, CLIP_TINY_SIDE_FILES, clipTinyTensors, positionIdBuffers } from '../helpers/clip-tiny.js';
import { REPO_ROOT } from '../helpers/fixtures.js';
import { startStandInHub, type StandInHub } from '../helpers/hub-server.js';
import { writeTestImage } from '../helpers/images.js';
import { writeTorchCheckpoint } from '../helpers/torch-zip.js';

const REL = 1e-5; // the clip-tiny-a README's float32-vs-float64 criterion
const REF = join(CLIP_TINY, 'reference.safetensors');

describe('setar with hub ids and --clip-ckpt (CLI, loopback stand-in hub)', () => {
  let root: string;
  let hub: StandInHub;
  let env: Record<string, string>;
  let pth: string;

  /** Runs `setar …` in a child process (asynchronously: the stand-in hub answers from this process). */
  function setar(args: string[], extraEnv: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
    return new Promise((ok, fail) => {
      const p = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'setar.js'), ...args], { env: { ...env, ...extraEnv } });
      let stdout = '';
      let stderr = '';
      p.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
      p.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
      p.on('error', fail);
      p.on('close', (code) => ok({ code: code ?? -1, stdout, stderr }));
    });
  }

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'setar-hub-cli-'));
    const files = (weights: Record<string, Uint8Array>) => {
      const out: Record<string, Uint8Array> = { 'config.json': readFileSync(join(CLIP_TINY, 'config.json')), ...weights };
      for (const f of CLIP_TINY_SIDE_FILES) out[f] = readFileSync(join(CLIP_TINY, f));
      return out;
    };
    // A repo whose weights are all halved: only --clip-ckpt can give the reference outputs.
    const halved = join(root, 'halved.safetensors');
    writeSafetensors(halved, Object.fromEntries(Object.entries(clipTinyTensors(0.5)).map(([n, t]) => [n, { dtype: 'F32', shape: t.shape, data: t.data as Float32Array } as TensorToWrite])));
    hub = await startStandInHub({
      repos: {
        'org/clip-tiny': { files: files({ 'model.safetensors': readFileSync(join(CLIP_TINY, 'model.safetensors')) }) },
        'org/clip-halved': { files: files({ 'model.safetensors': readFileSync(halved) }) },
      },
    });
    pth = join(root, 'finetuned_model.pth');
    writeTorchCheckpoint(pth, { ...clipTinyTensors(), ...positionIdBuffers() });
    // Only what the child needs: no HF_* or token from the outer environment.
    env = { PATH: process.env.PATH ?? '', HOME: root, HF_HUB_CACHE: join(root, 'hf-cache'), HF_ENDPOINT: hub.url, SETAR_CACHE_DIR: join(root, 'setar-cache') };
  });
  after(async () => {
    await hub.close();
    rmSync(root, { recursive: true, force: true });
  });

  function checkEmbeds(out: string): void {
    const got = SafetensorsFile.open(out);
    const ref = SafetensorsFile.open(REF);
    try {
      for (const n of ['image_embeds', 'image_embeds_local']) assertRelMax(got.readFloat32(n), ref.read(n).data as Float64Array, n, REL);
    } finally {
      got.close();
      ref.close();
    }
  }

  it('embed --model ORG/NAME downloads into the cache once, then runs from it offline; outputs are the float64 reference', async () => {
    const out = join(root, 'a.safetensors');
    const r = await setar(['embed', '--model', 'org/clip-tiny', '--pixel-values', REF, '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /downloading model\.safetensors \(10\.2 MB\)/);
    checkEmbeds(out);
    const before = hub.requests.length;
    assert.ok(before > 0);
    const again = await setar(['embed', '--model', 'org/clip-tiny', '--pixel-values', REF, '--out', join(root, 'b.safetensors')], { HF_HUB_OFFLINE: '1' });
    assert.equal(again.code, 0, again.stderr);
    assert.doesNotMatch(again.stderr, /downloading/);
    checkEmbeds(join(root, 'b.safetensors'));
    assert.equal(hub.requests.length, before);
  });

  it('embed --clip-ckpt finetuned_model.pth over a hub model gives the float64 reference', async () => {
    const out = join(root, 'c.safetensors');
    const r = await setar(['embed', '--model', 'org/clip-halved', '--clip-ckpt', pth, '--pixel-values', REF, '--out', out]);
    assert.equal(r.code, 0, r.stderr);
    checkEmbeds(out);
  });

  it('eval --config with a hub model_name and clip_ckpt scores exactly as the original folder does', async () => {
    const data = join(root, 'data');
    for (let k = 0; k < 4; k++) await writeTestImage(join(data, 'ID_toy', k < 2 ? 'cat' : 'dog', `${k}.png`), k);
    for (let k = 0; k < 3; k++) await writeTestImage(join(data, 'OOD_A', `${k}.png`), 10 + k);
    const cfg = join(root, 'config_test.json');
    writeFileSync(cfg, JSON.stringify({ model_name: 'org/clip-halved', model_type: 'CLIP', clip_ckpt: pth, scorers: ['mcm_score', 'gl_mcm_score'], temperature: 100, lora_svd_init: false }));
    const common = ['--id', `ID_toy=${join(data, 'ID_toy')}`, '--ood', `OOD_A=${join(data, 'OOD_A')}`, '--threads', '1'];
    const a = await setar(['eval', '--config', cfg, ...common, '--out', join(root, 'eval-hub')]);
    assert.equal(a.code, 0, a.stderr);
    const b = await setar(['eval', '--model', CLIP_TINY, '--scorers', 'mcm_score,gl_mcm_score', ...common, '--out', join(root, 'eval-folder')]);
    assert.equal(b.code, 0, b.stderr);
    for (const f of ['scores_ID_toy_test.csv', 'scores_OOD_A_test.csv']) {
      assert.equal(readFileSync(join(root, 'eval-hub', f), 'utf8'), readFileSync(join(root, 'eval-folder', f), 'utf8'), f);
    }
    const resolved = JSON.parse(readFileSync(join(root, 'eval-hub', 'config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(resolved.clip_ckpt, pth);
  });

  it('an uncached hub id with HF_HUB_OFFLINE=1 fails naming it, the revision and the cache, without a request', async () => {
    const before = hub.requests.length;
    writeFileSync(join(root, 'labels.txt'), 'cat\ndog\n');
    const r = await setar(['classify', '--model', 'org/never-downloaded', '--revision', 'v2', '--labels', join(root, 'labels.txt'), 'x.png'], { HF_HUB_OFFLINE: '1' });
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim(),
      `setar: error: 'org/never-downloaded' is not a local folder, and hub id 'org/never-downloaded' (revision v2) is not in the Hugging Face cache '${env.HF_HUB_CACHE}' (no models--org--never-downloaded/refs/v2); HF_HUB_OFFLINE is set, so nothing is downloaded: run once online, or pass a model folder`);
    assert.equal(hub.requests.length, before);
  });

  it('a --clip-ckpt that does not match the model is one error listing the mismatches', async () => {
    const t = clipTinyTensors();
    delete t['logit_scale'];
    const bad = join(root, 'bad.pth');
    writeTorchCheckpoint(bad, t);
    const r = await setar(['embed', '--model', CLIP_TINY, '--clip-ckpt', bad, '--pixel-values', REF, '--out', join(root, 'd.safetensors')]);
    assert.equal(r.code, 1);
    assert.equal(r.stderr.trim(), `setar: error: clip_ckpt '${bad}' does not match the CLIP model in '${CLIP_TINY}' (77 tensors, 78 expected):\n  1 missing name(s): 'logit_scale'`);
  });
});
