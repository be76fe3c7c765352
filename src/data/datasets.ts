import { readdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { dirname, extname, join, relative, resolve, sep } from 'node:path';
import { dataFile } from '../paths.js';

/**
 * File extensions torchvision's `ImageFolder` accepts (IMG_EXTENSIONS), case-insensitive. Other
 * files are ignored, as the reference ignores them, so datasets have the reference's counts.
 */
export const IMAGE_EXTENSIONS: readonly string[] = ['.jpg', '.jpeg', '.png', '.ppm', '.bmp', '.pgm', '.tif', '.tiff', '.webp'];

/** A list of images, in the order every output file uses. */
export interface ImageDataset {
  /** e.g. `ID_ImageNet1K`, `OOD_iNaturalist` */
  readonly name: string;
  /** The folder that paths are relative to. */
  readonly root: string;
  /** Absolute paths. */
  readonly files: readonly string[];
  /** Paths relative to `root`, `/`-separated (the `image` column of score files). */
  readonly relPaths: readonly string[];
  /** Class index of each image (ID datasets). */
  readonly labels?: Int32Array;
  /** Class folder names in sorted order (ID datasets); index = label. */
  readonly classes?: readonly string[];
  /** Directory symlinks not followed because they lead to a folder already walked (cycles, aliases). */
  readonly skippedFolders?: readonly SkippedFolder[];
}

/** A dataset problem: the message names the folder or file and what was expected. */
export class DatasetError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DatasetError';
  }
}

function isImage(name: string): boolean {
  return IMAGE_EXTENSIONS.includes(extname(name).toLowerCase());
}

function isDir(path: string): boolean {
  try {
    return statSync(path).isDirectory();
  } catch {
    return false;
  }
}

/** Python's sorted() on strings compares code points; JS's default sort compares UTF-16 units. */
function byCodePoint(a: string, b: string): number {
  const x = [...a];
  const y = [...b];
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    const d = x[i]!.codePointAt(0)! - y[i]!.codePointAt(0)!;
    if (d) return d;
  }
  return x.length - y.length;
}

/** A folder the walk did not enter: a directory symlink leading to a folder already walked. */
export interface SkippedFolder {
  /** The path that was not walked (absolute). */
  readonly path: string;
  /** Why, e.g. "directory symlink cycle: leads back to '/data/x'". */
  readonly reason: string;
}

/**
 * Image files under each of `roots`, each list in the order of torchvision's `make_dataset`:
 * `for root, _, fnames in sorted(os.walk(dir, followlinks=True)): for fname in sorted(fnames)`.
 * Sorting the walk sorts by the directory path string, which is not a depth-first order
 * (`x-1` sorts before `x/y`), hence the collect-then-sort.
 *
 * Directory symlinks are followed, as `ImageFolder` does, but each real directory is walked once:
 * `os.walk(followlinks=True)` would follow a symlink cycle until the path is too long and list
 * every image under it again at each level. Real paths win over symlinks: every root's tree is
 * walked first without following symlinks, then the symlinks found, in the order found (sorted
 * by name), each adding only folders not walked yet. A symlink to a folder already walked is not
 * entered and is reported in `skipped` with its path — a cycle when it points to one of its own
 * ancestors.
 */
export function walkImageTrees(roots: readonly string[]): { files: string[][]; skipped: SkippedFolder[] } {
  const visited = new Map<string, string>(); // real path → the path it was walked as
  const dirs: { path: string; files: string[] }[][] = roots.map(() => []);
  const links: { path: string; root: number }[] = [];
  const skipped: SkippedFolder[] = [];
  const walk = (d: string, root: number): void => {
    const real = realpathSync(d);
    const seen = visited.get(real);
    if (seen !== undefined) {
      const parent = realpathSync(dirname(d));
      const cycle = parent === real || parent.startsWith(real.endsWith(sep) ? real : real + sep);
      skipped.push({ path: d, reason: cycle ? `directory symlink cycle: leads back to '${seen}'` : `directory symlink to '${seen}', already walked` });
      return;
    }
    visited.set(real, d);
    const files: string[] = [];
    const entries = readdirSync(d, { withFileTypes: true }).sort((a, b) => byCodePoint(a.name, b.name));
    for (const e of entries) {
      const p = join(d, e.name);
      if (e.isDirectory()) walk(p, root);
      else if (e.isSymbolicLink() && isDir(p)) links.push({ path: p, root });
      else if (isImage(e.name)) files.push(e.name);
    }
    dirs[root]!.push({ path: d, files });
  };
  roots.forEach((r, i) => walk(r, i));
  for (let k = 0; k < links.length; k++) walk(links[k]!.path, links[k]!.root); // grows while it runs
  const files = dirs.map((list) => {
    list.sort((a, b) => byCodePoint(a.path, b.path));
    return list.flatMap((d) => d.files.sort(byCodePoint).map((f) => join(d.path, f)));
  });
  return { files, skipped };
}

/** {@link walkImageTrees} of one folder: its image files, in torchvision's order. */
export function walkImages(dir: string, skipped?: SkippedFolder[]): string[] {
  const r = walkImageTrees([dir]);
  skipped?.push(...r.skipped);
  return r.files[0]!;
}

function rel(root: string, file: string): string {
  return relative(root, file).split(sep).join('/');
}

function requireDir(root: string, what: string): void {
  if (!isDir(root)) throw new DatasetError(`${what} folder '${root}' does not exist or is not a folder`);
}

/**
 * An ID dataset as torchvision's `ImageFolder`: one sub-folder per class, classes sorted by
 * name (label = position), images found recursively inside each class folder.
 */
export function imageFolder(name: string, root: string): ImageDataset {
  root = resolve(root);
  requireDir(root, `dataset ${name}`);
  const classes = readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory() || (e.isSymbolicLink() && isDir(join(root, e.name))))
    .map((e) => e.name)
    .sort(byCodePoint);
  if (classes.length === 0) throw new DatasetError(`dataset ${name}: '${root}' has no class sub-folders (expected ${root}/<class>/<image>)`);
  const files: string[] = [];
  const labels: number[] = [];
  // one walk over every class: a real folder belongs to the class that holds it, not to a symlink elsewhere
  const walk = walkImageTrees(classes.map((c) => join(root, c)));
  walk.files.forEach((list, i) => {
    for (const f of list) {
      files.push(f);
      labels.push(i);
    }
  });
  if (files.length === 0) throw new DatasetError(`dataset ${name}: no images under '${root}' (extensions: ${IMAGE_EXTENSIONS.join(' ')})`);
  return { name, root, files, relPaths: files.map((f) => rel(root, f)), labels: Int32Array.from(labels), classes, ...(walk.skipped.length ? { skippedFolders: walk.skipped } : {}) };
}

/**
 * An ID dataset from one of the paper's split lists (`{class: [files]}`, `shared/data/*_data.json`):
 * classes sorted by name give the labels; files are `root/<class>/<file>` in list order.
 * Every listed file must exist (all missing ones are reported, up to 10).
 */
export function splitListDataset(name: string, root: string, list: Readonly<Record<string, readonly string[]>>, listFile = 'split list'): ImageDataset {
  root = resolve(root);
  requireDir(root, `dataset ${name}`);
  const classes = Object.keys(list).sort(byCodePoint);
  const files: string[] = [];
  const labels: number[] = [];
  const missing: string[] = [];
  classes.forEach((c, i) => {
    const entries = list[c];
    if (!Array.isArray(entries)) throw new DatasetError(`${listFile}: class "${c}" must map to a list of file names`);
    for (const f of entries) {
      const p = join(root, c, f);
      if (missing.length < 10 && !statSafe(p)) missing.push(p);
      files.push(p);
      labels.push(i);
    }
  });
  if (missing.length) throw new DatasetError(`dataset ${name}: ${listFile} lists files that do not exist, e.g.:\n  ${missing.join('\n  ')}`);
  if (files.length === 0) throw new DatasetError(`dataset ${name}: ${listFile} lists no files`);
  return { name, root, files, relPaths: files.map((f) => rel(root, f)), labels: Int32Array.from(labels), classes };
}

function statSafe(p: string): boolean {
  try {
    statSync(p);
    return true;
  } catch {
    return false;
  }
}

/** An OOD dataset: every image under `root`, recursively, in torchvision's walk order. */
export function imageTree(name: string, root: string): ImageDataset {
  root = resolve(root);
  requireDir(root, `OOD dataset ${name}`);
  const skipped: SkippedFolder[] = [];
  const files = walkImages(root, skipped);
  if (files.length === 0) throw new DatasetError(`OOD dataset ${name}: no images under '${root}' (extensions: ${IMAGE_EXTENSIONS.join(' ')})`);
  return { name, root, files, relPaths: files.map((f) => rel(root, f)), ...(skipped.length ? { skippedFolders: skipped } : {}) };
}

// ---- benchmark presets -----------------------------------------------------------------------


interface BenchmarksJson {
  id_labels: Record<string, string[]>;
  ood_datasets: Record<string, string[]>;
}

let benchmarksCache: BenchmarksJson | null = null;
function benchmarks(): BenchmarksJson {
  benchmarksCache ??= JSON.parse(readFileSync(dataFile('benchmarks.json'), 'utf8')) as BenchmarksJson;
  return benchmarksCache;
}

/** `--benchmark` names and the reference's ID dataset folder each maps to. */
export const BENCHMARKS = { imagenet1k: 'ID_ImageNet1K', voc: 'ID_VOC', coco: 'ID_COCO' } as const;
export type BenchmarkName = keyof typeof BENCHMARKS;

/** The paper's split lists shipped with setar, by ID dataset and split. */
const SPLIT_LISTS: Record<string, Record<string, string>> = {
  ID_ImageNet1K: { val: 'imagenet1k_val_data.json' },
  ID_VOC: { val: 'voc_val_data.json', test: 'voc_test_data.json' },
};

/** A benchmark preset resolved against a data root. */
export interface BenchmarkPreset {
  readonly id: ImageDataset;
  /** Class names in label order (the prompts' `{label}`). */
  readonly labels: readonly string[];
  /** OOD dataset names and folders, in the reference's order. */
  readonly ood: readonly { readonly name: string; readonly root: string }[];
}

/** Resolves a reference ID dataset name (`ID_ImageNet1K`) or preset name (`imagenet1k`). */
export function benchmarkIdName(nameOrPreset: string): string {
  const idName = (BENCHMARKS as Record<string, string>)[nameOrPreset] ?? nameOrPreset;
  const b = benchmarks();
  if (!(idName in b.id_labels)) {
    throw new DatasetError(`unknown benchmark "${nameOrPreset}"; known: ${Object.keys(BENCHMARKS).join(', ')} (or ${Object.keys(b.id_labels).join(', ')})`);
  }
  return idName;
}

/**
 * A built-in benchmark under `dataRoot`, laid out as the reference's README describes:
 * `DATA_ROOT/ID_ImageNet1K/{val,test}/<class>/…`, `DATA_ROOT/OOD_iNaturalist/test/…`. Where the
 * paper fixes the split's images (ImageNet-1K val, VOC val/test), the shipped list selects them.
 */
export function benchmarkPreset(nameOrPreset: string, dataRoot: string, split: string): BenchmarkPreset {
  const idName = benchmarkIdName(nameOrPreset);
  const b = benchmarks();
  const root = join(resolve(dataRoot), idName, split);
  const listFile = SPLIT_LISTS[idName]?.[split];
  let id: ImageDataset;
  if (listFile) {
    const list = JSON.parse(readFileSync(dataFile(listFile), 'utf8')) as Record<string, string[]>;
    id = splitListDataset(idName, root, list, listFile);
  } else {
    id = imageFolder(idName, root);
  }
  const labels = b.id_labels[idName]!;
  if (labels.length !== id.classes!.length) {
    throw new DatasetError(`${idName}: ${id.classes!.length} class folders under '${root}' but the benchmark has ${labels.length} class names`);
  }
  const ood = b.ood_datasets[idName]!.map((name) => ({ name, root: join(resolve(dataRoot), name, 'test') }));
  return { id, labels, ood };
}

/**
 * Class names for an ID dataset: from a labels file (JSON array or one per line) whose count
 * must match the class folders, else the folder names verbatim.
 */
export function resolveLabels(dataset: ImageDataset, labels?: readonly string[], labelsFile = 'labels file'): string[] {
  const classes = dataset.classes;
  if (!classes) throw new DatasetError(`dataset ${dataset.name} has no classes`);
  if (!labels) return [...classes];
  if (labels.length !== classes.length) {
    throw new DatasetError(`${labelsFile} has ${labels.length} labels but dataset ${dataset.name} has ${classes.length} class folders under '${dataset.root}'`);
  }
  return [...labels];
}

/** The ID data: a folder of class sub-folders, or a built-in benchmark under a data root. */
export type IdSource =
  | { readonly kind: 'folder'; readonly name: string; readonly root: string }
  | { readonly kind: 'benchmark'; readonly benchmark: string; readonly dataRoot: string };

/** The ID dataset an {@link IdSource} names (a benchmark's `split`), with its class names. */
export function loadIdDataset(id: IdSource, split: string, labels?: readonly string[]): { dataset: ImageDataset; labels: string[] } {
  if (id.kind === 'folder') {
    const dataset = imageFolder(id.name, id.root);
    return { dataset, labels: resolveLabels(dataset, labels) };
  }
  const preset = benchmarkPreset(id.benchmark, id.dataRoot, split);
  return { dataset: preset.id, labels: resolveLabels(preset.id, labels ?? preset.labels) };
}
