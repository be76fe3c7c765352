import { copyFileSync, mkdirSync, writeFileSync } from 'node:fs';
import sharp from 'sharp';
import { createBundle } from '/work/main/dist/src/bundle/bundle.js';
import { VIT_B16_CONFIG, writeRandomClip } from '/work/main/dist/src/models/clip/random.js';
const dir = '/tmp/vitb';
writeRandomClip(dir + '/model', VIT_B16_CONFIG, { seed: 0 });
for (const f of ['vocab.json', 'merges.txt']) copyFileSync('/work/shared/fixtures/clip-tokenizer/' + f, dir + '/model/' + f);
for (const c of ['a', 'b', 'c']) { mkdirSync(`${dir}/val/${c}`, { recursive: true }); for (let i = 0; i < 2; i++) writeFileSync(`${dir}/val/${c}/${i}.jpg`, await sharp({ create: { width: 320, height: 240, channels: 3, background: { r: 40 * i, g: 90, b: 160 }, noise: { type: 'gaussian', mean: 100 + i, sigma: 40 } } }).jpeg().toBuffer()); }
await createBundle({ model: dir + '/model', id: { kind: 'folder', name: 'toy', root: dir + '/val' }, out: dir + '/bundle' });
