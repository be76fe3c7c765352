import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseClipConfig } from '../../../src/models/clip/config.js';
import { ClipModel } from '../../../src/models/clip/model.js';
import { assertClipTinyReference, CLIP_TINY, clipTinyTensors, copyClipTinySideFiles, positionIdBuffers } from '../../helpers/clip-tiny.js';
import { writeTorchCheckpoint, type TorchZipTensor } from '../../helpers/torch-zip.js';

const tiny = JSON.parse(readFileSync(join(CLIP_TINY, 'config.json'), 'utf8')) as Record<string, Record<string, unknown>>;

/**
 * clip-tiny-a's config in the shape of the original OpenAI hub configs: `text_config` /
 * `vision_config` hold stale values (ViT-B/32 sizes, bos 0 / eos 2) and the legacy
 * `text_config_dict` / `vision_config_dict` hold the architecture, which transformers lets win.
 */
function legacyConfig(): Record<string, unknown> {
  return {
    architectures: ['CLIPModel'], model_type: 'clip', projection_dim: 40, logit_scale_init_value: 2.6592, initializer_factor: 1.0,
    text_config: { ...tiny.text_config, hidden_size: 512, intermediate_size: 2048, num_attention_heads: 8, num_hidden_layers: 12, bos_token_id: 0, eos_token_id: 2 },
    text_config_dict: { hidden_size: 48, intermediate_size: 192, num_attention_heads: 4, num_hidden_layers: 2, projection_dim: 40 },
    vision_config: { ...tiny.vision_config, hidden_size: 768, intermediate_size: 3072, num_attention_heads: 12, num_hidden_layers: 12, image_size: 224, patch_size: 32 },
    vision_config_dict: { hidden_size: 64, intermediate_size: 256, num_attention_heads: 4, num_hidden_layers: 2, image_size: 32, patch_size: 8, projection_dim: 40 },
  };
}

describe('legacy OpenAI hub configs (text_config_dict / vision_config_dict, bos 0 / eos 2)', () => {
  it('the *_config_dict wins over *_config, keys it omits take the defaults, and transformers\' messages are logged', () => {
    const logs: string[] = [];
    const c = parseClipConfig(legacyConfig(), 'legacy/config.json', { log: (m) => logs.push(m) });
    // From text_config_dict:
    assert.equal(c.text_config.hidden_size, 48);
    assert.equal(c.text_config.intermediate_size, 192);
    assert.equal(c.text_config.num_attention_heads, 4);
    assert.equal(c.text_config.num_hidden_layers, 2);
    // Omitted by the dict: CLIPTextConfig's defaults, overriding text_config's 0 and 2.
    assert.equal(c.text_config.bos_token_id, 49406);
    assert.equal(c.text_config.eos_token_id, 49407);
    assert.equal(c.text_config.pad_token_id, 1);
    assert.deepEqual(
      [c.vision_config.hidden_size, c.vision_config.intermediate_size, c.vision_config.num_attention_heads, c.vision_config.num_hidden_layers, c.vision_config.image_size, c.vision_config.patch_size],
      [64, 256, 4, 2, 32, 8]);
    const both = (tower: string, k: string) => `\`${k}\` is found in both \`${tower}_config_dict\` and \`${tower}_config\` but with different values. The value \`${tower}_config_dict["${k}"]\` will be used instead.`;
    const overridden = (tower: string, cls: string, k: string) => `\`${tower}_config_dict\` is provided which will be used to initialize \`${cls}\`. The value \`${tower}_config["${k}"]\` will be overridden.`;
    assert.deepEqual(new Set(logs), new Set([
      ...['hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads'].map((k) => both('text', k)),
      overridden('text', 'CLIPTextConfig', 'bos_token_id'), overridden('text', 'CLIPTextConfig', 'eos_token_id'),
      ...['hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'image_size', 'patch_size'].map((k) => both('vision', k)),
    ]));
    assert.equal(logs.length, 12);
  });

  it('a dict alone (no *_config) builds the tower from it, silently', () => {
    const logs: string[] = [];
    const { text_config: _t, vision_config: _v, ...rest } = legacyConfig();
    const c = parseClipConfig(rest, 'config.json', { log: (m) => logs.push(m) });
    assert.equal(c.text_config.num_hidden_layers, 2);
    assert.equal(c.vision_config.patch_size, 8);
    assert.deepEqual(logs, []);
  });

  it('without the dicts, eos_token_id 2 and bos_token_id 0 are kept (pooling then takes argmax of the ids)', () => {
    const c = parseClipConfig({ ...tiny, text_config: { ...tiny.text_config, bos_token_id: 0, eos_token_id: 2 } });
    assert.equal(c.text_config.eos_token_id, 2);
    assert.equal(c.text_config.bos_token_id, 0);
  });

  it('a badly typed dict entry names the dict key', () => {
    const cfg = legacyConfig();
    (cfg.text_config_dict as Record<string, unknown>).num_hidden_layers = '2';
    assert.throws(() => parseClipConfig(cfg, 'x/config.json'), /x\/config\.json: "text_config_dict\.num_hidden_layers" must be a number, got "2"/);
    assert.throws(() => parseClipConfig({ ...legacyConfig(), vision_config_dict: 3 }, 'x/config.json'), /"vision_config_dict" must be an object/);
  });
});

describe('CLIP from pytorch_model.bin only, with a legacy config (clip-tiny-a re-saved by torch.save)', () => {
  let root: string;
  const tensors: Record<string, TorchZipTensor> = {};

  before(() => {
    root = mkdtempSync(join(tmpdir(), 'setar-clip-bin-'));
    // transformers < 4.31 saved the int64 position_ids buffers with the weights; they must be ignored.
    Object.assign(tensors, clipTinyTensors(), positionIdBuffers());
  });
  after(() => rmSync(root, { recursive: true, force: true }));

  function folder(name: string, config: object): string {
    const d = join(root, name);
    copyClipTinySideFiles(d);
    writeFileSync(join(d, 'config.json'), JSON.stringify(config));
    return d;
  }

  it('single pytorch_model.bin, text_config_dict / vision_config_dict config: the float64 reference outputs', async () => {
    const d = folder('single', legacyConfig());
    writeTorchCheckpoint(join(d, 'pytorch_model.bin'), tensors);
    const m = await ClipModel.load(d, { threads: 1 });
    try {
      assert.equal(m.config.text_config.eos_token_id, 49407);
      await assertClipTinyReference(m, 'pytorch_model.bin + legacy dicts');
    } finally {
      await m.dispose();
    }
  });

  it('sharded pytorch_model.bin.index.json, eos_token_id 2 config (argmax pooling): the float64 reference outputs', async () => {
    const d = folder('sharded', { ...tiny, text_config: { ...tiny.text_config, bos_token_id: 0, eos_token_id: 2 } });
    const names = Object.keys(tensors);
    const shards = [names.slice(0, 30), names.slice(30)];
    const weightMap: Record<string, string> = {};
    shards.forEach((part, i) => {
      const file = `pytorch_model-0000${i + 1}-of-00002.bin`;
      writeTorchCheckpoint(join(d, file), Object.fromEntries(part.map((n) => [n, tensors[n]!])));
      for (const n of part) weightMap[n] = file;
    });
    writeFileSync(join(d, 'pytorch_model.bin.index.json'), JSON.stringify({ metadata: { total_size: 0 }, weight_map: weightMap }));
    const m = await ClipModel.load(d, { threads: 1 });
    try {
      assert.equal(m.config.text_config.eos_token_id, 2);
      await assertClipTinyReference(m, 'sharded pytorch_model.bin + eos 2');
    } finally {
      await m.dispose();
    }
  });
});
