import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'csv-parse/sync';
import { buildProgram } from '../../src/cli/main.js';
import { fixture, REPO_ROOT } from '../helpers/fixtures.js';
import { writeTestImage } from '../helpers/images.js';

/**
 * A newcomer's first hour (issue 11): every path that used to give a silent wrong result, a
 * dialect of its own or a raw stack, run as a user runs it — the CLI in a child process.
 */
const MODEL = fixture('clip-tiny-a');
let dir = '';

function setar(...args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'setar.js'), ...args], { encoding: 'utf8', env: { ...process.env, SETAR_CACHE_DIR: join(dir, 'cache') } });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

describe('issue 11: no silent wrong results, one vocabulary', () => {
  let id = '';
  let ood = '';
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-newcomer-'));
    id = join(dir, 'id');
    ood = join(dir, 'ood');
    let k = 0;
    for (const c of ['bird', 'cat', 'dog']) for (let i = 0; i < 2; i++) await writeTestImage(join(id, c, `${i}.png`), k++);
    for (let i = 0; i < 4; i++) await writeTestImage(join(ood, `o${i}.png`), 40 + i);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('1. dataset names must be unique and file-name safe, naming the flag', () => {
    const same = setar('eval', '--model', MODEL, '--id', `X=${id}`, '--ood', `X=${ood}`, '--out', join(dir, 'same'));
    assert.equal(same.code, 1);
    assert.match(same.stderr, /^setar: error: --ood X=.*: the dataset name "X" is already used by --id X=/);
    assert.ok(!existsSync(join(dir, 'same', 'scores_X_test.csv')), 'nothing was scored');
    const slash = setar('eval', '--model', MODEL, '--id', `a/b=${id}`, '--ood', `O=${ood}`, '--out', join(dir, 'slash'));
    assert.equal(slash.code, 1);
    assert.match(slash.stderr, /--id a\/b=.*: the dataset name "a\/b" is not file-name safe/);
    const twice = setar('search', '--model', MODEL, '--id', `v=${id}`, '--test-id', `T=${id}`, '--test-ood', `T=${ood}`, '--out', join(dir, 's'));
    assert.match(twice.stderr, /--test-ood T=.*: the dataset name "T" is already used by --test-id T=/);
  });

  it('2. a labels file starting with [ is a JSON array of strings or an error with the parser\'s position', async () => {
    const truncated = join(dir, 'truncated.json');
    writeFileSync(truncated, '["T-shirt","dress",');
    const r = setar('classify', '--model', MODEL, '--labels', truncated, join(id, 'cat', '0.png'));
    assert.equal(r.code, 1);
    assert.match(r.stderr, /labels file '.*truncated\.json' starts with '\[' but is not a valid JSON array: .* at position 19 \(line 1, column 20\)/);
    assert.equal(r.stdout, '');
    const good = join(dir, 'good.json');
    writeFileSync(good, '["bird", "cat", "dog"]\n');
    const ok = setar('classify', '--model', MODEL, '--labels', good, '--json', join(id, 'cat', '0.png'));
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((JSON.parse(ok.stdout) as { top: unknown[] }[])[0]!.top.length, 3);
  });

  it('3. skipped images are said after the bar and in the summary; classify reports each bad file and goes on', () => {
    const withBad = join(dir, 'id-bad');
    cpSync(id, withBad, { recursive: true });
    writeFileSync(join(withBad, 'cat', 'broken.png'), 'not an image');
    const out = join(dir, 'skips');
    const r = setar('eval', '--model', MODEL, '--id', `toy=${withBad}`, '--ood', `O=${ood}`, '--out', out);
    assert.equal(r.code, 0, r.stderr);
    const file = join(out, 'skipped_toy_test.txt');
    assert.match(r.stderr, new RegExp(`toy: skipped 1 unreadable image, listed in ${file.replaceAll('/', '\\/')}`));
    assert.match(r.stdout, new RegExp(`toy: skipped 1 unreadable image, listed in ${file.replaceAll('/', '\\/')}`));
    assert.match(readFileSync(file, 'utf8'), /^cat\/broken\.png\t/);
    // the file count is the folder's
    const wrote = Number(/wrote (\d+) files to/.exec(r.stdout)![1]);
    assert.equal(wrote, readdirSync(out).length);

    const labels = join(dir, 'labels.txt');
    writeFileSync(labels, 'bird\ncat\ndog\n');
    const c = setar('classify', '--model', MODEL, '--labels', labels, join(withBad, 'cat', 'broken.png'), join(id, 'dog', '0.png'), join(dir, 'missing.png'));
    assert.equal(c.code, 1);
    assert.match(c.stderr, /cannot decode image .*broken\.png/);
    assert.match(c.stderr, /missing\.png: file not found/);
    assert.match(c.stderr, /2 of 3 images could not be read \(named above\); the others are classified/);
    assert.match(c.stdout, /dog\/0\.png\n {2}1\. /);
  });

  it('4. search without --locoop-top-k runs on 3 classes (K = round(0.3 × 3) = 1) and --help shows the defaults', () => {
    const r = setar('search', '--model', MODEL, '--id', `toy=${id}`, '--searcher', 'visual_only', '--candi-ratios', '0,0.25', '--out', join(dir, 'k'));
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /locoop_top_k 1: round\(0\.3 × 3 classes\)/);
    // every option that takes a value says its default, or that it is required (shown by --help)
    const exempt = new Set(['--config', '--ood', '--test-id', '--test-ood', '--images', '--pixel-values', '--texts', '--lora-settings', '--clip-ckpt', '--benchmark', '--data-root', '--prune-mode', '--recall', '--scorer', '--scorers', '--lora-r', '--max-train-steps']);
    const silent: string[] = [];
    for (const cmd of buildProgram().commands) {
      for (const o of cmd.options) {
        if (!o.required || exempt.has(o.long!)) continue; // flags without a value, and values with no default by nature
        if (!(o.defaultValue !== undefined || o.mandatory || /\(default|required/.test(o.description))) silent.push(`setar ${cmd.name()} ${o.flags}: ${o.description}`);
      }
    }
    assert.deepEqual(silent, []);
    assert.match(setar('bundle', '--help').stdout, /--id <name=dir>[\s\S]*\(required\)/);
  });

  it('9. one vocabulary: --recall-level names the FPR column; --scorers; --prune-mode is an alias; errors name the flag typed', () => {
    const out = join(dir, 'r90');
    const r = setar('eval', '--model', MODEL, '--id', `toy=${id}`, '--ood', `O=${ood}`, '--recall-level', '0.9', '--scorers', 'mcm_score', '--out', out);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /OOD dataset\s+FPR90\s+AUROC/);
    assert.deepEqual((parse(readFileSync(join(out, 'metrics_mcm_score_test.csv'), 'utf8')) as string[][])[0], ['OOD dataset', 'FPR90', 'AUROC', 'AUPR']);
    const m = setar('metrics', '--id', join(out, 'scores_toy_test.csv'), '--ood', join(out, 'scores_O_test.csv'), '--recall-level', '0.9', '--scorers', 'mcm_score', '--json');
    assert.equal(m.code, 0, m.stderr);
    const table = JSON.parse(m.stdout) as { rows: Record<string, number>[] };
    assert.ok('FPR90' in table.rows[0]! && !('FPR95' in table.rows[0]!));
    const text = setar('metrics', '--id', join(out, 'scores_toy_test.csv'), '--ood', join(out, 'scores_O_test.csv'));
    const cutoff = /^O\s+\S+\s+\S+\s+\S+\s+(\S+)$/m.exec(text.stdout)![1]!;
    assert.equal(cutoff.replace(/^-?0?\.?0*/, '').replace('.', '').replace(/e.*$/, '').length, 4, `cutoff ${cutoff} has 4 significant digits`);
    assert.match(setar('bundle', '--model', MODEL, '--id', `toy=${id}`, '--scorers', 'mcm_score,gl_mcm_score', '--out', join(dir, 'b')).stderr, /--scorers: a bundle has exactly one scorer, got 2/);
    assert.match(setar('eval', '--model', MODEL, '--id', `toy=${id}`, '--ood', `O=${ood}`, '--prune-mode', 'medium', '--out', join(dir, 'pm')).stderr, /--prune-mode must be one of small, large, random, got 'medium'/);
    assert.match(setar('search', '--model', MODEL, '--id', `toy=${id}`, '--locoop-lambda', '-1', '--out', join(dir, 'lam')).stderr, /--locoop-lambda must be a number >= 0, got -1/);
    const cfg = join(dir, 'cfg.json');
    writeFileSync(cfg, JSON.stringify({ temperature: 0 }));
    assert.match(setar('eval', '--config', cfg, '--model', MODEL, '--id', `toy=${id}`, '--ood', `O=${ood}`, '--out', join(dir, 'c')).stderr, /cfg\.json: config key "temperature" must be a positive number, got 0/);
    // commander's own errors carry the same prefix
    assert.match(setar('eval', '--bogus').stderr, /^setar: error: unknown option '--bogus'/);
  });

  it('10. --model says "CLIP or Swin V2" wherever both work; train-clip --help shows the recipe of TRAINING.md', () => {
    for (const cmd of ['embed', 'classify', 'eval', 'search', 'finetune', 'bundle']) {
      const help = setar(cmd, '--help').stdout.replace(/\s+/g, ' ');
      assert.match(help, /--model <dir> CLIP or Swin V2 checkpoint directory/, `setar ${cmd} --help`);
      assert.match(help, /\(required[ )]/, `setar ${cmd} --help marks its required options`);
    }
    // the command TRAINING.md gives is the defaults' command: every value it passes is --help's default
    const training = readFileSync(join(REPO_ROOT, 'models', 'setar-demo-clip', 'TRAINING.md'), 'utf8');
    const command = /setar\.js train-clip (.*)/.exec(training)![1]!;
    const given = [...command.matchAll(/(--[a-z-]+) (\S+)/g)].filter(([, f]) => f !== '--out');
    assert.ok(given.length >= 4, command);
    const help = setar('train-clip', '--help').stdout.replace(/\s+/g, ' ');
    for (const [, flag, value] of given) {
      const m = new RegExp(`${flag} <[a-z]+> [^(]*(?:\\([^)]*\\)[^(]*)*?\\(default: ([^)]+)\\)`).exec(help);
      assert.ok(m, `train-clip --help shows a default for ${flag}`);
      assert.equal(Number(m[1]), Number(value), `${flag}: TRAINING.md ${value}, --help ${m[1]}`);
    }
  });

  it('11. a config.json typo is named with a suggestion; missing tensors say which config value they came from; --out in words', () => {
    const typo = join(dir, 'typo');
    cpSync(MODEL, typo, { recursive: true });
    const cfg = JSON.parse(readFileSync(join(typo, 'config.json'), 'utf8')) as { vision_config: Record<string, unknown> };
    const layers = cfg.vision_config.num_hidden_layers;
    delete cfg.vision_config.num_hidden_layers;
    cfg.vision_config.num_hiden_layers = layers;
    writeFileSync(join(typo, 'config.json'), JSON.stringify(cfg));
    const texts = join(dir, 'texts.txt');
    writeFileSync(texts, 'a cat\n');
    const t = setar('embed', '--model', typo, '--texts', texts, '--out', join(dir, 'e.safetensors'));
    assert.equal(t.code, 1);
    assert.match(t.stderr, /config\.json: "vision_config\.num_hiden_layers" is not a key setar reads; did you mean "num_hidden_layers"\?/);
    assert.equal(t.stderr.trim().split('\n').length, 1);

    delete cfg.vision_config.num_hiden_layers;
    writeFileSync(join(typo, 'config.json'), JSON.stringify(cfg));
    const m = setar('embed', '--model', typo, '--texts', texts, '--out', join(dir, 'e.safetensors'));
    assert.match(m.stderr, /vision_config\.num_hidden_layers is 12 \(transformers' default: config\.json does not set it\), but the checkpoint has 2 vision layers/);

    const file = join(dir, 'a-file');
    writeFileSync(file, 'x');
    assert.match(setar('eval', '--model', MODEL, '--id', `toy=${id}`, '--ood', `O=${ood}`, '--out', file).stderr, /^setar: error: --out '.*a-file' is a file, not a folder\n$/);
    assert.match(setar('eval', '--model', MODEL, '--id', `toy=${id}`, '--ood', `O=${ood}`, '--out', join(file, 'sub')).stderr, /--out '.*a-file\/sub': cannot create the folder \(a part of the path is a file, not a folder\)/);
    assert.match(setar('embed', '--model', MODEL, '--texts', texts, '--out', join(file, 'x.safetensors')).stderr, /--out '.*a-file\/x\.safetensors': its folder '.*a-file' is a file, not a folder/);
  });

  it('13. search prints the next commands; bundle prints the serve command; eval --config config_best.json says what is missing', () => {
    const out = join(dir, 'next');
    const r = setar('search', '--model', MODEL, '--id', `toy=${id}`, '--searcher', 'visual_only', '--candi-ratios', '0,0.25', '--locoop-top-k', '1', '--out', out);
    assert.equal(r.code, 0, r.stderr);
    const best = join(out, 'config_best.json');
    assert.ok(r.stdout.includes(`setar eval --config ${best} --model ${MODEL} --id NAME=TEST_DIR --ood NAME=OOD_DIR`), r.stdout);
    assert.ok(r.stdout.includes(`setar bundle --model ${MODEL} --id toy=${id} --lora-settings ${best} --out ${join(out, 'bundle')}`), r.stdout);
    const missing = setar('eval', '--config', best);
    assert.match(missing.stderr, /no ID data: give --id NAME=DIR/);
    const ev = setar('eval', '--config', best, '--id', `toy=${id}`, '--ood', `O=${ood}`, '--out', join(out, 'eval'));
    assert.equal(ev.code, 0, ev.stderr);
    const b = setar('bundle', '--model', MODEL, '--id', `toy=${id}`, '--lora-settings', best, '--out', join(out, 'bundle'));
    assert.equal(b.code, 0, b.stderr);
    assert.ok(b.stdout.includes(`setar serve --bundle ${join(out, 'bundle')}`), b.stdout);
  });

  it('14. examples/demo-labels.txt names the demo model\'s 20 classes', () => {
    const labels = readFileSync(join(REPO_ROOT, 'examples', 'demo-labels.txt'), 'utf8').trim().split('\n');
    assert.equal(labels.length, 20);
    assert.ok(labels.includes('T-shirt') && labels.includes('digit seven'));
  });
});
