import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { datasetOfScoreFile, metricsFromScoreFiles, readScoreFile } from '../../src/eval/score-files.js';
import { oodMetrics } from '../../src/ood/metrics.js';
import { REPO_ROOT } from '../helpers/fixtures.js';

describe('score files and setar metrics', () => {
  let dir: string;
  const id = [-0.9, -0.8, -0.85, -0.3, -0.7, -0.75];
  const oodA = [-0.2, -0.4, -0.8, -0.1];
  const oodB = [-0.5, -0.6, -0.9, -0.35, -0.2];
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'setar-scores-'));
    const write = (name: string, mcm: number[], extra = true) =>
      writeFileSync(join(dir, name), ['image,mcm_score' + (extra ? ',energy_score,note' : ''), ...mcm.map((v, i) => `"dir, with comma/${i}.jpg",${v}` + (extra ? `,${v * 3},x` : ''))].join('\n') + '\n');
    write('scores_ID_X_test.csv', id);
    write('scores_OOD_A_test.csv', oodA);
    write('scores_OOD_B_test.csv', oodB, false);
    writeFileSync(join(dir, 'bad.csv'), 'image,mcm_score\na.jpg,0.1\nb.jpg,nan\n');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('reads scorer columns (ignoring others, quoted paths included) and names datasets from file names', () => {
    const f = readScoreFile(join(dir, 'scores_ID_X_test.csv'));
    assert.equal(f.dataset, 'ID_X');
    assert.deepEqual(Object.keys(f.columns).sort(), ['energy_score', 'mcm_score']);
    assert.deepEqual([...f.columns.mcm_score!], id);
    assert.equal(datasetOfScoreFile('/a/my_scores.csv'), 'my_scores');
    assert.equal(datasetOfScoreFile('scores_OOD_iNaturalist_test.csv'), 'OOD_iNaturalist');
  });

  it('recomputes the table: rows per OOD file in order, Avg, cutoffs; only scorers present in all files', () => {
    const tables = metricsFromScoreFiles(readScoreFile(join(dir, 'scores_ID_X_test.csv')), ['A', 'B'].map((n) => readScoreFile(join(dir, `scores_OOD_${n}_test.csv`))));
    assert.equal(tables.length, 1);
    const t = tables[0]!;
    assert.equal(t.scorer, 'mcm_score');
    const a = oodMetrics(id, oodA);
    const b = oodMetrics(id, oodB);
    assert.deepEqual(t.rows, [
      { dataset: 'OOD_A', FPR95: a.FPR, AUROC: a.AUROC, AUPR: a.AUPR, cutoff: a.cutoff },
      { dataset: 'OOD_B', FPR95: b.FPR, AUROC: b.AUROC, AUPR: b.AUPR, cutoff: b.cutoff },
      { dataset: 'Avg', FPR95: (a.FPR + b.FPR) / 2, AUROC: (a.AUROC + b.AUROC) / 2, AUPR: (a.AUPR + b.AUPR) / 2 },
    ]);
  });

  it('errors name the file, row and column', () => {
    assert.throws(() => readScoreFile(join(dir, 'bad.csv')), /score file '.*bad\.csv': row 3, column "mcm_score" is "nan", expected a finite number/);
    assert.throws(() => metricsFromScoreFiles(readScoreFile(join(dir, 'scores_ID_X_test.csv')), [readScoreFile(join(dir, 'scores_OOD_B_test.csv'))], { scorer: 'energy_score' }), /score file\(s\) '.*scores_OOD_B_test\.csv' have no "energy_score" column/);
    assert.throws(() => readScoreFile(join(dir, 'none.csv')), /cannot read score file '.*none\.csv': no such file/);
  });

  it('setar metrics --json prints exactly one JSON object for --scorer, an array otherwise', () => {
    const run = (...args: string[]) => spawnSync(process.execPath, [join(REPO_ROOT, 'bin', 'setar.js'), 'metrics', ...args], { encoding: 'utf8' });
    const one = run('--id', join(dir, 'scores_ID_X_test.csv'), '--ood', join(dir, 'scores_OOD_A_test.csv'), '--ood', join(dir, 'scores_OOD_B_test.csv'), '--scorer', 'mcm_score', '--json');
    assert.equal(one.status, 0, one.stderr);
    const obj = JSON.parse(one.stdout) as { scorer: string; recall_level: number; rows: { dataset: string; cutoff?: number }[] };
    assert.equal(obj.scorer, 'mcm_score');
    assert.equal(obj.recall_level, 0.95);
    assert.deepEqual(obj.rows.map((r) => r.dataset), ['OOD_A', 'OOD_B', 'Avg']);
    assert.equal(obj.rows[2]!.cutoff, undefined);
    const many = run('--id', join(dir, 'scores_ID_X_test.csv'), '--ood', join(dir, 'scores_OOD_A_test.csv'), '--json', '--recall', '0.9');
    const arr = JSON.parse(many.stdout) as { scorer: string; recall_level: number }[];
    assert.deepEqual(arr.map((t) => t.scorer), ['mcm_score', 'energy_score']);
    assert.equal(arr[0]!.recall_level, 0.9);
    const table = run('--id', join(dir, 'scores_ID_X_test.csv'), '--ood', join(dir, 'scores_OOD_A_test.csv'), '--scorer', 'mcm_score');
    assert.match(table.stdout, /^mcm_score \(recall 0\.95\)\nOOD dataset/);
    assert.match(table.stdout, /\nAvg /);
    const bad = run('--id', join(dir, 'scores_ID_X_test.csv'), '--ood', join(dir, 'scores_OOD_B_test.csv'), '--scorer', 'energy_score');
    assert.equal(bad.status, 1);
    assert.match(bad.stderr, /setar: error: score file\(s\) '.*scores_OOD_B_test\.csv' have no "energy_score" column/);
  });
});
