// The static rANS coder of amser_dsp.codec.rans (stream layout in that module's docstring), a port of
// its `_encode_loop` and `_decode_loop`.  Integer arithmetic only: states stay below 2**31 and every
// product below 2**48, so JavaScript numbers hold them exactly and the bytes equal Python's.

import { AmserError } from "./frontend.js";

const RANS_L = 1 << 23;

/**
 * The shipped Laplace tables: `asset` is the "rans" object of tables.json.
 * freq and cum are flat (table * nSymbols + rank) and (table * (nSymbols + 1) + rank).
 */
export class LaplaceTables {
  constructor(asset, decodeArray) {
    this.precision = asset.precision;
    this.alphabet = asset.alphabet;
    this.nSymbols = 2 * asset.alphabet + 2;
    this.escape = this.nSymbols - 1;
    this.scaleIndexMin = asset.scale_index_min;
    this.scaleIndexMax = asset.scale_index_max;
    this.nTables = this.scaleIndexMax - this.scaleIndexMin + 1;
    this.freq = decodeArray(asset.freq);
    this.escapeK = decodeArray(asset.escape_k);
    if (this.freq.length !== this.nTables * this.nSymbols || this.escapeK.length !== this.nTables) {
      throw new AmserError("entropy tables have the wrong size");
    }
    this.cum = new Int32Array(this.nTables * (this.nSymbols + 1));
    for (let t = 0; t < this.nTables; t++) {
      let c = 0;
      for (let r = 0; r < this.nSymbols; r++) {
        this.cum[t * (this.nSymbols + 1) + r] = c;
        c += this.freq[t * this.nSymbols + r];
      }
      this.cum[t * (this.nSymbols + 1) + this.nSymbols] = c;
      if (c !== 2 ** this.precision) throw new AmserError(`entropy table ${t} does not sum to 2**${this.precision}`);
    }
  }
}

/** Number of bits of w (w >= 0, up to 2**53). */
function bitLength(w) {
  let n = 0;
  while (w >= 1) {
    w = Math.floor(w / 2);
    n++;
  }
  return n;
}

/**
 * Entropy-code `values` (integers), value i with table `tables[i]` (table indices, i.e. context - SCALE_INDEX_MIN).
 * Returns the stream as a Uint8Array (empty when there is no symbol).
 */
export function ransEncode(values, tab, lt) {
  const n = values.length;
  if (n !== tab.length) throw new AmserError("symbols and contexts differ in length");
  if (n === 0) return new Uint8Array(0);
  const PREC = lt.precision;
  const SCALE = 2 ** PREC;
  const { freq, cum, escapeK, nSymbols, alphabet, escape: ESC } = lt;
  let capacity = 3 * n + 64;
  for (;;) {
    const out = new Uint8Array(capacity);
    let pos = capacity;
    let x0 = RANS_L;
    let x1 = RANS_L;
    let full = false;
    const put = (x, f) => {
      // Renormalise x for a symbol of frequency f; returns the new x or -1 when the buffer is full.
      const xMax = f * 2 ** (31 - PREC);
      while (x >= xMax) {
        if (pos === 0) return -1;
        out[--pos] = x & 0xff;
        x = Math.floor(x / 256);
      }
      return x;
    };
    for (let i = n - 1; i >= 0 && !full; i--) {
      let x = i & 1 ? x1 : x0;
      const t = tab[i];
      const v = values[i];
      const negative = v < 0 ? 1 : 0;
      const mag = negative ? -v : v;
      let r = mag === 0 ? 0 : 2 * mag - 1 + negative; // ranks: 0, +1, -1, +2, -2, ...
      if (mag > alphabet) {
        r = ESC;
        const k = escapeK[t];
        const w = mag - (alphabet + 1) + 2 ** k;
        const nbits = bitLength(w);
        const z = nbits - k - 1;
        const nlow = nbits - 1;
        const nChunks = (nlow + 15) >> 4;
        // LIFO: sign, chunks of w from the bottom (16 bits, the top one shorter), the one, z zeros.
        for (let p = 0; p < z + nChunks + 2; p++) {
          let nb = 1;
          let pv = 0;
          if (p === 0) pv = negative;
          else if (p <= nChunks) {
            const sh = 16 * (p - 1);
            nb = Math.min(16, nlow - sh);
            pv = Math.floor(w / 2 ** sh) % 2 ** nb;
          } else if (p === nChunks + 1) pv = 1;
          const f = 2 ** (PREC - nb);
          x = put(x, f);
          if (x < 0) {
            full = true;
            break;
          }
          const q = Math.floor(x / f);
          x = q * SCALE + (x - q * f) + pv * f;
        }
        if (full) break;
      }
      const f = freq[t * nSymbols + r];
      x = put(x, f);
      if (x < 0) {
        full = true;
        break;
      }
      const q = Math.floor(x / f);
      x = q * SCALE + (x - q * f) + cum[t * (nSymbols + 1) + r];
      if (i & 1) x1 = x;
      else x0 = x;
    }
    if (!full && pos >= 8) {
      for (const x of [x1, x0]) {
        let s = x;
        for (let b = 0; b < 4; b++) {
          out[--pos] = s & 0xff;
          s = Math.floor(s / 256);
        }
      }
      return out.slice(pos);
    }
    if (capacity >= 74 * n + 8) throw new AmserError("rANS buffer overflow (unreachable)");
    capacity = 74 * n + 8;
  }
}

/** Decode `tab.length` values from `data` (the inverse of ransEncode); throws AmserError on a damaged stream. */
export function ransDecode(data, tab, lt) {
  const n = tab.length;
  const out = new Int32Array(n);
  if (n === 0) {
    if (data.length) throw new AmserError("entropy-coded stream has bytes but no symbol is coded");
    return out;
  }
  const PREC = lt.precision;
  const SCALE = 2 ** PREC;
  const mask = SCALE - 1;
  const { cum, escapeK, nSymbols, alphabet, escape: ESC } = lt;
  const end = data.length;
  if (end < 8) throw new AmserError("entropy-coded stream is corrupt: the stream ends early");
  let x0 = 0;
  let x1 = 0;
  for (let b = 0; b < 4; b++) {
    x0 = x0 * 256 + data[b];
    x1 = x1 * 256 + data[4 + b];
  }
  const bad = (why) => new AmserError(`entropy-coded stream is corrupt: ${why}`);
  if (x0 < RANS_L || x0 >= RANS_L * 256 || x1 < RANS_L || x1 >= RANS_L * 256) throw bad("a rANS state is out of range");
  let pos = 8;
  const refill = (x) => {
    while (x < RANS_L) {
      if (pos >= end) throw bad("the stream ends early");
      x = x * 256 + data[pos++];
    }
    return x;
  };
  for (let i = 0; i < n; i++) {
    let x = i & 1 ? x1 : x0;
    const t = tab[i];
    const slot = x % SCALE;
    const base = t * (nSymbols + 1);
    let r = 0;
    while (cum[base + r + 1] <= slot) r++;
    const c = cum[base + r];
    x = refill((cum[base + r + 1] - c) * Math.floor(x / SCALE) + slot - c);
    if (r !== ESC) out[i] = r & 1 ? (r + 1) >> 1 : -(r >> 1);
    else {
      const k = escapeK[t];
      let z = 0;
      let w = 1;
      let rem = -1;
      for (;;) {
        const nb = rem > 0 ? ((rem - 1) & 15) + 1 : 1;
        const f = 2 ** (PREC - nb);
        const s = x & mask;
        const pv = Math.floor(s / f);
        x = refill(f * Math.floor(x / SCALE) + s - pv * f);
        if (rem < 0) {
          if (pv) rem = z + k;
          else if (++z + k >= 32) throw bad("an escaped value is out of range");
        } else if (rem > 0) {
          w = w * 2 ** nb + pv;
          rem -= nb;
        } else {
          const mag = w - 2 ** k + alphabet + 1;
          if (mag > 2 ** 31 || (mag === 2 ** 31 && pv === 0)) throw bad("an escaped value is out of range");
          out[i] = pv ? -mag : mag;
          break;
        }
      }
    }
    if (i & 1) x1 = x;
    else x0 = x;
  }
  if (x0 !== RANS_L || x1 !== RANS_L) throw bad("a rANS state does not end where encoding starts");
  if (pos !== end) throw bad("trailing bytes after the last symbol");
  return out;
}
