#!/usr/bin/env python3
"""Float64 reference of the LoCoOp text tower (SPEC section 9) on shared/fixtures/clip-tiny-a.

Needs NumPy and the `regex` module (no torch, no transformers). Writes test/fixtures/locoop-tiny/:
  reference.safetensors  ctx_n4 F32 [4, 48], ctx_n16 F32 [16, 48] (seeded), and float64
                         text_embeds_n4 / text_embeds_n16 [P, 40] (not normalised),
                         inputs_embeds_n4 / inputs_embeds_n16 [77, 48] (hidden states entering
                         text layer 0 for the over-long prompt), token_prefix_n16 [3, 1, 48] and
                         token_suffix_n16 [3, 60, 48] (CoOp's fixed buffers of the three class
                         prompts, token embeddings only, 0-padded as clip.tokenize pads).
  reference.json         the prompts, their ids (tokenized here by a small BPE checked against
                         OpenAI's ids of the fixture's prompts) before and after LoCoOp
                         truncation, pool positions, and the check of this script's CLIP text
                         tower against the fixture's own float64 OpenAI outputs.

Run from the repository root:  python3 test/reference/locoop_reference.py [../shared]
The script is deterministic; CI does not run it (its outputs are committed).

The text tower is written from the HF CLIPTextTransformer definition: token + position
embeddings, pre-LN causal blocks (q scaled by head_dim^-0.5), final_layer_norm, the row of the end
token, text_projection. LoCoOp (official SeTAR modeling_locoop, same as CoOp's PromptLearner):
for ids [start, t1..tk, end] the sequence is
  [emb(start)+pos0, ctx_1+pos1, ..., ctx_n+pos_n, emb(t1)+pos_{n+1}, ..., emb(end)+pos_{n+k+1}],
pooled at the end token's position + n; a prompt longer than 77 - n ids keeps its first 76 - n ids
and its end token.
"""
import json
import os
import re
import struct
import sys

import numpy as np
import regex

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHARED = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, '..', 'shared')
MODEL = os.path.join(SHARED, 'fixtures', 'clip-tiny-a')
OUT = os.path.join(ROOT, 'test', 'fixtures', 'locoop-tiny')

START, END = 49406, 49407
CONTEXT = 77
SEED = 14
CTX_STD = 0.1  # the scale of the fixture's token embeddings, so the context matters as much as a word

DTYPES = {'F64': np.float64, 'F32': np.float32, 'F16': np.float16, 'I64': np.int64, 'I32': np.int32}


def read_safetensors(path):
    """Parses a safetensors file by hand: 8-byte little-endian header length, JSON header, raw data."""
    with open(path, 'rb') as f:
        raw = f.read()
    (n,) = struct.unpack('<Q', raw[:8])
    header = json.loads(raw[8:8 + n])
    base = 8 + n
    out = {}
    for name, e in header.items():
        if name == '__metadata__':
            continue
        a, b = e['data_offsets']
        out[name] = np.frombuffer(raw[base + a:base + b], dtype=DTYPES[e['dtype']]).reshape(e['shape'])
    return out


def write_safetensors(path, tensors):
    """Writes tensors (name -> (dtype name, array)) packed largest item size first, then by name."""
    order = sorted(tensors, key=lambda k: (-np.dtype(DTYPES[tensors[k][0]]).itemsize, k))
    header = {'__metadata__': {'format': 'pt'}}
    blobs = []
    off = 0
    for name in order:
        dt, arr = tensors[name]
        b = np.ascontiguousarray(arr, dtype=np.dtype(DTYPES[dt]).newbyteorder('<')).tobytes()
        header[name] = {'dtype': dt, 'shape': list(arr.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(',', ':')).encode()
    h += b' ' * ((8 - len(h) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(h)) + h + b''.join(blobs))


class ClipBpe:
    """CLIP's byte-level BPE as OpenAI's SimpleTokenizer defines it (lower-cased, whitespace
    collapsed, no ftfy: the prompts here are plain ASCII); checked below against OpenAI's own ids."""

    PATTERN = regex.compile(r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE)

    def __init__(self, folder):
        self.vocab = json.load(open(os.path.join(folder, 'vocab.json'), encoding='utf-8'))
        lines = open(os.path.join(folder, 'merges.txt'), encoding='utf-8').read().split('\n')[1:49152 - 256 - 2 + 1]
        self.ranks = {tuple(m.split()): i for i, m in enumerate(lines)}
        bs = list(range(ord('!'), ord('~') + 1)) + list(range(ord('¡'), ord('¬') + 1)) + list(range(ord('®'), ord('ÿ') + 1))
        cs = bs[:]
        n = 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        self.byte_char = {b: chr(c) for b, c in zip(bs, cs)}

    def bpe(self, word):
        parts = list(word[:-1]) + [word[-1] + '</w>']
        while len(parts) > 1:
            pairs = [(self.ranks.get((a, b), float('inf')), i) for i, (a, b) in enumerate(zip(parts, parts[1:]))]
            rank, at = min(pairs)
            if rank == float('inf'):
                break
            first, second = parts[at], parts[at + 1]
            merged = []
            i = 0
            while i < len(parts):
                if i < len(parts) - 1 and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    def encode(self, text):
        text = ' '.join(text.split()).strip().lower()
        ids = [START]
        for token in self.PATTERN.findall(text):
            word = ''.join(self.byte_char[b] for b in token.encode('utf-8'))
            ids.extend(self.vocab[p] for p in self.bpe(word))
        return ids + [END]


class TextTower:
    """CLIP's text tower in float64, HF names."""

    def __init__(self, w, cfg):
        self.w = {k: v.astype(np.float64) for k, v in w.items() if k.startswith('text_') or k == 'text_projection.weight'}
        tc = cfg['text_config']
        self.layers = tc['num_hidden_layers']
        self.heads = tc['num_attention_heads']
        self.eps = tc['layer_norm_eps']
        assert tc['hidden_act'] == 'quick_gelu'
        self.tok = self.w['text_model.embeddings.token_embedding.weight']
        self.pos = self.w['text_model.embeddings.position_embedding.weight']

    def ln(self, x, p):
        m = x.mean(-1, keepdims=True)
        v = ((x - m) ** 2).mean(-1, keepdims=True)
        return (x - m) / np.sqrt(v + self.eps) * self.w[p + '.weight'] + self.w[p + '.bias']

    def lin(self, x, p, bias=True):
        y = x @ self.w[p + '.weight'].T
        return y + self.w[p + '.bias'] if bias else y

    def forward(self, h, pool):
        """h [L, D] hidden states entering layer 0 → text_embeds [P] pooled at row `pool`."""
        L, D = h.shape
        hd = D // self.heads
        mask = np.triu(np.full((L, L), -np.inf), 1)
        for i in range(self.layers):
            p = f'text_model.encoder.layers.{i}'
            x = self.ln(h, p + '.layer_norm1')
            q = self.lin(x, p + '.self_attn.q_proj') * hd ** -0.5
            k = self.lin(x, p + '.self_attn.k_proj')
            v = self.lin(x, p + '.self_attn.v_proj')
            q, k, v = (t.reshape(L, self.heads, hd).transpose(1, 0, 2) for t in (q, k, v))
            s = q @ k.transpose(0, 2, 1) + mask
            s = np.exp(s - s.max(-1, keepdims=True))
            a = (s / s.sum(-1, keepdims=True)) @ v
            h = h + self.lin(a.transpose(1, 0, 2).reshape(L, D), p + '.self_attn.out_proj')
            x = self.ln(h, p + '.layer_norm2')
            f = self.lin(x, p + '.mlp.fc1')
            f = f * (1 / (1 + np.exp(-1.702 * f)))
            h = h + self.lin(f, p + '.mlp.fc2')
        return self.lin(self.ln(h[pool], 'text_model.final_layer_norm'), 'text_projection', bias=False)

    def clip(self, ids):
        """Plain CLIP: ids [start … end] → text_embeds, pooled at the first end token."""
        ids = np.asarray(ids)
        return self.forward(self.tok[ids] + self.pos[:len(ids)], int(np.argmax(ids == END)))

    def locoop_inputs(self, ids, ctx):
        n = ctx.shape[0]
        seq = np.concatenate([self.tok[ids[:1]], ctx.astype(np.float64), self.tok[ids[1:]]])
        return seq + self.pos[:len(ids) + n]

    def locoop(self, ids, ctx):
        return self.forward(self.locoop_inputs(ids, ctx), len(ids) - 1 + ctx.shape[0])


def truncate(ids, n):
    """SPEC section 9: at most 77 - n ids; a longer prompt keeps its first 76 - n ids and its end token."""
    m = CONTEXT - n
    return list(ids) if len(ids) <= m else list(ids[:m - 1]) + [ids[-1]]


def main():
    cfg = json.load(open(os.path.join(MODEL, 'config.json')))
    tower = TextTower(read_safetensors(os.path.join(MODEL, 'model.safetensors')), cfg)
    ref = read_safetensors(os.path.join(MODEL, 'reference.safetensors'))
    meta = json.load(open(os.path.join(MODEL, 'reference.json')))

    # 1. This tower against the fixture's own float64 outputs (OpenAI's encode_text in float64).
    rows = meta['token_ids_unpadded']
    mine = np.stack([tower.clip(r) for r in rows])
    expected = ref['text_embeds']
    clip_check = float(np.abs(mine - expected).max() / np.abs(expected).max())
    assert clip_check < 1e-12, f'CLIP text tower disagrees with the fixture: {clip_check}'

    # 2. Prompts, tokenized here (BPE above), first checked against OpenAI's ids of the fixture's
    # prompts (the 91-token one truncated as clip.tokenize(truncate=True) does: 76 ids + end).
    bpe = ClipBpe(MODEL)
    for text, ids in zip(meta['texts'], rows):
        mine = bpe.encode(text)
        if len(mine) > CONTEXT:
            mine = mine[:CONTEXT - 1] + [END]
        assert mine == ids, f'BPE disagrees with OpenAI on {text!r}'
    long_text = meta['texts'][5]
    long_ids = bpe.encode(long_text)
    assert len(long_ids) == 91
    prompts = [{'text': t, 'ids': bpe.encode(t)} for t in ['tench.', 'kite (bird of prey).', 'Black and Tan Coonhound.', meta['texts'][0], '']]
    prompts += [
        {'text': long_text, 'ids': long_ids, 'note': 'over-long: 91 ids'},
        {'text': None, 'ids': long_ids[:60] + [END], 'note': '61 ids = 77 - 16: fits exactly with n = 16'},
        {'text': None, 'ids': long_ids[:61] + [END], 'note': '62 ids: one too many for n = 16'},
        {'text': None, 'ids': long_ids[:72] + [END], 'note': '73 ids = 77 - 4: fits exactly with n = 4'},
        {'text': None, 'ids': long_ids[:73] + [END], 'note': '74 ids: one too many for n = 4'},
    ]

    rng = np.random.default_rng(SEED)
    ctx = {n: (rng.standard_normal((n, 48)) * CTX_STD).astype(np.float32) for n in (4, 16)}
    tensors = {}
    for n, c in ctx.items():
        tensors[f'ctx_n{n}'] = ('F32', c)
        embeds = []
        for p in prompts:
            t = truncate(p['ids'], n)
            p.setdefault('truncated_ids', {})[str(n)] = t
            p.setdefault('pool_position', {})[str(n)] = len(t) - 1 + n
            embeds.append(tower.locoop(np.asarray(t), c))
        tensors[f'text_embeds_n{n}'] = ('F64', np.stack(embeds))
        tensors[f'inputs_embeds_n{n}'] = ('F64', tower.locoop_inputs(np.asarray(truncate(long_ids, n)), c))

    # 3. CoOp's fixed buffers for the three class prompts with n = 16: "X … X {label}." tokenized to
    # 77 ids (clip.tokenize pads with 0), token embeddings only; prefix = row 0, suffix = rows 1 + n ….
    n = 16
    padded = []
    for p in prompts[:3]:
        ids = [START] + [0] * n + p['ids'][1:]  # the n placeholder ids never reach the buffers
        padded.append(ids + [0] * (CONTEXT - len(ids)))
    emb = tower.tok[np.asarray(padded)]
    tensors['token_prefix_n16'] = ('F32', emb[:, :1, :].astype(np.float32))
    tensors['token_suffix_n16'] = ('F32', emb[:, 1 + n:, :].astype(np.float32))

    os.makedirs(OUT, exist_ok=True)
    write_safetensors(os.path.join(OUT, 'reference.safetensors'), tensors)
    info = {
        'model': 'shared/fixtures/clip-tiny-a',
        'produced_by': 'test/reference/locoop_reference.py (NumPy float64)',
        'seed': SEED,
        'ctx': f'numpy default_rng({SEED}).standard_normal((n, 48)) * {CTX_STD}, rounded to float32; n = 4 drawn first, then n = 16',
        'clip_text_check': {'against': 'clip-tiny-a reference.safetensors text_embeds (OpenAI encode_text, float64)', 'max_abs_error_over_max_abs': clip_check},
        'prompts': prompts,
        'tensors': {k: {'dtype': v[0], 'shape': list(v[1].shape)} for k, v in tensors.items()},
        'class_prompts_for_buffers': [p['text'] for p in prompts[:3]],
    }
    text = json.dumps(info, indent=1)
    text = re.sub(r'\[\s*(-?\d+(?:,\s*-?\d+)*)\s*\]', lambda m: '[' + ', '.join(m.group(1).split()).replace(',,', ',') + ']', text)
    with open(os.path.join(OUT, 'reference.json'), 'w') as f:
        f.write(text + '\n')
    print(f'CLIP text tower vs fixture: {clip_check:.2e} (max abs error / max abs value)')
    for n in (4, 16):
        e = tensors[f'text_embeds_n{n}'][1]
        print(f'n = {n}: text_embeds {e.shape}, max |x| {np.abs(e).max():.3f}')


if __name__ == '__main__':
    main()
