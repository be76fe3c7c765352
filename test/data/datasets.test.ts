import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dataFile } from '../../src/paths.js';
import { benchmarkPreset, imageFolder, imageTree, resolveLabels, splitListDataset, walkImages, type SkippedFolder } from '../../src/data/datasets.js';

function touch(root: string, ...paths: string[]): void {
  for (const p of paths) {
    mkdirSync(join(root, p, '..'), { recursive: true });
    writeFileSync(join(root, p), 'x');
  }
}

describe('datasets', () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), 'setar-ds-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('walks like sorted(os.walk()): directories sorted by path string, files sorted, non-images ignored', () => {
    const r = join(dir, 'walk');
    touch(r, 'b.jpg', 'a.PNG', 'x/2.jpg', 'x/1.webp', 'x-1/z.jpg', 'x/y/0.jpg', 'notes.txt', 'x/readme.md');
    const rel = walkImages(r).map((f) => f.slice(r.length + 1));
    // 'x-1' < 'x/y' because '-' (0x2d) sorts before '/' (0x2f): not a depth-first order
    assert.deepEqual(rel, ['a.PNG', 'b.jpg', 'x/1.webp', 'x/2.jpg', 'x-1/z.jpg', 'x/y/0.jpg']);
  });

  it('follows directory symlinks as ImageFolder does, but walks each real folder once: cycles and aliases are skipped and listed', () => {
    const r = join(dir, 'links');
    const outside = join(dir, 'outside');
    touch(r, 'a/1.jpg', 'a/deep/2.jpg', 'z/3.jpg');
    touch(outside, 'x.jpg');
    symlinkSync(r, join(r, 'a', 'deep', 'loop')); // a cycle: back to the root
    symlinkSync(join(r, 'a'), join(r, 'b')); // an alias of a folder walked anyway
    symlinkSync(join(r, 'z'), join(r, 'a', 'to-z')); // sorts before z, but the real path wins
    symlinkSync(outside, join(r, 'ext')); // a folder reachable only through the link: followed
    symlinkSync(join(dir, 'nowhere'), join(r, 'dangling'));
    const skipped: SkippedFolder[] = [];
    const rel = walkImages(r, skipped).map((f) => f.slice(r.length + 1));
    assert.deepEqual(rel, ['a/1.jpg', 'a/deep/2.jpg', 'ext/x.jpg', 'z/3.jpg']);
    assert.deepEqual(skipped.map((s) => [s.path.slice(r.length + 1), s.reason]).sort(), [
      ['a/deep/loop', `directory symlink cycle: leads back to '${r}'`],
      ['a/to-z', `directory symlink to '${join(r, 'z')}', already walked`],
      ['b', `directory symlink to '${join(r, 'a')}', already walked`],
    ]);
    const tree = imageTree('OOD_links', r);
    assert.equal(tree.files.length, 4, 'each image once');
    assert.equal(tree.skippedFolders!.length, 3);
    // ImageFolder: a class folder that is a symlink to another class's folder gets none of its images
    const id = join(dir, 'id-links');
    touch(id, 'cat/1.jpg', 'cat/2.jpg');
    symlinkSync(outside, join(id, 'bird'));
    symlinkSync(join(id, 'cat'), join(id, 'dog'));
    const ds = imageFolder('ID_links', id);
    assert.deepEqual(ds.classes, ['bird', 'cat', 'dog']);
    assert.deepEqual(ds.relPaths, ['bird/x.jpg', 'cat/1.jpg', 'cat/2.jpg']);
    assert.deepEqual([...ds.labels!], [0, 1, 1]);
    assert.deepEqual(ds.skippedFolders!.map((s) => s.path), [join(id, 'dog')]);
  });

  it('ImageFolder: sorted class folders give the labels, images found recursively', () => {
    const r = join(dir, 'id');
    touch(r, 'zebra/1.jpg', 'apple/b.jpg', 'apple/a.jpg', 'Mango/sub/c.png', 'apple/skip.txt');
    const ds = imageFolder('ID_test', r);
    assert.deepEqual(ds.classes, ['Mango', 'apple', 'zebra']);
    assert.deepEqual(ds.relPaths, ['Mango/sub/c.png', 'apple/a.jpg', 'apple/b.jpg', 'zebra/1.jpg']);
    assert.deepEqual([...ds.labels!], [0, 1, 1, 2]);
    assert.deepEqual(resolveLabels(ds), ['Mango', 'apple', 'zebra']);
    assert.deepEqual(resolveLabels(ds, ['m', 'a', 'z']), ['m', 'a', 'z']);
    assert.throws(() => resolveLabels(ds, ['a', 'b'], 'labels.txt'), /labels\.txt has 2 labels but dataset ID_test has 3 class folders under '.*id'/);
  });

  it('errors name the folder: missing, no classes, no images', () => {
    assert.throws(() => imageFolder('X', join(dir, 'missing')), /dataset X folder '.*missing' does not exist/);
    mkdirSync(join(dir, 'flat'));
    touch(join(dir, 'flat'), 'a.jpg');
    assert.throws(() => imageFolder('X', join(dir, 'flat')), /'.*flat' has no class sub-folders/);
    mkdirSync(join(dir, 'empty', 'cls'), { recursive: true });
    assert.throws(() => imageFolder('X', join(dir, 'empty')), /dataset X: no images under '.*empty'/);
    assert.throws(() => imageTree('OOD_X', join(dir, 'empty')), /OOD dataset OOD_X: no images under/);
  });

  it('split lists ({class: [files]}) resolve against root/<class>/<file>, classes sorted', () => {
    const r = join(dir, 'list');
    touch(r, 'dog/d2.jpg', 'dog/d1.jpg', 'cat/c1.jpg', 'cat/extra.jpg');
    const ds = splitListDataset('ID_L', r, { dog: ['d2.jpg', 'd1.jpg'], cat: ['c1.jpg'] }, 'val.json');
    assert.deepEqual(ds.relPaths, ['cat/c1.jpg', 'dog/d2.jpg', 'dog/d1.jpg']);
    assert.deepEqual([...ds.labels!], [0, 1, 1]);
    assert.throws(() => splitListDataset('ID_L', r, { dog: ['nope.jpg'] }, 'val.json'), /val\.json lists files that do not exist, e\.g\.:\n {2}.*dog\/nope\.jpg/);
  });

  it('benchmark presets: VOC test uses the paper list, class names and OOD sets from benchmarks.json', () => {
    const root = join(dir, 'bench');
    // the VOC test list names specific files; build exactly those
    const list = JSON.parse(readFileSync(dataFile('voc_test_data.json'), 'utf8')) as Record<string, string[]>;
    for (const [c, files] of Object.entries(list)) touch(join(root, 'ID_VOC', 'test'), ...files.map((f) => `${c}/${f}`));
    const p = benchmarkPreset('voc', root, 'test');
    assert.equal(p.id.name, 'ID_VOC');
    assert.equal(p.labels.length, 14);
    assert.equal(p.labels[0], 'aeroplane');
    assert.equal(p.id.files.length, Object.values(list).reduce((a, f) => a + f.length, 0));
    assert.deepEqual(p.ood.map((o) => o.name), ['OOD_iNaturalist', 'OOD_Sun', 'OOD_Places', 'OOD_Texture', 'OOD_ImageNet22K', 'OOD_COCO']);
    assert.match(p.ood[0]!.root, /bench\/OOD_iNaturalist\/test$/);
    assert.throws(() => benchmarkPreset('cifar', root, 'test'), /unknown benchmark "cifar"; known: imagenet1k, voc, coco/);
  });
});

