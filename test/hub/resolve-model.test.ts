import { after, before, beforeEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join, relative } from 'node:path';
import { resolveModel, type DownloadProgress } from '../../src/hub/resolve-model.js';
import { hubSettings } from '../../src/hub/hub-env.js';
import { ClipModel } from '../../src/models/clip/model.js';
import { assertClipTinyReference, CLIP_TINY, CLIP_TINY_SIDE_FILES, clipTinyTensors, positionIdBuffers } from '../helpers/clip-tiny.js';
import { startStandInHub, type StandInHub } from '../helpers/hub-server.js';
import { torchCheckpointRecords, makeZip } from '../helpers/torch-zip.js';

const read = (f: string) => readFileSync(join(CLIP_TINY, f));
const TOKEN = 'hf_standin_token_0123456789';

/** clip-tiny-a as a hub repo, with files a model download must leave alone (README, another weight format). */
function clipRepoFiles(): Record<string, Uint8Array> {
  const files: Record<string, Uint8Array> = {};
  for (const f of ['config.json', 'model.safetensors', ...CLIP_TINY_SIDE_FILES]) files[f] = read(f);
  files['README.md'] = Buffer.from('# clip-tiny-a\n');
  files['pytorch_model.bin'] = Buffer.from('a .bin the download must not fetch: model.safetensors wins');
  files['flax_model.msgpack'] = Buffer.from('not fetched either');
  return files;
}

/** clip-tiny-a re-saved by torch.save in two shards with an index and a legacy eos 2 config; no safetensors. */
function shardedBinRepoFiles(): Record<string, Uint8Array> {
  const t = { ...clipTinyTensors(), ...positionIdBuffers() };
  const names = Object.keys(t);
  const files: Record<string, Uint8Array> = {};
  const weightMap: Record<string, string> = {};
  for (const [i, part] of [names.slice(0, 40), names.slice(40)].entries()) {
    const file = `pytorch_model-0000${i + 1}-of-00002.bin`;
    files[file] = makeZip(torchCheckpointRecords(Object.fromEntries(part.map((n) => [n, t[n]!])), file.replace(/\.bin$/, '')));
    for (const n of part) weightMap[n] = file;
  }
  files['pytorch_model.bin.index.json'] = Buffer.from(JSON.stringify({ metadata: {}, weight_map: weightMap }));
  const config = JSON.parse(read('config.json').toString()) as { text_config: Record<string, unknown> };
  config.text_config.bos_token_id = 0;
  config.text_config.eos_token_id = 2;
  files['config.json'] = Buffer.from(JSON.stringify(config));
  for (const f of CLIP_TINY_SIDE_FILES) files[f] = read(f);
  files['README.md'] = Buffer.from('# sharded\n');
  return files;
}

describe('hub ids through the Hugging Face cache and a loopback stand-in hub', () => {
  let root: string;
  let hub: StandInHub;
  let cutAt: ((r: { file: string; start: number; length: number }) => number | undefined) | undefined;
  let cache: string;
  let env: Record<string, string>;

  before(async () => {
    root = mkdtempSync(join(tmpdir(), 'setar-hub-'));
    hub = await startStandInHub({
      repos: {
        'org/clip-tiny': { files: clipRepoFiles(), refs: ['v1'] },
        'org/clip-tiny-bin': { files: shardedBinRepoFiles() },
        'org/private-clip': { files: clipRepoFiles(), private: true },
      },
      token: TOKEN,
      cut: (r) => cutAt?.(r),
    });
  });
  after(async () => {
    await hub.close();
    rmSync(root, { recursive: true, force: true });
  });
  beforeEach(() => {
    cache = mkdtempSync(join(root, 'cache-'));
    // HOME points into the test folder so no real token file or cache is ever read.
    env = { HF_HUB_CACHE: cache, HF_ENDPOINT: hub.url, HOME: root };
    hub.requests.length = 0;
    cutAt = undefined;
  });

  const repoDir = (id: string) => join(cache, `models--${id.replace('/', '--')}`);

  it('a folder stays a folder, whatever the environment (no request)', async () => {
    assert.equal(await resolveModel({ model: CLIP_TINY, env }), CLIP_TINY);
    assert.equal(hub.requests.length, 0);
  });

  it('first download: config, weights and tokenizer files only, in huggingface_hub\'s layout; loads to the float64 reference', async () => {
    const events: DownloadProgress[] = [];
    const dir = await resolveModel({ model: 'org/clip-tiny', env, onProgress: (p) => events.push(p) });
    const sha = hub.sha('org/clip-tiny');
    const repo = repoDir('org/clip-tiny');
    assert.equal(dir, join(repo, 'snapshots', sha));
    assert.equal(readFileSync(join(repo, 'refs', 'main'), 'utf8'), sha);
    const wanted = ['config.json', 'model.safetensors', ...CLIP_TINY_SIDE_FILES].sort();
    assert.deepEqual(readdirSync(dir).sort(), wanted);
    for (const f of wanted) {
      assert.ok(lstatSync(join(dir, f)).isSymbolicLink(), `${f} is a symlink`);
      assert.equal(readlinkSync(join(dir, f)), join('..', '..', 'blobs', hub.etag('org/clip-tiny', f)), `${f} points at its blob`);
      assert.deepEqual(readFileSync(join(dir, f)), read(f), `${f} content`);
    }
    assert.equal(hub.etag('org/clip-tiny', 'model.safetensors'), createHash('sha256').update(read('model.safetensors')).digest('hex'));
    assert.deepEqual(readdirSync(join(repo, 'blobs')).filter((b) => b.endsWith('.incomplete')), []);
    // The endpoints @huggingface/hub called: model info (sha, files), paths-info, then per file the probe and the body.
    const paths = hub.requests.map((r) => `${r.method} ${r.url.split('?')[0]}`);
    assert.equal(paths[0], `GET /api/models/org/clip-tiny/revision/main`);
    assert.equal(paths[1], `POST /api/models/org/clip-tiny/paths-info/${sha}`);
    assert.ok(paths.includes(`GET /org/clip-tiny/resolve/${sha}/model.safetensors`));
    assert.ok(paths.includes(`GET /cdn/${hub.etag('org/clip-tiny', 'model.safetensors')}`));
    for (const f of ['README.md', 'pytorch_model.bin', 'flax_model.msgpack']) assert.ok(!paths.some((p) => p.endsWith(`/${f}`)), `${f} not fetched`);
    // Progress: monotone, ending at the total size of the files fetched.
    const total = wanted.reduce((a, f) => a + read(f).length, 0);
    assert.equal(events.at(-1)!.bytes, total);
    assert.ok(events.every((e, i) => e.total === total && (i === 0 || e.bytes >= events[i - 1]!.bytes)));
    const m = await ClipModel.load(dir, { threads: 1 });
    try {
      await assertClipTinyReference(m, 'downloaded org/clip-tiny');
    } finally {
      await m.dispose();
    }
  });

  it('the second call uses the cache: 0 requests (so does a commit sha as revision)', async () => {
    const first = await resolveModel({ model: 'org/clip-tiny', env });
    hub.requests.length = 0;
    assert.equal(await resolveModel({ model: 'org/clip-tiny', env }), first);
    assert.equal(await resolveModel({ model: 'org/clip-tiny', revision: hub.sha('org/clip-tiny'), env }), first);
    assert.equal(await resolveModel({ model: 'org/clip-tiny', env: { ...env, HF_HUB_OFFLINE: '1' } }), first);
    assert.equal(hub.requests.length, 0);
  });

  it('another revision reuses the blobs it shares, and gets its own refs file', async () => {
    await resolveModel({ model: 'org/clip-tiny', env });
    hub.requests.length = 0;
    const dir = await resolveModel({ model: 'org/clip-tiny', revision: 'v1', env });
    assert.equal(readFileSync(join(repoDir('org/clip-tiny'), 'refs', 'v1'), 'utf8'), hub.sha('org/clip-tiny'));
    assert.equal(dir, join(repoDir('org/clip-tiny'), 'snapshots', hub.sha('org/clip-tiny')));
    assert.equal(hub.requests.filter((r) => r.url.startsWith('/cdn/')).length, 0, 'no body downloaded again');
  });

  it('a sharded pytorch_model.bin repo: index then shards, nothing else; loads to the float64 reference', async () => {
    const dir = await resolveModel({ model: 'org/clip-tiny-bin', env });
    assert.deepEqual(readdirSync(dir).sort(), ['config.json', 'pytorch_model-00001-of-00002.bin', 'pytorch_model-00002-of-00002.bin', 'pytorch_model.bin.index.json', ...CLIP_TINY_SIDE_FILES].sort());
    const m = await ClipModel.load(dir, { threads: 1 });
    try {
      assert.equal(m.config.text_config.eos_token_id, 2);
      await assertClipTinyReference(m, 'downloaded org/clip-tiny-bin');
    } finally {
      await m.dispose();
    }
  });

  it('HF_TOKEN is sent as a Bearer token; without it a private repo fails naming the id, revision and cache', async () => {
    await assert.rejects(resolveModel({ model: 'org/private-clip', env }), (e: Error) => {
      assert.match(e.message, /cannot get 'org\/private-clip' \(revision main\) from http:\/\/127\.0\.0\.1:\d+: the hub answered 401 \(Access to model org\/private-clip is restricted[^)]*\): the repo is gated or private \(or does not exist\); set HF_TOKEN to a token with access/);
      assert.ok(e.message.includes(`(it is not in the Hugging Face cache '${cache}': no models--org--private-clip/refs/main)`), e.message);
      return true;
    });
    hub.requests.length = 0;
    const dir = await resolveModel({ model: 'org/private-clip', env: { ...env, HF_TOKEN: TOKEN } });
    assert.ok(existsSync(join(dir, 'model.safetensors')));
    const toHub = hub.requests.filter((r) => !r.url.startsWith('/cdn/'));
    assert.ok(toHub.length >= 3);
    for (const r of toHub) assert.equal(r.authorization, `Bearer ${TOKEN}`, `${r.method} ${r.url}`);
    await assert.rejects(resolveModel({ model: 'org/private-clip', revision: 'other', env: { ...env, HF_TOKEN: 'hf_wrong' } }),
      /the hub answered 401 .*the token given \(HF_TOKEN or the saved login\) has no access to it/);
  });

  it('the token saved by `huggingface-cli login` ($HF_HOME/token) is used when HF_TOKEN is unset', async () => {
    const hfHome = join(root, 'hf-home');
    mkdirSync(hfHome, { recursive: true });
    writeFileSync(join(hfHome, 'token'), `${TOKEN}\n`);
    const dir = await resolveModel({ model: 'org/private-clip', env: { HF_HOME: hfHome, HF_ENDPOINT: hub.url, HOME: root } });
    assert.equal(dir, join(hfHome, 'hub', 'models--org--private-clip', 'snapshots', hub.sha('org/private-clip')));
    rmSync(hfHome, { recursive: true, force: true });
  });

  it('HF_ENDPOINT is honoured, path prefix and trailing slash included', async () => {
    const mirror = await startStandInHub({ repos: { 'org/clip-tiny': { files: clipRepoFiles() } }, prefix: '/mirror' });
    try {
      const dir = await resolveModel({ model: 'org/clip-tiny', env: { ...env, HF_ENDPOINT: `${mirror.url}/` } });
      assert.ok(existsSync(join(dir, 'model.safetensors')));
      assert.ok(mirror.requests.length >= 3);
      assert.equal(hub.requests.length, 0);
    } finally {
      await mirror.close();
    }
  });

  it('404s name the id, the revision and the cache folder', async () => {
    await assert.rejects(resolveModel({ model: 'org/no-such-model', env }), (e: Error) => {
      assert.match(e.message, /^cannot get 'org\/no-such-model' \(revision main\) from http:\/\/127\.0\.0\.1:\d+: the hub answered 404 \(Repository not found\): no such repo or revision/);
      assert.ok(e.message.endsWith(`(it is not in the Hugging Face cache '${cache}': no models--org--no-such-model/refs/main)`), e.message);
      return true;
    });
    await assert.rejects(resolveModel({ model: 'org/clip-tiny', revision: 'v9', env }),
      /cannot get 'org\/clip-tiny' \(revision v9\) .*404 \(Invalid rev id: v9\).*no models--org--clip-tiny\/refs\/v9/);
  });

  it('an unreachable endpoint is named with the cause', async () => {
    // A port that was just free: nothing listens there.
    const probe = createServer();
    await new Promise<void>((ok) => probe.listen(0, '127.0.0.1', ok));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>((ok) => probe.close(() => ok()));
    await assert.rejects(resolveModel({ model: 'org/clip-tiny', env: { ...env, HF_ENDPOINT: `http://127.0.0.1:${port}` } }),
      new RegExp(`^HubError: cannot get 'org/clip-tiny' \\(revision main\\) from http://127\\.0\\.0\\.1:${port}: fetch failed \\(.*ECONNREFUSED.*\\) \\(it is not in the Hugging Face cache '.*': no models--org--clip-tiny/refs/main\\)$`));
  });

  it('HF_HUB_OFFLINE=1 never touches the network: an uncached id fails naming it, the revision and the cache', async () => {
    for (const flag of [{ HF_HUB_OFFLINE: '1' }, { HF_HUB_OFFLINE: 'true' }, { TRANSFORMERS_OFFLINE: '1' }]) {
      await assert.rejects(resolveModel({ model: 'org/clip-tiny', env: { ...env, ...flag } }), (e: Error) => {
        assert.equal(e.message,
          `'org/clip-tiny' is not a local folder, and hub id 'org/clip-tiny' (revision main) is not in the Hugging Face cache '${cache}' (no models--org--clip-tiny/refs/main); HF_HUB_OFFLINE is set, so nothing is downloaded: run once online, or pass a model folder`);
        return true;
      });
    }
    assert.equal(hub.requests.length, 0);
  });

  it('an incomplete cached snapshot is completed online and named offline', async () => {
    const dir = await resolveModel({ model: 'org/clip-tiny', env });
    rmSync(join(repoDir('org/clip-tiny'), 'blobs', hub.etag('org/clip-tiny', 'model.safetensors')));
    await assert.rejects(resolveModel({ model: 'org/clip-tiny', env: { ...env, HF_HUB_OFFLINE: '1' } }),
      new RegExp(`not in the Hugging Face cache '${cache}' \\(its snapshot ${hub.sha('org/clip-tiny')} lacks model weights`));
    hub.requests.length = 0;
    assert.equal(await resolveModel({ model: 'org/clip-tiny', env }), dir);
    assert.deepEqual(readFileSync(join(dir, 'model.safetensors')), read('model.safetensors'));
    assert.equal(hub.requests.filter((r) => r.url.startsWith('/cdn/')).length, 2, 'only the missing blob: probe and body');
  });

  it('a connection cut mid-body is resumed with a Range request; the blob is whole and verified', async () => {
    const size = read('model.safetensors').length;
    const half = Math.floor(size / 2);
    let cuts = 0;
    // The probe (Range bytes=0-0) is left alone; the first body is cut after half the file.
    cutAt = ({ file, length }) => (file === 'model.safetensors' && length === size && cuts++ === 0 ? half : undefined);
    const dir = await resolveModel({ model: 'org/clip-tiny', env });
    assert.equal(cuts, 1);
    assert.deepEqual(readFileSync(join(dir, 'model.safetensors')), read('model.safetensors'));
    // The second body starts where the bytes read before the cut end (at most `half`: bytes still
    // in flight when the connection dropped are lost, never written).
    const bodies = hub.requests.filter((r) => r.url.startsWith('/cdn/') && r.range !== 'bytes=0-0');
    assert.equal(bodies.length, 2);
    assert.equal(bodies[0]!.range, undefined);
    const from = Number(new RegExp(`^bytes=(\\d+)-${size - 1}$`).exec(bodies[1]!.range ?? '')?.[1]);
    assert.ok(from > 0 && from <= half, `resumed at ${bodies[1]!.range}`);
    assert.deepEqual(readdirSync(join(repoDir('org/clip-tiny'), 'blobs')).filter((b) => b.endsWith('.incomplete')), []);
  });

  it('a download that keeps failing leaves no blob and no link, only the .incomplete file; the next run resumes it', async () => {
    const size = read('model.safetensors').length;
    const blob = join(repoDir('org/clip-tiny'), 'blobs', hub.etag('org/clip-tiny', 'model.safetensors'));
    cutAt = ({ file, start }) => (file === 'model.safetensors' ? Math.min(1 << 20, size - start - 1) : undefined);
    let kept = 0;
    await assert.rejects(resolveModel({ model: 'org/clip-tiny', env }), (e: Error) => {
      const m = /^cannot get 'org\/clip-tiny' \(revision main\) from .*: download of 'model\.safetensors' \(\d+ bytes\) failed after 3 attempts: .*; the (\d+) bytes received stay in '(.*\.incomplete)' and the next run resumes from there/.exec(e.message);
      assert.ok(m, e.message);
      kept = Number(m[1]);
      assert.equal(m[2], `${blob}.incomplete`);
      return true;
    });
    // Three attempts of at most 1 MiB each.
    assert.ok(kept > 0 && kept <= 3 << 20, `${kept} bytes kept`);
    assert.equal(existsSync(blob), false);
    assert.equal(statSync(`${blob}.incomplete`).size, kept);
    const snapshot = join(repoDir('org/clip-tiny'), 'snapshots', hub.sha('org/clip-tiny'));
    assert.equal(existsSync(join(snapshot, 'model.safetensors')), false);
    assert.equal(existsSync(join(repoDir('org/clip-tiny'), 'refs', 'main')), false);
    cutAt = undefined;
    hub.requests.length = 0;
    const dir = await resolveModel({ model: 'org/clip-tiny', env });
    assert.deepEqual(readFileSync(join(dir, 'model.safetensors')), read('model.safetensors'));
    const bodies = hub.requests.filter((r) => r.url.startsWith('/cdn/') && r.range !== 'bytes=0-0');
    assert.deepEqual(bodies.map((r) => r.range), [`bytes=${kept}-${size - 1}`]);
  });

  it('a corrupt .incomplete file is caught by the sha256 check and downloaded again from the start', async () => {
    const blob = join(repoDir('org/clip-tiny'), 'blobs', hub.etag('org/clip-tiny', 'model.safetensors'));
    mkdirSync(join(repoDir('org/clip-tiny'), 'blobs'), { recursive: true });
    writeFileSync(`${blob}.incomplete`, Buffer.alloc(1000, 7));
    const dir = await resolveModel({ model: 'org/clip-tiny', env });
    assert.deepEqual(readFileSync(join(dir, 'model.safetensors')), read('model.safetensors'));
    const bodies = hub.requests.filter((r) => r.url.startsWith('/cdn/') && r.range !== 'bytes=0-0');
    assert.deepEqual(bodies.map((r) => r.range), [`bytes=1000-${read('model.safetensors').length - 1}`, undefined]);
  });

  it('a hand-built cache (as transformers leaves it) loads offline to the float64 reference', async () => {
    // Built here by hand, not by setar: blobs named by sha256 (LFS) or git sha1, relative links, refs/main.
    const sha = 'c0ffee0000000000000000000000000000000001';
    const repo = join(cache, 'models--openai--clip-tiny-a');
    const snapshot = join(repo, 'snapshots', sha);
    mkdirSync(join(repo, 'blobs'), { recursive: true });
    mkdirSync(snapshot, { recursive: true });
    mkdirSync(join(repo, 'refs'));
    writeFileSync(join(repo, 'refs', 'main'), sha);
    for (const f of ['config.json', 'model.safetensors', ...CLIP_TINY_SIDE_FILES]) {
      const data = read(f);
      const etag = f.endsWith('.safetensors')
        ? createHash('sha256').update(data).digest('hex')
        : createHash('sha1').update(`blob ${data.length}\0`).update(data).digest('hex');
      writeFileSync(join(repo, 'blobs', etag), data);
      symlinkSync(relative(snapshot, join(repo, 'blobs', etag)), join(snapshot, f));
    }
    for (const offline of [{ HF_HUB_OFFLINE: '1' }, {}]) {
      const dir = await resolveModel({ model: 'openai/clip-tiny-a', env: { ...env, ...offline } });
      assert.equal(dir, snapshot);
    }
    assert.equal(hub.requests.length, 0);
    const m = await ClipModel.load(snapshot, { threads: 1 });
    try {
      await assertClipTinyReference(m, 'hand-built cache');
    } finally {
      await m.dispose();
    }
  });

  it('not a folder and not a hub id: one clear error', async () => {
    await assert.rejects(resolveModel({ model: 'no-such-folder', env }), /^HubError: model 'no-such-folder' is not a local folder \(no such directory\) and not a Hugging Face hub id \(ORG\/NAME\)$/);
    await assert.rejects(resolveModel({ model: 'a/b/c', env }), /model 'a\/b\/c' is not a local folder \(no such directory\) and not a Hugging Face hub id/);
    const file = join(CLIP_TINY, 'config.json');
    await assert.rejects(resolveModel({ model: file, env }), new RegExp(`model '${file}' is not a local folder \\(it is a file\\)`));
    assert.equal(hub.requests.length, 0);
  });
});

describe('hub settings from the environment (huggingface_hub\'s precedence)', () => {
  it('cache: HF_HUB_CACHE, else HF_HOME/hub, else XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub', () => {
    assert.equal(hubSettings({ HOME: '/h', HF_HUB_CACHE: '/c', HF_HOME: '/x' }).cacheDir, '/c');
    assert.equal(hubSettings({ HOME: '/h', HF_HOME: '/x' }).cacheDir, '/x/hub');
    assert.equal(hubSettings({ HOME: '/h', XDG_CACHE_HOME: '/xdg' }).cacheDir, '/xdg/huggingface/hub');
    assert.equal(hubSettings({ HOME: '/h' }).cacheDir, '/h/.cache/huggingface/hub');
    assert.equal(hubSettings({ HOME: '/h', HF_HOME: '~/hf' }).cacheDir, '/h/hf/hub');
  });

  it('endpoint, offline flag and token', () => {
    assert.equal(hubSettings({ HOME: '/nonexistent' }).endpoint, 'https://huggingface.co');
    assert.equal(hubSettings({ HOME: '/nonexistent', HF_ENDPOINT: 'https://mirror.example/hf/' }).endpoint, 'https://mirror.example/hf');
    assert.equal(hubSettings({ HOME: '/nonexistent', HF_HUB_OFFLINE: 'YES' }).offline, true);
    assert.equal(hubSettings({ HOME: '/nonexistent', HF_HUB_OFFLINE: '0' }).offline, false);
    assert.equal(hubSettings({ HOME: '/nonexistent' }).token, undefined);
    assert.equal(hubSettings({ HOME: '/nonexistent', HF_TOKEN: ' hf_x ' }).token, 'hf_x');
  });
});
