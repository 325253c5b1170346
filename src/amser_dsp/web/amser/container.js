// The .amser container writer, format 1.1 (docs/format.md; amser_dsp.container.Writer): a header with
// the config and codec as canonical JSON raw-deflated with the preset dictionary, chunk records, the end
// record, and CRC-32s chained from the header's.  The deflate is pako's (a port of zlib, vendored in
// ../vendor), whose output at level 9 equals zlib's byte for byte.

// pako 2.1.0 (a port of zlib 1.2.x; pako 3 follows zlib 1.3.2, whose output with a dictionary differs from the
// zlib 1.2 that Python links on Debian): a UMD bundle, which sets globalThis.pako when imported as a module.
import "../vendor/pako_deflate.min.js";
import { AmserError } from "./frontend.js";

const { deflateRaw } = globalThis.pako;

export const MAJOR = 1;
export const MINOR = 1;
const MAGIC = [0x41, 0x4d, 0x53, 0x52]; // "AMSR"

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c;
  }
  return t;
})();

/** zlib.crc32(bytes, previous): CRC-32 (ISO-HDLC) continuing from `previous`. */
export function crc32(bytes, previous = 0) {
  let c = ~previous;
  for (let i = 0; i < bytes.length; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/**
 * json.dumps(obj, sort_keys=True, separators=(",", ":")) for objects of strings, integers, booleans and null.
 * Non-integer numbers are refused: Python and JavaScript print them differently (8.0 vs 8); configs with
 * floats travel as the canonical text Python made (tables.json).
 */
export function canonicalJson(obj) {
  const parts = Object.keys(obj)
    .sort()
    .map((k) => {
      const v = obj[k];
      if (typeof v === "number" && !Number.isInteger(v)) throw new AmserError(`canonicalJson: ${k}=${v} is not an integer`);
      if (v !== null && typeof v === "object") throw new AmserError(`canonicalJson: ${k} is not a scalar`);
      return `${JSON.stringify(k)}:${JSON.stringify(v)}`;
    });
  return `{${parts.join(",")}}`;
}

/** The arrays one after the other, in a new typed array of `Type`. */
export function concat(parts, Type = Uint8Array) {
  const out = new Type(parts.reduce((a, p) => a + p.length, 0));
  let pos = 0;
  for (const p of parts) {
    out.set(p, pos);
    pos += p.length;
  }
  return out;
}

function withCrc(body, previous) {
  const out = new Uint8Array(body.length + 4);
  out.set(body);
  new DataView(out.buffer).setUint32(body.length, crc32(body, previous), true);
  return out;
}

/** Canonical JSON text raw-deflated with the header dictionary (container.compress_json). */
export function compressJson(text, dictionary) {
  return deflateRaw(new TextEncoder().encode(text), { level: 9, dictionary });
}

function field(tag, value) {
  const head = new Uint8Array(5);
  head[0] = tag;
  new DataView(head.buffer).setUint32(1, value.length, true);
  return concat([head, value]);
}

/** The header record (container.header_bytes) for config and codec JSON texts and a band count. */
export function headerBytes(configJson, codecJson, nMels, dictionary) {
  const nm = new Uint8Array(2);
  new DataView(nm.buffer).setUint16(0, nMels, true);
  const fields = concat([field(0x01, compressJson(configJson, dictionary)), field(0x02, compressJson(codecJson, dictionary)), field(0x03, nm)]);
  const prefix = new Uint8Array(12);
  prefix.set(MAGIC);
  prefix[4] = MAJOR;
  prefix[5] = MINOR;
  new DataView(prefix.buffer).setUint32(8, fields.length, true);
  return withCrc(concat([prefix, fields]), 0);
}

/** Writes one container record by record (container.Writer): start(), write(nFrames, payload), close(). */
export class ContainerWriter {
  constructor(configJson, codecJson, nMels, dictionary) {
    this.header = headerBytes(configJson, codecJson, nMels, dictionary);
    this.chain = new DataView(this.header.buffer).getUint32(this.header.length - 4, true);
    this.started = false;
    this.closed = false;
    this.nChunks = 0;
    this.nFrames = 0;
    this.nBytes = 0;
  }

  /** The header the first time, then an empty array. */
  start() {
    if (this.started) return new Uint8Array(0);
    this.started = true;
    this.nBytes += this.header.length;
    return this.header;
  }

  /** The record of one chunk (after the header if it was not written yet). */
  write(nFrames, payload) {
    if (this.closed) throw new AmserError("write() after close()");
    if (!(Number.isInteger(nFrames) && nFrames >= 1)) throw new AmserError(`a chunk needs at least one frame, got ${nFrames}`);
    const body = new Uint8Array(9 + payload.length);
    const view = new DataView(body.buffer);
    body[0] = 0x43; // "C"
    view.setUint32(1, nFrames, true);
    view.setUint32(5, payload.length, true);
    body.set(payload, 9);
    const record = withCrc(body, this.chain);
    this.chain = new DataView(record.buffer).getUint32(record.length - 4, true);
    this.nChunks += 1;
    this.nFrames += nFrames;
    this.nBytes += record.length;
    return concat([this.start(), record]);
  }

  /** The end record (after the header if nothing was written); empty when already closed. */
  close() {
    if (this.closed) return new Uint8Array(0);
    this.closed = true;
    const body = new Uint8Array(13);
    const view = new DataView(body.buffer);
    body[0] = 0x45; // "E"
    view.setUint32(1, this.nChunks, true);
    view.setBigUint64(5, BigInt(this.nFrames), true);
    const end = withCrc(body, this.chain);
    const head = this.start();
    this.nBytes += end.length;
    return concat([head, end]);
  }
}
