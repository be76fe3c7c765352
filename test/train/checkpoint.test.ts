import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { EpochCheckpoint } from '../../src/train/checkpoint.js';
import { NonFiniteLossError } from '../../src/train/train-log.js';

const tensor = (v: number) => ({ w: { dtype: 'F32' as const, shape: [2], data: new Float32Array([v, -v]) } });

describe('EpochCheckpoint', () => {
  it('resumes the last saved epoch, keeps one tensor file, and refuses another run\'s settings', () => {
    const out = mkdtempSync(join(tmpdir(), 'setar-ckpt-'));
    const a = new EpochCheckpoint(out, 'fp-1', 'adapters');
    assert.equal(a.resume(() => assert.fail('nothing to restore yet')), null);
    a.save({ epoch: 1, step: 4, rng: 11, log: [] }, tensor(1));
    a.save({ epoch: 2, step: 8, rng: 22, log: [] }, tensor(2));
    assert.deepEqual(readdirSync(a.dir).sort(), ['adapters-epoch2.safetensors', 'state.json']);
    let restored: number[] = [];
    const b = new EpochCheckpoint(out, 'fp-1', 'adapters');
    const progress = b.resume((f) => { restored = [...f.readFloat32('w')]; });
    assert.deepEqual(progress, { epoch: 2, step: 8, rng: 22, log: [] });
    assert.deepEqual(restored, [2, -2]);
    assert.throws(() => new EpochCheckpoint(out, 'fp-2', 'adapters').resume(() => {}), /holds a checkpoint of a run with other settings/);
  });

  it('a non-finite loss names the epoch actually kept: none, the one resumed, or the one saved since', () => {
    const out = mkdtempSync(join(tmpdir(), 'setar-ckpt-'));
    const a = new EpochCheckpoint(out, 'fp', 'context');
    const none = a.nonFiniteLoss(NaN, 3, 0);
    assert.ok(none instanceof NonFiniteLossError);
    assert.match(none.message, /^the training loss became NaN at step 3 \(epoch 0\); stopping\. No epoch had finished, so there is no checkpoint\. Lower --learning-rate\.$/);
    a.save({ epoch: 1, step: 4, rng: 0, log: [] }, tensor(1));
    const b = new EpochCheckpoint(out, 'fp', 'context');
    b.resume(() => {});
    assert.match(b.nonFiniteLoss(Infinity, 5, 1).message, /last good checkpoint \(after epoch 1\) is kept in '.*checkpoint'/);
    b.save({ epoch: 2, step: 8, rng: 0, log: [] }, tensor(2));
    b.save({ epoch: 3, step: 12, rng: 0, log: [] }, tensor(3));
    assert.match(b.nonFiniteLoss(NaN, 13, 3).message, /last good checkpoint \(after epoch 3\)/);
  });
});
