/**
 * A zip archive laid out as PyTorch's PyTorchStreamWriter (miniz) writes a `torch.save` file: one
 * local header + data per record, every record STORED (uncompressed) with its data starting on a
 * 64-byte boundary (padding in an extra field of id 'FB', 0x4246, so storages can be memory-mapped),
 * then the central directory and the end record. No zip64: archives stay under 4 GiB.
 */

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE) of `data`, as zip stores it. */
export function crc32(data: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

const ALIGN = 64;
const LIMIT = 0xffffffff;

/**
 * The bytes of a zip of `records` (name, data), in order, as chunks to write one after another
 * (e.g. with `writeFileAtomic`). Throws a RangeError if the archive would need zip64.
 */
export function zipStored(records: readonly (readonly [name: string, data: Uint8Array])[]): Uint8Array[] {
  const chunks: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const [name, data] of records) {
    const nameBuf = Buffer.from(name, 'utf8');
    const unpadded = offset + 30 + nameBuf.length + 4;
    const pad = (ALIGN - (unpadded % ALIGN)) % ALIGN;
    const extra = Buffer.alloc(4 + pad);
    extra.writeUInt16LE(0x4246, 0);
    extra.writeUInt16LE(pad, 2);
    const crc = crc32(data);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4); // version needed
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBuf.length, 26);
    local.writeUInt16LE(extra.length, 28);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(0x02014b50, 0);
    cd.writeUInt16LE(20, 4);
    cd.writeUInt16LE(20, 6);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(data.length, 20);
    cd.writeUInt32LE(data.length, 24);
    cd.writeUInt16LE(nameBuf.length, 28);
    cd.writeUInt32LE(offset, 42);
    central.push(cd, nameBuf);
    chunks.push(local, nameBuf, extra, data);
    offset += local.length + nameBuf.length + extra.length + data.length;
    if (offset > LIMIT) throw new RangeError(`zip archive would exceed 4 GiB at record '${name}'; zip64 is not written`);
  }
  const cdSize = central.reduce((a, c) => a + c.length, 0);
  if (records.length > 0xffff || offset + cdSize > LIMIT) throw new RangeError(`zip archive of ${records.length} records would need zip64, which is not written`);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(records.length, 8);
  end.writeUInt16LE(records.length, 10);
  end.writeUInt32LE(cdSize, 12);
  end.writeUInt32LE(offset, 16);
  return [...chunks, ...central, end];
}
