import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SafetensorsFile } from '../../src/io/safetensors.js';
import { fixture, REPO_ROOT } from '../helpers/fixtures.js';
import { assertRelMax } from '../helpers/close.js';
import { writeTestImage } from '../helpers/images.js';

const MODEL = fixture('clip-tiny-a');
const REL = 1e-5; // the clip-tiny-a README's float32-vs-float64 criterion

/** Runs the CLI as users do (`setar …` → bin/setar.js → compiled dist). */
function setar(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'setar.js'), ...args], { encoding: 'utf8', env: { ...process.env, SETAR_CACHE_DIR: cacheDir } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

let dir = '';
let cacheDir = '';

describe('setar CLI', () => {
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'setar-cli-'));
    cacheDir = join(dir, 'cache');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('--help prints setar\'s own help', () => {
    const r = setar('--help');
    assert.equal(r.code, 0);
    assert.match(r.stdout, /Usage: setar/);
    assert.match(r.stdout, /classify/);
    assert.match(r.stdout, /embed/);
  });

  it('embed --pixel-values/--texts reproduces the reference image_embeds, image_embeds_local and text_embeds', () => {
    const ref = SafetensorsFile.open(fixture('clip-tiny-a', 'reference.safetensors'));
    const texts = join(dir, 'prompts.txt');
    // the six reference prompts, one per line (the fifth is empty; the sixth is truncated to 77 ids)
    const refTexts = ['a photo of a tench', 'a photo of a kite (bird of prey)', 'a photo of a Black and Tan Coonhound.', 'a photo of a tvmonitor', '',
      'In the early morning light, a small brown dog with a red collar ran across the wet green field, chasing a bright yellow tennis ball that bounced unpredictably between the tall grass, the muddy puddles, and the old wooden fence, while its owner, wearing a heavy blue raincoat and rubber boots, laughed and called out its name again and again, hoping it would eventually come back home before the storm arrived over the distant hills.'];
    writeFileSync(texts, refTexts.join('\n') + '\n');
    const out = join(dir, 'emb.safetensors');
    const r = setar('embed', '--model', MODEL, '--pixel-values', fixture('clip-tiny-a', 'reference.safetensors'), '--texts', texts, '--out', out);
    assert.equal(r.code, 0, r.stderr);
    const got = SafetensorsFile.open(out);
    try {
      assert.deepEqual([...got.entries.keys()].sort(), ['image_embeds', 'image_embeds_local', 'logit_scale', 'text_embeds']);
      for (const n of ['image_embeds', 'image_embeds_local', 'text_embeds']) {
        assert.equal(got.entry(n).dtype, 'F32');
        assert.deepEqual(got.entry(n).shape, ref.entry(n).shape);
        assertRelMax(got.readFloat32(n), ref.read(n).data as Float64Array, n, REL);
      }
      assert.deepEqual(got.entry('logit_scale').shape, []);
      assert.equal(got.readFloat32('logit_scale')[0], Math.fround(4.605170249938965));
    } finally {
      got.close();
      ref.close();
    }
  });

  it('embed --lora-settings ({"lora_settings": …}) gives the pruned reference outputs; JSON --texts keeps empty strings', () => {
    const ref = SafetensorsFile.open(fixture('clip-tiny-a', 'reference.safetensors'));
    const settings = join(dir, 'config_best.json');
    writeFileSync(settings, JSON.stringify({ lora_settings: [['visual', 'W_up', 0, 0.25], ['text', 'W_up', 1, 0.4]] }));
    const texts = join(dir, 'prompts.json');
    writeFileSync(texts, JSON.stringify(['a photo of a tench', '']));
    const out = join(dir, 'pruned.safetensors');
    const r = setar('embed', '--model', MODEL, '--pixel-values', fixture('clip-tiny-a', 'reference.safetensors'), '--texts', texts, '--lora-settings', settings, '--out', out);
    assert.equal(r.code, 0, r.stderr);
    const got = SafetensorsFile.open(out);
    try {
      assertRelMax(got.readFloat32('image_embeds'), ref.read('pruned_image_embeds').data as Float64Array, 'pruned_image_embeds', REL);
      assertRelMax(got.readFloat32('image_embeds_local'), ref.read('pruned_image_embeds_local').data as Float64Array, 'pruned_image_embeds_local', REL);
      const t = got.readFloat32('text_embeds');
      const refT = ref.read('pruned_text_embeds').data as Float64Array;
      assert.deepEqual(got.entry('text_embeds').shape, [2, 40]);
      assertRelMax(t.subarray(0, 40), refT.subarray(0, 40), 'pruned_text_embeds[0]', REL);
      assertRelMax(t.subarray(40, 80), refT.subarray(4 * 40, 5 * 40), 'pruned_text_embeds[4] (empty prompt)', REL);
    } finally {
      got.close();
      ref.close();
    }
  });

  it('embed --images decodes and preprocesses files; --no-local drops image_embeds_local', () => {
    const out = join(dir, 'img.safetensors');
    const imgs = ['photo-640x480.jpg', 'rgba-257x199.png'].map((f) => fixture('preprocess', f));
    const r = setar('embed', '--model', MODEL, '--images', ...imgs, '--no-local', '--out', out);
    assert.equal(r.code, 0, r.stderr);
    const got = SafetensorsFile.open(out);
    try {
      assert.deepEqual([...got.entries.keys()].sort(), ['image_embeds', 'logit_scale']);
      assert.deepEqual(got.entry('image_embeds').shape, [2, 40]);
    } finally {
      got.close();
    }
  });

  it('classify prints the top-5 labels with probabilities, and --json', () => {
    const labels = join(dir, 'labels.txt');
    writeFileSync(labels, 'tench\ngoldfish\nkite\nsky\nportrait\nlogo\n');
    const img = fixture('preprocess', 'photo-640x480.jpg');
    const r = setar('classify', '--model', MODEL, '--labels', labels, img);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.equal(lines[0], img);
    assert.equal(lines.length, 6);
    assert.match(lines[1]!, /^ {2}1\. \S.*\d+\.\d\d%$/);
    const j = setar('classify', '--model', MODEL, '--labels', labels, '--json', '--top', '6', img);
    const parsed = JSON.parse(j.stdout) as { image: string; top: { label: string; probability: number }[] }[];
    assert.equal(parsed[0]!.top.length, 6);
    const sum = parsed[0]!.top.reduce((a, p) => a + p.probability, 0);
    assert.ok(Math.abs(sum - 1) < 1e-9, `probabilities sum to ${sum}`);
    // the printed top-5 is the JSON's first five
    assert.deepEqual(lines.slice(1).map((l) => l.replace(/^\s+\d\.\s+/, '').replace(/\s+[\d.]+%$/, '')), parsed[0]!.top.slice(0, 5).map((p) => p.label));
  });

  it('bad input: one line naming the file, tensor or key, exit code 1', () => {
    const missing = setar('classify', '--model', MODEL, '--labels', join(dir, 'nope.txt'), 'x.jpg');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /^setar: error: cannot read labels file '.*nope\.txt': no such file\n$/);
    const labels = join(dir, 'l.txt');
    writeFileSync(labels, 'a\nb\n');
    const corrupt = join(dir, 'corrupt.jpg');
    writeFileSync(corrupt, Buffer.from([0xff, 0xd8, 0xff, 0xe0, 1, 2, 3]));
    const bad = setar('classify', '--model', MODEL, '--labels', labels, corrupt);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /corrupt\.jpg/);
    const both = setar('embed', '--model', MODEL, '--images', 'a.jpg', '--pixel-values', 'b.safetensors', '--out', join(dir, 'o.safetensors'));
    assert.match(both.stderr, /give either --images or --pixel-values, not both/);
    const noPx = setar('embed', '--model', MODEL, '--pixel-values', join(MODEL, 'model.safetensors'), '--out', join(dir, 'o.safetensors'));
    assert.equal(noPx.code, 1);
    assert.match(noPx.stderr, /tensor 'pixel_values' not found in '.*model\.safetensors'/);
    const settings = join(dir, 'bad-settings.json');
    writeFileSync(settings, JSON.stringify([['visual', 'W_upp', 0, 0.1]]));
    const badSet = setar('embed', '--model', MODEL, '--texts', labels, '--lora-settings', settings, '--out', join(dir, 'o.safetensors'));
    assert.equal(badSet.code, 1);
    assert.match(badSet.stderr, /bad-settings\.json/);
    assert.match(badSet.stderr, /W_upp/);
    const noModel = setar('embed', '--model', join(dir, 'no-model'), '--texts', labels, '--out', join(dir, 'o.safetensors'));
    assert.match(noModel.stderr, /model '.*no-model' is not a local folder \(no such directory\) and not a Hugging Face hub id \(ORG\/NAME\)/);
  });

  it('bundle --precision int8 writes an int8 bundle and says so; another value lists the valid ones', async () => {
    for (const c of ['bird', 'cat']) for (let i = 0; i < 3; i++) await writeTestImage(join(dir, 'val', c, `${i}.png`), 3 * c.length + i);
    const out = join(dir, 'bundle-int8');
    const r = setar('bundle', '--model', MODEL, '--id', `toy=${join(dir, 'val')}`, '--precision', 'int8', '--threads', '1', '--out', out);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /, int8 weights\n/);
    assert.equal((JSON.parse(readFileSync(join(out, 'bundle.json'), 'utf8')) as { precision: string }).precision, 'int8');
    const bad = setar('bundle', '--model', MODEL, '--id', `toy=${join(dir, 'val')}`, '--precision', 'bf16', '--out', join(dir, 'b'));
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^setar: error: --precision must be one of fp32, fp16, int8, got "bf16"\n$/);
  });
});
