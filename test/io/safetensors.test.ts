import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Checkpoint, floatToBf16, floatToHalf, halfToFloat, SafetensorsFile, writeSafetensors } from '../../src/io/safetensors.js';

describe('safetensors', () => {
  let dir: string;
  before(() => { dir = mkdtempSync(join(tmpdir(), 'setar-st-')); });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('round-trips F32, F16, BF16 and integer tensors, header padded to 8 bytes with format metadata', () => {
    const f = join(dir, 'a.safetensors');
    const x = Float32Array.from([0, 1, -2.5, 65504, 1e-7, 3.140625]);
    writeSafetensors(f, {
      a: { dtype: 'F32', shape: [2, 3], data: x },
      h: { dtype: 'F16', shape: [6], data: x },
      b: { dtype: 'BF16', shape: [3, 2], data: x },
      i: { dtype: 'I64', shape: [2], data: BigInt64Array.of(-1n, 7n) },
    });
    const bytes = readFileSync(f);
    assert.equal(Number(bytes.readBigUInt64LE(0)) % 8, 0);
    const st = SafetensorsFile.open(f);
    try {
      assert.deepEqual(st.metadata, { format: 'pt' });
      assert.deepEqual([...st.readFloat32('a', [2, 3])], [...x]);
      assert.deepEqual([...st.readFloat32('h')], [...x].map((v) => halfToFloat(floatToHalf(v))));
      assert.deepEqual([...st.readFloat32('b')], [...x].map((v) => new Float32Array(new Uint32Array([floatToBf16(v) << 16]).buffer)[0]));
      assert.deepEqual([...(st.read('i').data as BigInt64Array)], [-1n, 7n]);
      // every entry's absolute offset is aligned to its item size, so typed-array views would work
      for (const e of st.entries.values()) assert.equal(e.begin % ({ F32: 4, F16: 2, BF16: 2, I64: 8 } as Record<string, number>)[e.dtype]!, 0);
    } finally {
      st.close();
    }
  });

  it('float16 conversion is exact and rounds half to even', () => {
    assert.equal(floatToHalf(1), 0x3c00);
    assert.equal(floatToHalf(65504), 0x7bff);
    assert.equal(floatToHalf(1e6), 0x7c00);
    assert.equal(floatToHalf(2 ** -24), 0x0001);
    assert.equal(floatToHalf(1 + 2 ** -11), 0x3c00); // tie → even
    assert.equal(floatToHalf(1 + 3 * 2 ** -11), 0x3c02);
    assert.ok(Number.isNaN(halfToFloat(0x7e00)));
    assert.equal(halfToFloat(0xfc00), -Infinity);
  });

  it('names the file and tensor for shape and dtype problems', () => {
    const f = join(dir, 'b.safetensors');
    writeSafetensors(f, { w: { dtype: 'F32', shape: [2, 2], data: new Float32Array(4) }, n: { dtype: 'I32', shape: [1], data: Int32Array.of(3) } });
    const st = SafetensorsFile.open(f);
    try {
      assert.throws(() => st.readFloat32('w', [4]), /tensor 'w' in '.*b\.safetensors' has shape \[2, 2\], expected \[4\]/);
      assert.throws(() => st.readFloat32('n'), /tensor 'n' in '.*' has dtype I32; expected one of F32, F16, BF16, F64/);
      assert.throws(() => st.readFloat32('missing'), /tensor 'missing' not found in '.*b\.safetensors'/);
    } finally {
      st.close();
    }
  });

  it('rejects truncated files, bad spans and unsupported dtypes at open, naming file and tensor', () => {
    const f = join(dir, 'c.safetensors');
    writeSafetensors(f, { w: { dtype: 'F32', shape: [64], data: new Float32Array(64) } });
    const full = readFileSync(f);
    const cut = join(dir, 'cut.safetensors');
    writeFileSync(cut, full.subarray(0, full.length - 10));
    assert.throws(() => SafetensorsFile.open(cut), /tensor 'w' in '.*cut\.safetensors': data ends at byte \d+ but the file has \d+ bytes \(truncated file\?\)/);
    writeFileSync(cut, full.subarray(0, 20));
    assert.throws(() => SafetensorsFile.open(cut), /cut\.safetensors': header length \d+ does not fit the file/);
    const craft = (header: object) => {
      const h = Buffer.from(JSON.stringify(header));
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(h.length));
      const p = join(dir, 'crafted.safetensors');
      writeFileSync(p, Buffer.concat([len, h, Buffer.alloc(16)]));
      return p;
    };
    assert.throws(() => SafetensorsFile.open(craft({ x: { dtype: 'F8_E4M3', shape: [4], data_offsets: [0, 4] } })), /tensor 'x' in '.*': unsupported dtype "F8_E4M3"; supported: /);
    assert.throws(() => SafetensorsFile.open(craft({ x: { dtype: 'F32', shape: [3], data_offsets: [0, 16] } })), /data_offsets span 16 bytes, but shape \[3\] of F32 needs 12/);
    assert.throws(() => SafetensorsFile.open(join(dir, 'nope.safetensors')), /cannot open safetensors file '.*nope\.safetensors'/);
  });

  it('reads sharded checkpoints through model.safetensors.index.json', async () => {
    const d = mkdtempSync(join(dir, 'sharded-'));
    writeSafetensors(join(d, 'model-00001-of-00002.safetensors'), { a: { dtype: 'F32', shape: [2], data: Float32Array.of(1, 2) } });
    writeSafetensors(join(d, 'model-00002-of-00002.safetensors'), { b: { dtype: 'F16', shape: [1], data: Float32Array.of(0.5) } });
    writeFileSync(join(d, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: { a: 'model-00001-of-00002.safetensors', b: 'model-00002-of-00002.safetensors' } }));
    const cp = await Checkpoint.open(d);
    try {
      assert.deepEqual(cp.names().sort(), ['a', 'b']);
      assert.deepEqual([...cp.readFloat32('a')], [1, 2]);
      assert.deepEqual([...cp.readFloat32('b')], [0.5]);
      assert.throws(() => cp.readFloat32('c'), /tensor 'c' is missing from the checkpoint in '.*sharded-/);
    } finally {
      cp.close();
    }
  });
});
