import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';

import { CLIP_CONTEXT_LENGTH, ClipTokenizer, cleanClipText } from '../../../src/models/clip/tokenizer.js';
import { fixture } from '../../helpers/fixtures.js';

interface Case {
  group: string;
  text: string;
  ids: number[];
  note?: string;
  truncated_ids?: number[];
}

const DIR = fixture('clip-tokenizer');
const BOS = 49406;
const EOS = 49407;

let tok: ClipTokenizer;
let cases: Case[];
let vocab: Record<string, number>;
let mergeLines: string[];
const tempDirs: string[] = [];

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'setar-clip-tok-'));
  tempDirs.push(dir);
  return dir;
}

before(async () => {
  tok = await ClipTokenizer.fromDir(DIR);
  cases = JSON.parse(await readFile(join(DIR, 'tokenize-cases.json'), 'utf8')) as Case[];
  vocab = JSON.parse(await readFile(join(DIR, 'vocab.json'), 'utf8')) as Record<string, number>;
  mergeLines = (await readFile(join(DIR, 'merges.txt'), 'utf8')).trim().split('\n').slice(1);
});

after(async () => {
  await Promise.all(tempDirs.map((d) => rm(d, { recursive: true, force: true })));
});

/** Ids of each case that differ from the fixture, described for the failure message. */
function mismatches(t: ClipTokenizer, subset: readonly Case[]): string[] {
  const out: string[] = [];
  for (const c of subset) {
    const got = t.encode(c.text);
    if (JSON.stringify(got) !== JSON.stringify(c.ids)) {
      out.push(`[${c.group}] ${JSON.stringify(c.text)}\n  expected ${JSON.stringify(c.ids)}\n  got      ${JSON.stringify(got)}`);
    }
  }
  return out;
}

describe('ClipTokenizer against tokenize-cases.json', () => {
  it('has the 2,123 cases and the special ids', () => {
    assert.equal(cases.length, 2123);
    assert.equal(tok.bosId, BOS);
    assert.equal(tok.eosId, EOS);
    assert.equal(tok.padId, EOS);
    assert.equal(tok.vocabSize, 49408);
  });

  for (const group of ['imagenet', 'imagenet_period', 'voc', 'voc_period', 'coco', 'edge']) {
    it(`matches every ${group} case exactly`, () => {
      const subset = cases.filter((c) => c.group === group);
      assert.ok(subset.length > 0);
      const bad = mismatches(tok, subset);
      assert.equal(bad.length, 0, `${bad.length}/${subset.length} ${group} cases differ:\n${bad.slice(0, 10).join('\n')}`);
    });
  }

  it('truncates the long case to truncated_ids through encodeBatch(maxLength 77)', () => {
    const long = cases.filter((c) => c.truncated_ids !== undefined);
    assert.equal(long.length, 1);
    const c = long[0]!;
    assert.ok(c.ids.length > CLIP_CONTEXT_LENGTH);
    assert.deepEqual(tok.encode(c.text), c.ids, 'encode() does not truncate');
    const b = tok.encodeBatch([c.text], { maxLength: 77 });
    assert.equal(b.length, 77);
    assert.deepEqual(Array.from(b.inputIds), c.truncated_ids);
    assert.equal(b.lengths[0], 77);
    assert.equal(b.eosPositions[0], 76);
    assert.ok(b.attentionMask.every((m) => m === 1));
    const fixed = tok.encodeBatch([c.text], { maxLength: 77, padding: 'max_length' });
    assert.deepEqual(Array.from(fixed.inputIds), c.truncated_ids);
  });
});

describe('ClipTokenizer text cleanup (ftfy stand-in)', () => {
  // Expected values come from OpenAI's simple_tokenizer pipeline run in Python with the real
  // ftfy 6.3.1, the `regex` module and these vocab/merges files.
  const reference: { text: string; clean: string; ids: number[] }[] = [
    { text: '\u201cA photo\u201d of a dog\u2019s toy', clean: '"a photo" of a dog\'s toy', ids: [49406, 257, 320, 1125, 257, 539, 320, 1929, 568, 5988, 49407] },
    { text: '\ufb01sh and \ufb02ower \u0132sland', clean: 'fish and flower ijsland', ids: [49406, 2759, 537, 4055, 7337, 11294, 49407] },
    { text: '\uff21 \uff50\uff48\uff4f\uff54\uff4f\u3000of a \uff43\uff41\uff54', clean: 'a photo of a cat', ids: [49406, 320, 1125, 539, 320, 2368, 49407] },
    { text: 'a \x93quoted\x94 dog\x85', clean: 'a "quoted" dog\u2026', ids: [49406, 320, 257, 27706, 257, 1929, 959, 49407] },
    { text: 'a\x00 photo\x07 of\x7f a\ufeff dog\u206a', clean: 'a photo of a dog', ids: [49406, 320, 1125, 539, 320, 1929, 49407] },
    { text: '\x1b[31ma red\x1b[0m dog', clean: 'a red dog', ids: [49406, 320, 736, 1929, 49407] },
    { text: 'cafe\u0301 cre\u0300me', clean: 'caf\u00e9 cr\u00e8me', ids: [49406, 15304, 1075, 12138, 614, 49407] },
    {
      text: 'fish &amp;amp;amp; chips &EACUTE;T&EACUTE; &#1;x &#x80; &#0;',
      clean: 'fish & chips \u00e9t\u00e9 x \u20ac \ufffd',
      ids: [49406, 2759, 261, 8855, 3459, 39694, 343, 6309, 39802, 49407],
    },
    {
      // ftfy stops unescaping from the first line holding '<'; html.unescape still runs twice.
      text: '&lt;b&gt; bold\n&amp;lt;i&amp;gt; <not escaped> &amp;amp;',
      clean: '<b> bold <i> <not escaped> &',
      ids: [49406, 283, 321, 285, 8911, 283, 328, 285, 283, 783, 18707, 285, 261, 49407],
    },
    { text: 'a \u0345 b\u0345c', clean: 'a \u0345 b\u0345c', ids: [49406, 320, 321, 322, 49407] },
    {
      text: "'\u017f 's \u2019s <|\u017ftartoftext|>",
      clean: "'\u017f 's 's <|\u017ftartoftext|>",
      ids: [49406, 6, 129, 379, 568, 568, 27, 91, 129, 123, 2002, 6659, 18169, 91, 285, 49407],
    },
    { text: 'line one\r\nline two\rthree\u2028four\u2029five', clean: 'line one line two three four five', ids: [49406, 1148, 637, 1148, 1237, 2097, 2721, 3127, 49407] },
    { text: '<|startoftext|>a <|ENDOFTEXT|> b', clean: '<|startoftext|>a <|endoftext|> b', ids: [49406, 49406, 320, 49407, 321, 49407] },
    {
      text: '\u1e9e stra\u00dfe \u0130stanbul \u039f\u0394\u039f\u03a3',
      clean: '\u00df stra\u00dfe i\u0307stanbul \u03bf\u03b4\u03bf\u03c2',
      ids: [49406, 127, 509, 1894, 127, 253, 324, 328, 16384, 11231, 138, 123, 138, 112, 138, 123, 139, 480, 49407],
    },
  ];

  for (const r of reference) {
    it(`matches the Python pipeline on ${JSON.stringify(r.text)}`, () => {
      assert.equal(cleanClipText(r.text), r.clean);
      assert.deepEqual(tok.encode(r.text), r.ids);
    });
  }

  it('leaves plain ASCII prompts alone apart from case and spacing', () => {
    assert.equal(cleanClipText('  A Photo\tof a\n\nDOG.  '), 'a photo of a dog.');
    assert.equal(cleanClipText(''), '');
    assert.equal(cleanClipText(' \t\n '), '');
  });
});

describe('ClipTokenizer.encodeBatch', () => {
  const texts = ['a photo of a cat', 'a photo of a goldfish.', ''];

  it("pads to the longest row with 'longest' (default), with eos as pad", () => {
    const rows = texts.map((t) => tok.encode(t));
    const b = tok.encodeBatch(texts);
    assert.equal(b.batch, 3);
    assert.equal(b.length, Math.max(...rows.map((r) => r.length)));
    assert.equal(b.inputIds.length, b.batch * b.length);
    assert.equal(b.attentionMask.length, b.batch * b.length);
    assert.ok(b.inputIds instanceof Int32Array);
    assert.ok(b.attentionMask instanceof Uint8Array);
    assert.deepEqual(Array.from(b.lengths), rows.map((r) => r.length));
    rows.forEach((row, i) => {
      const ids = Array.from(b.inputIds.subarray(i * b.length, (i + 1) * b.length));
      const mask = Array.from(b.attentionMask.subarray(i * b.length, (i + 1) * b.length));
      assert.deepEqual(ids, [...row, ...Array<number>(b.length - row.length).fill(EOS)]);
      assert.deepEqual(mask, [...Array<number>(row.length).fill(1), ...Array<number>(b.length - row.length).fill(0)]);
    });
    assert.deepEqual(Array.from(b.inputIds.subarray(2 * b.length, 2 * b.length + 2)), [BOS, EOS]);
  });

  it("pads every row to maxLength with 'max_length', honouring padId", () => {
    const b = tok.encodeBatch(texts, { padding: 'max_length', padId: 0 });
    assert.equal(b.length, 77);
    assert.equal(b.inputIds.length, 3 * 77);
    for (let i = 0; i < 3; i++) {
      const len = b.lengths[i]!;
      const row = b.inputIds.subarray(i * 77, (i + 1) * 77);
      const mask = b.attentionMask.subarray(i * 77, (i + 1) * 77);
      assert.ok(row.subarray(len).every((v) => v === 0));
      assert.equal(mask.reduce((s, v) => s + v, 0), len);
      assert.ok(mask.subarray(0, len).every((v) => v === 1));
    }
    const short = tok.encodeBatch(texts, { padding: 'max_length', maxLength: 20 });
    assert.equal(short.length, 20);
  });

  it('reports the first end token as the pooling position', () => {
    const b = tok.encodeBatch(['a photo of a cat', 'hello <|endoftext|> world', '']);
    assert.deepEqual(Array.from(b.lengths), [7, 5, 2]);
    assert.deepEqual(Array.from(b.eosPositions), [6, 2, 1]);
    for (let i = 0; i < b.batch; i++) assert.equal(b.inputIds[i * b.length + b.eosPositions[i]!], EOS);
  });

  it('truncates long rows keeping the end token', () => {
    const b = tok.encodeBatch(['a photo of a great white shark', 'a dog'], { maxLength: 5 });
    assert.equal(b.length, 5);
    assert.deepEqual(Array.from(b.inputIds.subarray(0, 5)), [BOS, 320, 1125, 539, EOS]);
    assert.deepEqual(Array.from(b.lengths), [5, 4]);
    assert.deepEqual(Array.from(b.eosPositions), [4, 3]);
  });

  it('handles an empty batch', () => {
    const b = tok.encodeBatch([]);
    assert.equal(b.batch, 0);
    assert.equal(b.length, 0);
    assert.equal(b.inputIds.length, 0);
    assert.equal(b.attentionMask.length, 0);
    assert.equal(b.lengths.length, 0);
    assert.equal(b.eosPositions.length, 0);
  });

  it('rejects non-string entries naming the index, and bad options', () => {
    assert.throws(() => tok.encodeBatch(['ok', 42 as unknown as string]), (err: unknown) => {
      assert.ok(err instanceof TypeError);
      assert.match(err.message, /texts\[1\]/);
      assert.match(err.message, /number/);
      return true;
    });
    assert.throws(() => tok.encodeBatch([null as unknown as string]), /texts\[0\]/);
    assert.throws(() => tok.encode(undefined as unknown as string), TypeError);
    assert.throws(() => tok.encodeBatch(['x'], { maxLength: 1 }), RangeError);
    assert.throws(() => tok.encodeBatch(['x'], { padding: 'max' as 'longest' }), TypeError);
  });
});

describe('ClipTokenizer loading', () => {
  const sample = (): Case[] => cases.filter((c, i) => c.group === 'edge' || i % 25 === 0);

  for (const style of ['strings', 'pairs'] as const) {
    it(`loads tokenizer.json with merges as ${style} and gives identical ids`, async () => {
      const dir = await tempDir();
      const merges = style === 'strings' ? mergeLines : mergeLines.map((m) => m.split(' '));
      const json = {
        version: '1.0',
        added_tokens: [
          { id: BOS, content: '<|startoftext|>', special: true },
          { id: EOS, content: '<|endoftext|>', special: true },
        ],
        model: { type: 'BPE', end_of_word_suffix: '</w>', vocab, merges },
      };
      await writeFile(join(dir, 'tokenizer.json'), JSON.stringify(json));
      const fast = await ClipTokenizer.fromDir(dir);
      assert.equal(fast.bosId, BOS);
      assert.equal(fast.eosId, EOS);
      const bad = mismatches(fast, sample());
      assert.equal(bad.length, 0, bad.slice(0, 5).join('\n'));
    });
  }

  it('reads merges.txt with CRLF line endings', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'vocab.json'), JSON.stringify(vocab));
    await writeFile(join(dir, 'merges.txt'), ['#version: 0.2', ...mergeLines, ''].join('\r\n'));
    const t = await ClipTokenizer.fromDir(dir);
    const bad = mismatches(t, sample());
    assert.equal(bad.length, 0, bad.slice(0, 5).join('\n'));
  });

  it('prefers vocab.json + merges.txt over tokenizer.json', async () => {
    const dir = await tempDir();
    await writeFile(join(dir, 'vocab.json'), JSON.stringify(vocab));
    await writeFile(join(dir, 'merges.txt'), ['#version: 0.2', ...mergeLines].join('\n'));
    await writeFile(join(dir, 'tokenizer.json'), '{ not json');
    const t = await ClipTokenizer.fromDir(dir);
    assert.deepEqual(t.encode('a photo of a dog'), [BOS, 320, 1125, 539, 320, 1929, EOS]);
  });

  it('names the directory and the files looked for when they are missing', async () => {
    const dir = await tempDir();
    await assert.rejects(ClipTokenizer.fromDir(dir), (err: unknown) => {
      assert.ok(err instanceof Error);
      assert.ok(err.message.includes(dir), err.message);
      for (const f of ['vocab.json', 'merges.txt', 'tokenizer.json']) assert.ok(err.message.includes(f), err.message);
      return true;
    });
    await writeFile(join(dir, 'vocab.json'), JSON.stringify(vocab));
    await assert.rejects(ClipTokenizer.fromDir(dir), /found vocab\.json only/);
    const missing = join(dir, 'does-not-exist');
    await assert.rejects(ClipTokenizer.fromDir(missing), (err: unknown) => {
      assert.ok(err instanceof Error && err.message.includes(missing));
      return true;
    });
  });

  it('runs BPE on a toy vocab: lowest rank first, non-overlapping, left to right', () => {
    const toy: Record<string, number> = {};
    const add = (s: string): void => {
      toy[s] = Object.keys(toy).length;
    };
    ['a', 'b', 'a</w>', 'b</w>', 'aa', 'aa</w>', 'ab</w>', 'aaa</w>', '<|startoftext|>', '<|endoftext|>'].forEach(add);
    const t = ClipTokenizer.fromVocabAndMerges(toy, [['a', 'a'], ['a', 'a</w>'], ['a', 'b</w>'], ['aa', 'a</w>']]);
    const id = (s: string): number => toy[s]!;
    // "aaaa" is [a, a, a, a</w>]. Rank 0 (a, a) merges left to right without overlap, giving
    // [aa, a, a</w>], not [a, aa, a</w>]; then rank 1 (a, a</w>) gives [aa, aa</w>].
    assert.deepEqual(t.encode('aaaa'), [id('<|startoftext|>'), id('aa'), id('aa</w>'), id('<|endoftext|>')]);
    // "aaa" → [aa, a</w>] → rank 3 (aa, a</w>) → [aaa</w>].
    assert.deepEqual(t.encode('aaa').slice(1, -1), [id('aaa</w>')]);
    assert.deepEqual(t.encode('ab').slice(1, -1), [id('ab</w>')]);
    // A symbol the vocab lacks falls back to the unk token (<|endoftext|>), as in HF.
    assert.deepEqual(t.encode('ba').slice(1, -1), [id('b'), id('a</w>')]);
    assert.deepEqual(t.encode('c').slice(1, -1), [id('<|endoftext|>')]);
    assert.throws(() => ClipTokenizer.fromVocabAndMerges({ a: 0 }, []), /<\|startoftext\|>/);
    assert.throws(() => ClipTokenizer.fromVocabAndMerges(toy, ['a b c']), /merge 0/);
  });
});
