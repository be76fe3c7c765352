import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { createBundle } from '../../src/bundle/bundle.js';
import { resolveEvalConfig } from '../../src/eval/config.js';
import { runEval } from '../../src/eval/run-eval.js';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { resolveSearchConfig } from '../../src/search/config.js';
import { runSearch } from '../../src/search/greedy.js';
import type { CandidateRecord } from '../../src/search/search-run.js';
import { startServer } from '../../src/serve/server.js';
import { resolveFinetuneConfig } from '../../src/train/config.js';
import { runFinetune } from '../../src/train/finetune.js';
import { assertRelMax } from '../helpers/close.js';
import { fixture, REPO_ROOT } from '../helpers/fixtures.js';
import { writeTestImage } from '../helpers/images.js';
import { probeWebgpu, webgpuOrSkip } from '../helpers/webgpu.js';

/**
 * Every command on `--device webgpu` against the references or against `--device cpu`: the same
 * float32 graphs on another device, so the same figures up to float32 rounding. In CI the device
 * is Mesa's lavapipe (Vulkan on the CPU); elsewhere each test is skipped with the reason the
 * WebGPU device could not start. Tiny fixtures only: lavapipe compiles a shader per kernel.
 */

const CLIP = fixture('clip-tiny-a');
const SWIN = fixture('swinv2-tiny-a');

function setar(args: readonly string[], env: NodeJS.ProcessEnv = {}): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'setar.js'), ...args], { encoding: 'utf8', env: { ...process.env, ...env } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** A port nothing listens on now (the OS's choice for port 0). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

/** |a − b| ≤ rel · |b| for every element (rel 0 for integers such as counts). */
function assertRel(a: number, b: number, rel: number, what: string): void {
  assert.ok(Math.abs(a - b) <= rel * Math.abs(b), `${what}: webgpu ${a}, cpu ${b} (rel ${(Math.abs(a - b) / Math.abs(b)).toExponential(2)} > ${rel})`);
}

describe('--device webgpu gives the CPU\'s results', () => {
  let dir = '';
  let val = '';
  let ood = '';
  before(async () => {
    if ('why' in await probeWebgpu()) return;
    dir = mkdtempSync(join(tmpdir(), 'setar-webgpu-'));
    process.env.SETAR_CACHE_DIR = join(dir, 'cache');
    val = join(dir, 'val');
    ood = join(dir, 'ood');
    let k = 0;
    for (const c of ['bird', 'cat', 'dog', 'fish']) for (let i = 0; i < 2; i++) await writeTestImage(join(val, c, `${i}.jpg`), k++);
    for (let i = 0; i < 3; i++) await writeTestImage(join(ood, `o${i}.jpg`), 70 + i);
  });
  after(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });
  it('embed: clip-tiny-a and swinv2-tiny-a reproduce their references; each image moves its pixels up and its outputs down', async (t) => {
    if (!await webgpuOrSkip(t)) return;
    const prompts = join(dir, 'prompts.txt');
    writeFileSync(prompts, 'a photo of a tench\na photo of a kite (bird of prey)\n');
    for (const [model, names, rel] of [
      // the fixtures' READMEs: float32 against the float64 references, max |x − ref| ≤ rel · max |ref|
      [CLIP, ['image_embeds', 'image_embeds_local'], 1e-5],
      [SWIN, ['logits', 'logits_local'], 1e-4],
    ] as const) {
      const out = join(dir, `${names[0]}.safetensors`);
      const r = setar(['embed', '--device', 'webgpu', '--model', model, '--pixel-values', join(model, 'reference.safetensors'), '--out', out]);
      assert.equal(r.code, 0, r.stderr);
      const got = SafetensorsFile.open(out);
      const ref = SafetensorsFile.open(join(model, 'reference.safetensors'));
      try {
        for (const n of names) assertRelMax(got.readFloat32(n), ref.read(n).data as Float64Array, `${model}: ${n}`, rel);
        const [b, c, h, w] = ref.entry('pixel_values').shape as [number, number, number, number];
        // up: the pixels only (the weights went up once); down: the outputs
        const down = names.reduce((a, n) => a + 4 * got.entry(n).shape.slice(1).reduce((x, y) => x * y, 1), 0);
        const perImage = new RegExp(`device webgpu: bytes moved per image: up ${((4 * c * h * w) / 1024).toFixed(1)} KiB, down ${(down / 1024).toFixed(1)} KiB \\(${b} images; besides, the weights, [\\d.]+ KiB, were uploaded once\\)`);
        assert.match(r.stderr, perImage);
      } finally {
        got.close();
        ref.close();
      }
    }
  });

  it('eval: the same scores as on the CPU (≤ 1e-5 relative)', async (t) => {
    if (!await webgpuOrSkip(t)) return;
    const scores = async (device: string) => {
      const out = join(dir, `eval-${device}`);
      await runEval(resolveEvalConfig(null, { model: CLIP, id: `toy=${val}`, ood: [`noise=${ood}`], scorers: ['mcm_score', 'gl_mcm_score'], out, device }));
      return ['toy', 'noise'].map((d) => parse(readFileSync(join(out, `scores_${d}_test.csv`), 'utf8'), { columns: true }) as Record<string, string>[]);
    };
    const gpu = await scores('webgpu');
    const cpu = await scores('cpu');
    assert.match(readFileSync(join(dir, 'eval-webgpu', 'eval.log'), 'utf8'), / device: webgpu \(webgpu\)\n/);
    assert.doesNotMatch(readFileSync(join(dir, 'eval-cpu', 'eval.log'), 'utf8'), /device:/);
    // config.json names the device only off the CPU: a CPU run writes what it wrote before devices
    const recorded = (d: string) => (JSON.parse(readFileSync(join(dir, `eval-${d}`, 'config.json'), 'utf8')) as { device?: string }).device;
    assert.deepEqual([recorded('webgpu'), recorded('cpu')], ['webgpu', undefined]);
    gpu.forEach((rows, d) => rows.forEach((row, i) => {
      assert.equal(row.image, cpu[d]![i]!.image);
      for (const s of ['mcm_score', 'gl_mcm_score']) assertRel(Number(row[s]), Number(cpu[d]![i]![s]), 1e-5, `${row.image} ${s}`);
    }));
  });

  it('search: the same decisions and figures as on the CPU (≤ 1e-5); bytes moved per candidate only off the CPU', async (t) => {
    if (!await webgpuOrSkip(t)) return;
    const search = (device: string) => runSearch(resolveSearchConfig(null, {
      model: CLIP, id: `toy=${val}`, searcher: 'visual_only', candiRatios: [0, 0.25, 0.5], locoopTopK: 2, out: join(dir, `search-${device}`), device,
    }));
    const gpu = await search('webgpu');
    const cpu = await search('cpu');
    assert.deepEqual(gpu.lora_settings, cpu.lora_settings);
    assert.equal(gpu.candidates.length, cpu.candidates.length);
    const figures = ['locoop_loss', 'loss_id', 'loss_ood'] as const;
    gpu.candidates.forEach((g, i) => {
      const c = cpu.candidates[i]!;
      assert.deepEqual([g.step, g.layer_num, g.ratio], [c.step, c.layer_num, c.ratio]);
      for (const k of figures) assertRel(g[k] as number, c[k] as number, 1e-5, `step ${g.step} ratio ${g.ratio} ${k}`);
      assert.equal(g.acc, c.acc);
      assert.equal(g.ood_patch_percent, c.ood_patch_percent);
    });
    const file = (device: string) => JSON.parse(readFileSync(join(dir, `search-${device}`, 'search_results.json'), 'utf8')) as CandidateRecord[];
    assert.ok(file('cpu').every((r) => !('bytes_up' in r) && !('bytes_down' in r)), 'search_results.json on the CPU is as before');
    // a measured candidate uploads the one matrix it changed (fc1 of clip-tiny-a: 64 × 256 floats), not the model
    const fc1 = 4 * 64 * 256;
    const measured = file('webgpu').filter((r) => r.ratio !== 0 || r.step === 0);
    for (const r of measured) {
      assert.equal(typeof r.bytes_up, 'number');
      assert.ok((r.bytes_up as number) >= fc1, `candidate ${r.step}/${r.ratio} uploads its matrix: ${r.bytes_up}`);
    }
    assert.match(readFileSync(join(dir, 'search-webgpu', 'search.log'), 'utf8'), /step 0 visual W_up layer 1 ratio 0\.25: [\d.]+ MiB up, [\d.]+ MiB down/);
  });

  it('finetune: three steps with the same losses as on the CPU (≤ 1e-4); train_log gains bytes moved per step', async (t) => {
    if (!await webgpuOrSkip(t)) return;
    const train = (device: string) => runFinetune(resolveFinetuneConfig(null, {
      model: CLIP, id: `toy=${val}`, loraR: 2, loraAlpha: 4, targetModules: ['mlp.fc1'], locoopTopK: 2, batchSize: 4, maxTrainSteps: 3, out: join(dir, `ft-${device}`), device,
    }));
    const gpu = await train('webgpu');
    const cpu = await train('cpu');
    assert.equal(gpu.log.length, 3);
    gpu.log.forEach((g, i) => {
      const c = cpu.log[i]!;
      for (const k of ['locoop_loss', 'loss_id', 'loss_ood'] as const) assertRel(g[k], c[k], 1e-4, `step ${i} ${k}`);
      assert.equal(g.acc, c.acc);
      assert.equal(g.ood_patch_percent, c.ood_patch_percent);
      assert.ok(g.bytes_up! > 0 && g.bytes_down! > 0);
      assert.equal(c.bytes_up, undefined);
    });
    const header = (device: string) => readFileSync(join(dir, `ft-${device}`, 'train_log.csv'), 'utf8').split('\n')[0];
    assert.equal(header('cpu'), 'step,epoch,lr,locoop_loss,loss_id,loss_ood,acc,ood_patch_percent');
    assert.equal(header('webgpu'), 'step,epoch,lr,locoop_loss,loss_id,loss_ood,acc,ood_patch_percent,bytes_up,bytes_down');
  });

  it('serve --device webgpu: the verdict of the CPU server over HTTP on loopback (≤ 1e-5)', async (t) => {
    if (!await webgpuOrSkip(t)) return;
    const bundle = join(dir, 'bundle');
    await createBundle({ model: CLIP, id: { kind: 'folder', name: 'toy', root: val }, out: bundle, threads: 1 });
    const image = readFileSync(join(val, 'cat', '1.jpg'));
    const score = async (url: string) => {
      const r = await fetch(`${url}/v1/score`, { method: 'POST', body: image, headers: { 'Content-Type': 'image/jpeg' } });
      assert.equal(r.status, 200);
      return (await r.json()) as { label: string; ood: boolean; scores: Record<string, number>; patch_map: number[][]; top: { label: string; prob: number }[] };
    };
    const cpuServer = await startServer({ bundle, port: 0, threads: 1 });
    const cpu = await score(cpuServer.url).finally(() => cpuServer.close());
    const port = await freePort();
    const child = spawn(process.execPath, [join(REPO_ROOT, 'bin', 'setar.js'), 'serve', '--bundle', bundle, '--port', String(port), '--device', 'webgpu'], { stdio: ['ignore', 'ignore', 'pipe'] });
    try {
      const url = await new Promise<string>((resolve, reject) => {
        let err = '';
        child.stderr.on('data', (d: Buffer) => {
          err += d.toString();
          const m = /setar serve: (http:\/\/\S+)/.exec(err);
          if (m) resolve(m[1]!);
        });
        child.on('exit', (code) => reject(new Error(`setar serve exited with ${code}: ${err}`)));
      });
      const gpu = await score(url);
      assert.equal(gpu.label, cpu.label);
      assert.equal(gpu.ood, cpu.ood);
      for (const [k, v] of Object.entries(cpu.scores)) assertRel(gpu.scores[k]!, v, 1e-5, k);
      gpu.top.forEach((x, i) => {
        assert.equal(x.label, cpu.top[i]!.label);
        assertRel(x.prob, cpu.top[i]!.prob, 1e-5, `top ${i}`);
      });
      gpu.patch_map.flat().forEach((x, i) => assertRel(x, cpu.patch_map.flat()[i]!, 1e-5, `patch ${i}`));
    } finally {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGINT');
        await exited;
      }
    }
  });
});
