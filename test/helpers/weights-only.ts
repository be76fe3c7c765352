import assert from 'node:assert/strict';

/**
 * The opcodes of PyTorch's weights_only unpickler (torch/_weights_only_unpickler.py imports
 * exactly these from pickle), with their argument sizes: a file that uses only these, and only
 * allow-listed globals, loads with torch.load(weights_only=True).
 */
const WEIGHTS_ONLY_OPCODES: Record<number, [string, number | 'line2' | 'u32str' | 'u8str' | 'long1']> = {
  0x61: ['APPEND', 0], 0x65: ['APPENDS', 0], 0x47: ['BINFLOAT', 8], 0x68: ['BINGET', 1], 0x4a: ['BININT', 4],
  0x4b: ['BININT1', 1], 0x4d: ['BININT2', 2], 0x51: ['BINPERSID', 0], 0x71: ['BINPUT', 1], 0x58: ['BINUNICODE', 'u32str'],
  0x62: ['BUILD', 0], 0x7d: ['EMPTY_DICT', 0], 0x5d: ['EMPTY_LIST', 0], 0x8f: ['EMPTY_SET', 0], 0x29: ['EMPTY_TUPLE', 0],
  0x63: ['GLOBAL', 'line2'], 0x8a: ['LONG1', 'long1'], 0x6a: ['LONG_BINGET', 4], 0x72: ['LONG_BINPUT', 4], 0x28: ['MARK', 0],
  0x89: ['NEWFALSE', 0], 0x81: ['NEWOBJ', 0], 0x88: ['NEWTRUE', 0], 0x4e: ['NONE', 0], 0x80: ['PROTO', 1], 0x52: ['REDUCE', 0],
  0x73: ['SETITEM', 0], 0x75: ['SETITEMS', 0], 0x55: ['SHORT_BINSTRING', 'u8str'], 0x2e: ['STOP', 0], 0x74: ['TUPLE', 0],
  0x85: ['TUPLE1', 0], 0x86: ['TUPLE2', 0], 0x87: ['TUPLE3', 0],
};

/** Walks a pickle opcode by opcode; returns the globals it names. Fails on any opcode outside the weights_only set. */
export function weightsOnlyScan(pkl: Uint8Array): string[] {
  const buf = Buffer.from(pkl);
  const globals: string[] = [];
  let pos = 0;
  for (;;) {
    const code = buf[pos]!;
    const spec = WEIGHTS_ONLY_OPCODES[code];
    assert.ok(spec, `opcode 0x${code.toString(16)} at byte ${pos} is not one torch's weights_only unpickler implements`);
    pos++;
    const [name, arg] = spec;
    if (name === 'PROTO') assert.equal(buf[pos], 2, 'protocol 2');
    if (typeof arg === 'number') pos += arg;
    else if (arg === 'u32str') pos += 4 + buf.readUInt32LE(pos);
    else if (arg === 'u8str' || arg === 'long1') pos += 1 + buf[pos]!;
    else {
      const a = buf.indexOf(0x0a, pos);
      const c = buf.indexOf(0x0a, a + 1);
      globals.push(`${buf.toString('latin1', pos, a)}.${buf.toString('latin1', a + 1, c)}`);
      pos = c + 1;
    }
    if (name === 'STOP') {
      assert.equal(pos, buf.length, 'STOP is the last byte');
      return globals;
    }
  }
}
