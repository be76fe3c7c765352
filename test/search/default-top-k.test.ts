import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaultTopK } from '../../src/ood/locoop.js';
import { resolveSearchConfig } from '../../src/search/config.js';
import { runSearch } from '../../src/search/greedy.js';
import { fixture } from '../helpers/fixtures.js';
import { writeTestImage } from '../helpers/images.js';

describe('the default K of the OOD-patch rule is the reference\'s share of the classes', () => {
  it('gives the paper\'s values on its benchmarks and stays in [1, classes]', () => {
    assert.equal(defaultTopK(0.3, 1000), 300); // CLIP on ImageNet-1K
    assert.equal(defaultTopK(0.3, 14), 4); // CLIP on Pascal-VOC: round(4.2)
    assert.equal(defaultTopK(0.7, 1000), 700); // Swin V2 on ImageNet-1K
    assert.equal(defaultTopK(0.3, 5), 2); // round(1.5): half to even
    assert.equal(defaultTopK(0.3, 15), 4); // 0.3 × 15 = 4.499… in floating point, as in Python
    assert.equal(defaultTopK(0.3, 2), 1);
    assert.equal(defaultTopK(0.7, 1), 1);
  });

  let dir = '';
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'setar-topk-'));
    process.env.SETAR_CACHE_DIR = join(dir, 'cache');
    let k = 0;
    for (const c of ['a', 'b', 'c', 'd', 'e']) for (let i = 0; i < 2; i++) await writeTestImage(join(dir, 'val', c, `${i}.jpg`), k++);
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('a search on 5 classes without --locoop-top-k runs (K 2), says so and writes it to config_best.json', async () => {
    const notices: string[] = [];
    const c = resolveSearchConfig(null, { model: fixture('clip-tiny-a'), id: `five=${join(dir, 'val')}`, searcher: 'visual_only', candiRatios: [0, 0.25], out: join(dir, 'out') });
    assert.equal(c.locoop_top_k, null);
    await runSearch(c, { notice: (l) => notices.push(l) });
    assert.deepEqual(notices, ['locoop_top_k 2: round(0.3 × 5 classes), the reference\'s share of the classes (--locoop-top-k sets it)']);
    const best = JSON.parse(readFileSync(join(dir, 'out', 'config_best.json'), 'utf8')) as { locoop_top_k: number };
    assert.equal(best.locoop_top_k, 2);
    assert.match(readFileSync(join(dir, 'out', 'search.log'), 'utf8'), /locoop_top_k 2: round\(0\.3 × 5 classes\)/);
  });
});
