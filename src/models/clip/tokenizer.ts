/**
 * CLIP's byte-level BPE tokenizer, reproducing OpenAI's `SimpleTokenizer` (the tokenizer CLIP was
 * trained with) id for id, loaded from Hugging Face files.
 *
 * Pipeline (OpenAI `simple_tokenizer.py`): ftfy-style fixes → `html.unescape` twice → strip →
 * collapse whitespace → strip → lower-case → pre-tokenize with CLIP's regex → UTF-8 bytes mapped
 * through `bytes_to_unicode` → BPE by merge rank → vocab ids, wrapped in `<|startoftext|>` …
 * `<|endoftext|>`.
 *
 * @module
 */
import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { decodeHTML, decodeHTMLStrict } from 'entities';

/** CLIP's text context length (positions in the text transformer). */
export const CLIP_CONTEXT_LENGTH = 77;

/** Start token; the pre-tokenizer maps this exact lower-case text to its id. */
export const START_OF_TEXT = '<|startoftext|>';
/** End token; also HF's unk and pad token for CLIP. */
export const END_OF_TEXT = '<|endoftext|>';

/**
 * A batch of tokenized texts, row-major `[batch, length]`.
 *
 * - `inputIds[b * length + t]`: token id (widen to a BigInt64Array for a graph that takes int64).
 * - `attentionMask[b * length + t]`: 1 for real tokens (start, text, end), 0 for padding.
 * - `lengths[b]`: real tokens in row `b` after truncation (start and end tokens included).
 * - `eosPositions[b]`: index of the first end-of-text id in row `b`. CLIP's text model pools the
 *   hidden state there (OpenAI: `argmax` of the ids; HF: first `eos_token_id`), so this is the
 *   pooling index. It is `lengths[b] - 1` unless the text itself contained `<|endoftext|>`.
 */
export interface TokenizedBatch {
  inputIds: Int32Array;
  attentionMask: Uint8Array;
  batch: number;
  length: number;
  lengths: Int32Array;
  eosPositions: Int32Array;
}

/** Options of {@link ClipTokenizer.encodeBatch}. */
export interface EncodeBatchOptions {
  /** Rows longer than this are truncated to `maxLength - 1` ids plus the end token. Default 77. */
  maxLength?: number;
  /**
   * `'longest'` (default): pad to the longest row after truncation, as HF's `padding=True` (what
   * SeTAR uses). `'max_length'`: pad every row to `maxLength`, as OpenAI's `clip.tokenize`.
   */
  padding?: 'longest' | 'max_length';
  /**
   * Id written into padding positions. Default: the end-of-text id (HF's CLIP pad token). OpenAI
   * pads with 0; either is harmless because the text model pools at the first end token.
   */
  padId?: number;
}

// ---------------------------------------------------------------------------------------------
// Text cleanup
// ---------------------------------------------------------------------------------------------

/**
 * Windows-1252 characters for bytes 0x80–0x9F. Both ftfy's `fix_c1_controls` (via its
 * "sloppy-windows-1252" codec) and Python's `html.unescape` for `&#x80;`…`&#x9f;` use this table;
 * the five bytes 1252 leaves undefined (81, 8D, 8F, 90, 9D) stay as the C1 control itself.
 */
const CP1252_C1 =
  '\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f' +
  '\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178';

/** ftfy `chardata.LIGATURES`: Latin ligatures and legacy digraphs, taken apart. */
const LIGATURES: Readonly<Record<string, string>> = {
  '\u0132': 'IJ', '\u0133': 'ij', '\u0149': '\u02bcn',
  '\u01f1': 'DZ', '\u01f2': 'Dz', '\u01f3': 'dz',
  '\u01c4': 'D\u017d', '\u01c5': 'D\u017e', '\u01c6': 'd\u017e',
  '\u01c7': 'LJ', '\u01c8': 'Lj', '\u01c9': 'lj',
  '\u01ca': 'NJ', '\u01cb': 'Nj', '\u01cc': 'nj',
  '\ufb00': 'ff', '\ufb01': 'fi', '\ufb02': 'fl', '\ufb03': 'ffi', '\ufb04': 'ffl',
  '\ufb05': '\u017ft', '\ufb06': 'st',
};

const C1_RE = /[\x80-\x9f]/g;
const LIGATURE_RE = /[\u0132\u0133\u0149\u01c4-\u01cc\u01f1-\u01f3\ufb00-\ufb06]/g;
const WIDTH_RE = /[\u3000\uff01-\uffef]/g;
const SINGLE_QUOTE_RE = /[\u02bc\u2018-\u201b]/g;
const DOUBLE_QUOTE_RE = /[\u201c-\u201f]/g;
const LINE_BREAK_RE = /\r\n?|[\u2028\u2029\x85]/g;
// In `u` mode a surrogate class only matches surrogates that are not half of a valid pair.
const LONE_SURROGATE_RE = /[\ud800-\udfff]/gu;
// Python's `\d` in a str pattern is any Unicode decimal digit, hence \p{Nd}.
const ANSI_RE = /\x1b\[(?:\p{Nd}|;)*[a-zA-Z]/gu;
const CONTROL_RE = /[\x00-\x08\x0b\x0e-\x1f\x7f\u206a-\u206f\ufeff\ufff9-\ufffc]/g;
const FTFY_ENTITY_RE = /&#?[0-9A-Za-z]{1,24};/g;
// Python's html._charref. `u` so that {1,32} counts code points, as Python does.
const PY_CHARREF_RE = /&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?)/gu;

/**
 * Python's `str.isspace()` set (what `str.strip()` removes), and the `regex` module's `\s` set
 * (what `whitespace_clean` collapses and what the pre-token regex excludes). They differ only in
 * U+001C–U+001F, which ftfy deletes before either is used; both are spelled out so that JS's own
 * `\s` (which adds U+FEFF and lacks U+0085) never decides anything.
 */
const PY_ISSPACE = '\\t\\n\\v\\f\\r\\x1c-\\x20\\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const REGEX_SPACE = '\\t\\n\\v\\f\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const STRIP_RE = new RegExp(`^[${PY_ISSPACE}]+|[${PY_ISSPACE}]+$`, 'g');
const SPACE_RUN_RE = new RegExp(`[${REGEX_SPACE}]+`, 'g');

/** Texts made only of these need no ftfy fix and no HTML unescape (no `&`, no controls). */
const PLAIN_ASCII_RE = /^[\t\n\x20-\x25\x27-\x7e]*$/;

/** Python `html.unescape`'s rule for a numeric character reference. */
function pyNumericCharref(num: bigint): string {
  if (num === 0n) return '\ufffd';
  if (num === 0x0dn) return '\r';
  if (num >= 0x80n && num <= 0x9fn) return CP1252_C1[Number(num) - 0x80]!;
  if ((num >= 0xd800n && num <= 0xdfffn) || num > 0x10ffffn) return '\ufffd';
  const cp = Number(num);
  if (
    (cp >= 0x01 && cp <= 0x08) ||
    cp === 0x0b ||
    (cp >= 0x0e && cp <= 0x1f) ||
    cp === 0x7f ||
    (cp >= 0xfdd0 && cp <= 0xfdef) ||
    (cp & 0xfffe) === 0xfffe
  ) {
    return '';
  }
  return String.fromCodePoint(cp);
}

/**
 * Python's `html.unescape`. Named references go to `entities`' `decodeHTML` (HTML5 table, longest
 * match, legacy names without `;`), which resolves them as Python's prefix search does. Numeric
 * ones are done here because `entities` keeps C0 controls and noncharacters (`&#1;` → U+0001)
 * where Python drops them.
 */
function pyHtmlUnescape(s: string): string {
  if (!s.includes('&')) return s;
  return s.replace(PY_CHARREF_RE, (match: string, ref: string) => {
    if (ref[0] !== '#') return decodeHTML(match);
    const hex = ref[1] === 'x' || ref[1] === 'X';
    const digits = ref.slice(hex ? 2 : 1).replace(/;$/, '');
    return pyNumericCharref(BigInt(hex ? '0x' + digits : digits));
  });
}

/**
 * ftfy's `unescape_html`: only `;`-terminated references, plus upper-cased names of lower-case
 * entities (`&EACUTE;` → `É`) when Python's `html.unescape` would leave that spelling alone.
 */
function ftfyUnescapeHtml(text: string): string {
  if (!text.includes('&')) return text;
  return text.replace(FTFY_ENTITY_RE, (ref: string) => {
    if (ref[1] === '#') {
      const out = pyHtmlUnescape(ref);
      return out.includes(';') ? ref : out;
    }
    const exact = decodeHTMLStrict(ref);
    if (exact !== ref) return exact;
    const name = ref.slice(1, -1);
    if (name !== name.toUpperCase()) return ref;
    const lower = `&${name.toLowerCase()};`;
    const char = decodeHTMLStrict(lower);
    if (char === lower || pyHtmlUnescape(ref) !== ref) return ref;
    return char.toUpperCase();
  });
}

/** One ftfy `fix_and_explain` segment: the fixer list, repeated until nothing changes. */
function ftfySegment(segment: string, unescapeHtml: boolean): string {
  let text = segment;
  // ftfy loops until a fixed point; real text settles in two rounds. The cap only guards
  // against a cycle, which ftfy itself would never leave.
  for (let round = 0; round < 64; round++) {
    const before = text;
    if (unescapeHtml) text = ftfyUnescapeHtml(text);
    // (fix_encoding: heuristic mojibake repair, not reproduced; see cleanClipText.)
    text = text.replace(C1_RE, (c) => CP1252_C1[c.charCodeAt(0) - 0x80]!);
    text = text.replace(LIGATURE_RE, (c) => LIGATURES[c]!);
    text = text.replace(WIDTH_RE, (c) => (c === '\u3000' ? ' ' : c.normalize('NFKC')));
    text = text.replace(DOUBLE_QUOTE_RE, '"').replace(SINGLE_QUOTE_RE, "'");
    text = text.replace(LINE_BREAK_RE, '\n');
    text = text.replace(LONE_SURROGATE_RE, '\ufffd');
    text = text.replace(ANSI_RE, '');
    text = text.replace(CONTROL_RE, '');
    text = text.normalize('NFC');
    if (text === before) break;
  }
  return text;
}

/**
 * ftfy's `fix_text` with default settings, less `fix_encoding`. It works line by line, and once a
 * line contains `<` it stops unescaping HTML for that line and every later one ("auto" mode).
 */
function ftfyFixText(text: string): string {
  let out = '';
  let unescapeHtml = true;
  let pos = 0;
  while (pos < text.length) {
    let end = text.indexOf('\n', pos) + 1;
    if (end === 0) end = text.length;
    const segment = text.slice(pos, end);
    if (unescapeHtml && segment.includes('<')) unescapeHtml = false;
    out += ftfySegment(segment, unescapeHtml);
    pos = end;
  }
  return out;
}

/**
 * The text CLIP's BPE sees: OpenAI's `whitespace_clean(basic_clean(text)).lower()`.
 *
 * ftfy does not exist in JS; this reproduces the deterministic part of `ftfy.fix_text` (ftfy 6.3,
 * default config), in ftfy's order, repeated to a fixed point per line as ftfy does:
 * - `unescape_html`: `;`-terminated HTML references and ALL-CAPS entity names, skipped from the
 *   first line containing `<` onwards;
 * - `fix_c1_controls`: U+0080–U+009F read as Windows-1252 (`\x93` → `“` → `"`), not deleted;
 * - `fix_latin_ligatures` (`ﬁ` → `fi`, `Ĳ` → `IJ`, …), `fix_character_width` (full/half-width
 *   forms via NFKC, U+3000 → space), `uncurl_quotes` (`ʼ ‘ ’ ‚ ‛` → `'`, `“ ” „ ‟` → `"`),
 *   `fix_line_breaks`, `fix_surrogates` (lone surrogates → U+FFFD), `remove_terminal_escapes`
 *   (ANSI `ESC[…m`), `remove_control_chars` (C0 except tab, LF, FF, CR; DEL; U+206A–206F; BOM;
 *   U+FFF9–FFFC), then NFC.
 *
 * Not covered: `fix_encoding` and its helpers (`restore_byte_a0`, `replace_lossy_sequences`,
 * `decode_inconsistent_utf8`), the heuristic mojibake repair (`Ã©` → `é`). ftfy leaves ASCII and
 * text that doesn't look like mojibake alone, so ordinary prompts are unaffected; mojibake input
 * is tokenized as written. The 1,000,000-code-point segment limit is not applied (a line that long
 * is not a prompt). Lower-casing and NFC use the JS engine's Unicode tables, so letters given case
 * mappings after the Unicode version of the reference Python can differ.
 *
 * Then Python's `html.unescape` twice, strip, collapse every `regex`-module `\s` run to one space,
 * strip, lower-case.
 *
 * @example
 * cleanClipText('  “Fish”\t&amp;amp; ﬁsh  '); // → '"fish" & fish'
 */
export function cleanClipText(text: string): string {
  let t = text;
  if (!PLAIN_ASCII_RE.test(t)) {
    t = ftfyFixText(t);
    t = pyHtmlUnescape(pyHtmlUnescape(t));
  }
  t = t.replace(STRIP_RE, '');
  t = t.replace(SPACE_RUN_RE, ' ').replace(STRIP_RE, '');
  return t.toLowerCase();
}

/**
 * OpenAI's pre-token regex, compiled (with `regex.IGNORECASE`) by the Python `regex` module. JS
 * gets no `i` flag because its case-insensitive Unicode mode differs: the text is lower-case by
 * now, so the only case variant the Python pattern still meets is `ſ` (folds to `s`), written out;
 * and Python's case-closed classes match U+0345 (combining ypogegrammeni, folds to `ι`) with
 * neither `[\p{L}]+` nor `[^\s\p{L}\p{N}]+`, so it is dropped, hence excluded here too.
 */
const PRETOKEN_RE = new RegExp(
  `<\\|[sſ]tartoftext\\|>|<\\|endoftext\\|>|'[sſ]|'t|'re|'ve|'m|'ll|'d|\\p{L}+|\\p{N}|[^${REGEX_SPACE}\\p{L}\\p{N}\\u0345]+`,
  'gu',
);

/** Pre-tokens of cleaned text (what OpenAI's `re.findall(self.pat, text)` returns). */
function preTokenize(cleaned: string): string[] {
  return cleaned.match(PRETOKEN_RE) ?? [];
}

/**
 * OpenAI's `bytes_to_unicode`: printable Latin-1 bytes map to themselves, the other 68 to
 * U+0100 onwards in byte order, so that every byte is a visible, non-space character.
 */
function bytesToUnicode(): string[] {
  const keep = new Set<number>();
  for (let b = 0x21; b <= 0x7e; b++) keep.add(b);
  for (let b = 0xa1; b <= 0xac; b++) keep.add(b);
  for (let b = 0xae; b <= 0xff; b++) keep.add(b);
  const table: string[] = [];
  let n = 0;
  for (let b = 0; b < 256; b++) table.push(String.fromCharCode(keep.has(b) ? b : 256 + n++));
  return table;
}

const BYTE_CHARS = bytesToUnicode();
const END_OF_WORD = '</w>';
/** Pair keys are `left * PAIR_SHIFT + right` over symbol numbers: one Map lookup per pair. */
const PAIR_SHIFT = 0x400000;
const WORD_CACHE_LIMIT = 100_000;
const utf8 = new TextEncoder();

type Merge = string | readonly [string, string];

function describe(value: unknown): string {
  return value === null ? 'null' : Array.isArray(value) ? 'array' : typeof value;
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile();
  } catch {
    return false;
  }
}

/**
 * CLIP tokenizer, exact to OpenAI's `SimpleTokenizer` (and to HF's `CLIPTokenizer` with ftfy).
 *
 * @example
 * const tok = await ClipTokenizer.fromDir('models/clip-vit-b16');
 * tok.encode('a photo of a dog');         // → [49406, 320, 1125, 539, 320, 1929, 49407]
 * const b = tok.encodeBatch(['a photo of a cat', 'a photo of a goldfish.']);
 * // b.inputIds: Int32Array [2 × b.length], padded with 49407; b.eosPositions → pooling indices
 */
export class ClipTokenizer {
  /** `<|startoftext|>` id (49406 for CLIP). */
  readonly bosId: number;
  /** `<|endoftext|>` id (49407 for CLIP); also HF's unk and pad token. */
  readonly eosId: number;
  /** Default padding id: the end-of-text id, as HF pads CLIP. */
  readonly padId: number;
  /** Number of entries in the vocab. */
  readonly vocabSize: number;

  /** Symbol (a string of byte characters, maybe ending in `</w>`) → symbol number. */
  private readonly symbols = new Map<string, number>();
  /** Symbol number → vocab id, or the unk (eos) id for a symbol the vocab lacks, as HF does. */
  private symbolIds: Int32Array = new Int32Array(0);
  /** Pair key → merge rank. */
  private readonly ranks = new Map<number, number>();
  /** Merge rank → left, right and merged symbol numbers. */
  private readonly mergeLeft: number[] = [];
  private readonly mergeRight: number[] = [];
  private readonly mergeResult: number[] = [];
  /** Symbol numbers of each byte, and of each byte ending a word (`</w>`). */
  private readonly byteSymbols = new Int32Array(256);
  private readonly finalByteSymbols = new Int32Array(256);
  /** Pre-token → ids. Prompts repeat words, so after warm-up BPE rarely runs. */
  private readonly wordCache = new Map<string, readonly number[]>();

  private constructor(vocab: Readonly<Record<string, number>>, merges: readonly Merge[]) {
    if (typeof vocab !== 'object' || vocab === null || Array.isArray(vocab)) {
      throw new TypeError(`CLIP vocab must be an object of token → id, got ${describe(vocab)}`);
    }
    if (!Array.isArray(merges)) {
      throw new TypeError(`CLIP merges must be an array, got ${describe(merges)}`);
    }
    const vocabMap = new Map<string, number>();
    for (const [token, id] of Object.entries(vocab)) {
      if (!Number.isInteger(id) || id < 0) {
        throw new TypeError(`CLIP vocab id of ${JSON.stringify(token)} is not a non-negative integer: ${String(id)}`);
      }
      vocabMap.set(token, id);
    }
    const bos = vocabMap.get(START_OF_TEXT);
    const eos = vocabMap.get(END_OF_TEXT);
    if (bos === undefined || eos === undefined) {
      throw new Error(`CLIP vocab lacks ${bos === undefined ? START_OF_TEXT : END_OF_TEXT}`);
    }
    this.bosId = bos;
    this.eosId = eos;
    this.padId = eos;
    this.vocabSize = vocabMap.size;

    for (let b = 0; b < 256; b++) {
      this.byteSymbols[b] = this.intern(BYTE_CHARS[b]!);
      this.finalByteSymbols[b] = this.intern(BYTE_CHARS[b]! + END_OF_WORD);
    }
    merges.forEach((merge, index) => {
      let left: unknown;
      let right: unknown;
      if (typeof merge === 'string') {
        const parts = merge.split(' ');
        if (parts.length !== 2) {
          throw new Error(`CLIP merge ${index} is not "left right": ${JSON.stringify(merge)}`);
        }
        [left, right] = parts;
      } else if (Array.isArray(merge) && merge.length === 2) {
        [left, right] = merge;
      }
      if (typeof left !== 'string' || typeof right !== 'string' || left === '' || right === '') {
        throw new Error(`CLIP merge ${index} is not a pair of symbols: ${JSON.stringify(merge)}`);
      }
      const rank = this.mergeLeft.length;
      const l = this.intern(left);
      const r = this.intern(right);
      this.mergeLeft.push(l);
      this.mergeRight.push(r);
      this.mergeResult.push(this.intern(left + right));
      // A repeated pair takes its later rank, as Python's dict(zip(merges, range(n))) does.
      this.ranks.set(l * PAIR_SHIFT + r, rank);
    });

    this.symbolIds = new Int32Array(this.symbols.size);
    for (const [symbol, n] of this.symbols) this.symbolIds[n] = vocabMap.get(symbol) ?? eos;
  }

  private intern(symbol: string): number {
    let n = this.symbols.get(symbol);
    if (n === undefined) {
      n = this.symbols.size;
      if (n >= PAIR_SHIFT) throw new Error(`CLIP merges define more than ${PAIR_SHIFT} symbols`);
      this.symbols.set(symbol, n);
    }
    return n;
  }

  /**
   * Build from an in-memory vocab (token → id, with `<|startoftext|>` and `<|endoftext|>`) and
   * merges in rank order, as `"left right"` strings or `[left, right]` pairs.
   *
   * @example
   * const tok = ClipTokenizer.fromVocabAndMerges(vocab, ['t h', 'th e</w>']);
   */
  static fromVocabAndMerges(
    vocab: Readonly<Record<string, number>>,
    merges: readonly string[] | readonly (readonly [string, string])[],
  ): ClipTokenizer {
    return new ClipTokenizer(vocab, merges);
  }

  /**
   * Load from a Hugging Face model directory: `vocab.json` + `merges.txt` (slow-tokenizer files,
   * preferred), else `tokenizer.json` (fast tokenizer: `model.vocab`, `model.merges` as
   * `"a b"` strings or `[a, b]` pairs; `added_tokens` fill in special tokens the vocab lacks).
   *
   * merges.txt is read as HF does (`read().strip().split("\n")[1:]`, universal newlines): the
   * first line is the `#version` header and the rest are merges in rank order. A file whose first
   * line is not a `#` comment keeps that line as merge 0 (HF would drop it).
   *
   * @throws Error naming `dir` and the files looked for when neither layout is present.
   * @example
   * const tok = await ClipTokenizer.fromDir('/models/openai-clip-vit-base-patch16');
   */
  static async fromDir(dir: string): Promise<ClipTokenizer> {
    const vocabPath = join(dir, 'vocab.json');
    const mergesPath = join(dir, 'merges.txt');
    const fastPath = join(dir, 'tokenizer.json');
    const [hasVocab, hasMerges] = await Promise.all([isFile(vocabPath), isFile(mergesPath)]);
    if (hasVocab && hasMerges) {
      const [vocabText, mergesText] = await Promise.all([
        readFile(vocabPath, 'utf8'),
        readFile(mergesPath, 'utf8'),
      ]);
      let vocab: unknown;
      try {
        vocab = JSON.parse(vocabText);
      } catch (err) {
        throw new Error(`${vocabPath} is not valid JSON: ${(err as Error).message}`);
      }
      return new ClipTokenizer(vocab as Record<string, number>, parseMergesTxt(mergesText));
    }
    if (await isFile(fastPath)) {
      let json: unknown;
      try {
        json = JSON.parse(await readFile(fastPath, 'utf8'));
      } catch (err) {
        throw new Error(`${fastPath} is not valid JSON: ${(err as Error).message}`);
      }
      return ClipTokenizer.fromTokenizerJson(json, fastPath);
    }
    const found = hasVocab ? ' (found vocab.json only)' : hasMerges ? ' (found merges.txt only)' : '';
    throw new Error(
      `No CLIP tokenizer files in ${dir}: looked for vocab.json + merges.txt, or tokenizer.json${found}`,
    );
  }

  private static fromTokenizerJson(json: unknown, path: string): ClipTokenizer {
    const model = (json as { model?: unknown } | null)?.model as
      | { type?: unknown; vocab?: unknown; merges?: unknown }
      | undefined;
    if (typeof model !== 'object' || model === null) throw new Error(`${path} has no "model" object`);
    if (model.type !== undefined && model.type !== 'BPE') {
      throw new Error(`${path}: model.type is ${JSON.stringify(model.type)}, not "BPE"`);
    }
    if (typeof model.vocab !== 'object' || model.vocab === null || Array.isArray(model.vocab)) {
      throw new Error(`${path}: model.vocab is not an object of token → id`);
    }
    if (!Array.isArray(model.merges)) throw new Error(`${path}: model.merges is not an array`);
    const vocab: Record<string, number> = { ...(model.vocab as Record<string, number>) };
    const added = (json as { added_tokens?: unknown }).added_tokens;
    if (Array.isArray(added)) {
      for (const t of added as { content?: unknown; id?: unknown }[]) {
        if (typeof t?.content === 'string' && typeof t.id === 'number' && !(t.content in vocab)) {
          vocab[t.content] = t.id;
        }
      }
    }
    return new ClipTokenizer(vocab, model.merges as Merge[]);
  }

  /**
   * Token ids of one text: `[bos, ...ids, eos]`, neither truncated nor padded.
   *
   * @example
   * tok.encode('A photo of a dog.'); // → [49406, 320, 1125, 539, 320, 1929, 269, 49407]
   */
  encode(text: string): number[] {
    if (typeof text !== 'string') throw new TypeError(`encode: text is not a string (got ${describe(text)})`);
    const ids = [this.bosId];
    for (const word of preTokenize(cleanClipText(text))) {
      for (const id of this.wordIds(word)) ids.push(id);
    }
    ids.push(this.eosId);
    return ids;
  }

  /**
   * Tokenize a batch into padded `[batch, length]` arrays (see {@link TokenizedBatch}). A row
   * longer than `maxLength` keeps its first `maxLength - 1` ids and ends with the end token, as
   * OpenAI's `clip.tokenize(truncate=True)` and HF's `truncation=True` do.
   *
   * @throws TypeError naming the index of a non-string entry; RangeError for `maxLength < 2`.
   * @example
   * const b = tok.encodeBatch(['a photo of a cat', 'a photo of a goldfish.']);
   * // b.batch = 2, b.length = 8 (longest row), b.lengths = [7, 8], b.eosPositions = [6, 7]
   */
  encodeBatch(texts: readonly string[], options: EncodeBatchOptions = {}): TokenizedBatch {
    const { maxLength = CLIP_CONTEXT_LENGTH, padding = 'longest', padId = this.padId } = options;
    if (!Array.isArray(texts)) throw new TypeError(`encodeBatch: texts is not an array (got ${describe(texts)})`);
    if (!Number.isInteger(maxLength) || maxLength < 2) {
      throw new RangeError(`encodeBatch: maxLength must be an integer ≥ 2 (room for start and end), got ${maxLength}`);
    }
    if (padding !== 'longest' && padding !== 'max_length') {
      throw new TypeError(`encodeBatch: padding must be 'longest' or 'max_length', got ${JSON.stringify(padding)}`);
    }
    if (!Number.isInteger(padId)) throw new TypeError(`encodeBatch: padId must be an integer, got ${padId}`);
    texts.forEach((text, i) => {
      if (typeof text !== 'string') {
        throw new TypeError(`encodeBatch: texts[${i}] is not a string (got ${describe(text)})`);
      }
    });

    const rows = texts.map((text) => {
      const ids = this.encode(text);
      if (ids.length <= maxLength) return ids;
      const cut = ids.slice(0, maxLength - 1);
      cut.push(this.eosId);
      return cut;
    });
    const batch = rows.length;
    const length = padding === 'max_length' ? maxLength : rows.reduce((m, r) => Math.max(m, r.length), 0);
    const inputIds = new Int32Array(batch * length).fill(padId);
    const attentionMask = new Uint8Array(batch * length);
    const lengths = new Int32Array(batch);
    const eosPositions = new Int32Array(batch);
    rows.forEach((row, b) => {
      inputIds.set(row, b * length);
      attentionMask.fill(1, b * length, b * length + row.length);
      lengths[b] = row.length;
      eosPositions[b] = row.indexOf(this.eosId);
    });
    return { inputIds, attentionMask, batch, length, lengths, eosPositions };
  }

  /** Ids of one pre-token, from the cache or by BPE. */
  private wordIds(word: string): readonly number[] {
    // Only the exact lower-case spellings are special; OpenAI seeds its BPE cache with them.
    if (word === START_OF_TEXT) return [this.bosId];
    if (word === END_OF_TEXT) return [this.eosId];
    const cached = this.wordCache.get(word);
    if (cached !== undefined) return cached;

    const bytes = utf8.encode(word);
    let symbols: number[] = new Array<number>(bytes.length);
    for (let i = 0; i < bytes.length - 1; i++) symbols[i] = this.byteSymbols[bytes[i]!]!;
    symbols[bytes.length - 1] = this.finalByteSymbols[bytes[bytes.length - 1]!]!;
    symbols = this.bpe(symbols);
    const ids = symbols.map((s) => this.symbolIds[s]!);

    if (this.wordCache.size >= WORD_CACHE_LIMIT) this.wordCache.clear();
    this.wordCache.set(word, ids);
    return ids;
  }

  /**
   * OpenAI's BPE: merge the adjacent pair of lowest rank, every non-overlapping occurrence left
   * to right, until no adjacent pair has a rank.
   */
  private bpe(word: number[]): number[] {
    while (word.length > 1) {
      let best = Infinity;
      for (let i = 0; i + 1 < word.length; i++) {
        const rank = this.ranks.get(word[i]! * PAIR_SHIFT + word[i + 1]!);
        if (rank !== undefined && rank < best) best = rank;
      }
      if (best === Infinity) break;
      const left = this.mergeLeft[best]!;
      const right = this.mergeRight[best]!;
      const merged = this.mergeResult[best]!;
      const next: number[] = [];
      for (let i = 0; i < word.length; ) {
        if (word[i] === left && i + 1 < word.length && word[i + 1] === right) {
          next.push(merged);
          i += 2;
        } else {
          next.push(word[i]!);
          i += 1;
        }
      }
      word = next;
    }
    return word;
  }
}

/**
 * Merges of a merges.txt file in rank order. Python's text mode turns `\r\n` and `\r` into `\n`
 * and `str.strip()` drops surrounding whitespace before HF splits lines.
 */
function parseMergesTxt(text: string): [string, string][] {
  const lines = text.replace(/\r\n?/g, '\n').replace(STRIP_RE, '').split('\n');
  const start = lines[0]?.startsWith('#') ? 1 : 0;
  const merges: [string, string][] = [];
  for (let i = start; i < lines.length; i++) {
    const parts = lines[i]!.trim().split(/\s+/);
    if (parts.length === 1 && parts[0] === '') continue;
    if (parts.length !== 2) throw new Error(`merges.txt line ${i + 1} is not "left right": ${JSON.stringify(lines[i])}`);
    merges.push(parts as [string, string]);
  }
  return merges;
}
