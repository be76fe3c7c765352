import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { loadAndPreprocess } from '../../src/image/preprocess.js';
import { swinPreprocess } from '../../src/models/swinv2/preprocess.js';
import { SwinV2Model } from '../../src/models/swinv2/model.js';
import { tensor } from '../../src/tensor.js';
import { fixture, REPO_ROOT } from '../helpers/fixtures.js';

const SWIN = fixture('swinv2-tiny-a');
const IMG = fixture('preprocess', 'photo-640x480.jpg');
const setar = (...args: string[]) => spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'setar.js'), ...args], { encoding: 'utf8' });

describe('setar classify on a Swin V2 classifier', () => {
  it('prints the softmax of the classifier logits with id2label names (Swin preprocessing)', async () => {
    const r = setar('classify', '--model', SWIN, '--json', '--top', '7', IMG);
    assert.equal(r.status, 0, r.stderr);
    const top = (JSON.parse(r.stdout) as { top: { label: string; index: number; probability: number }[] }[])[0]!.top;
    const m = await SwinV2Model.load(SWIN, { threads: 1 });
    try {
      const prep = swinPreprocess(m.config);
      const { logits } = await m.classify(tensor('float32', await loadAndPreprocess(IMG, prep), [1, 3, prep.cropSize, prep.cropSize]));
      const mx = Math.max(...logits.data);
      const e = Array.from(logits.data, (x) => Math.exp(x - mx));
      const s = e.reduce((a, b) => a + b, 0);
      for (const t of top) {
        assert.equal(t.label, `LABEL_${t.index}`);
        // the CLI runs ORT on every core, the test on one: float32 sums may differ in the last bits
        assert.ok(Math.abs(t.probability - e[t.index]! / s) < 1e-6, `${t.label}: ${t.probability} vs ${e[t.index]! / s}`);
      }
      assert.equal(top.length, 7);
    } finally {
      await m.dispose();
    }
  });

  it('a CLIP model still needs --labels, and says so', () => {
    const r = setar('classify', '--model', fixture('clip-tiny-a'), IMG);
    assert.equal(r.status, 1);
    assert.match(r.stderr, /a CLIP model needs --labels FILE/);
  });
});
