// Real FFT of any even size whose half factors into 2, 3, 4 and 5 (400 for the whisper preset).
//
// A real signal of N samples is packed as N/2 complex values (even samples real, odd samples
// imaginary), transformed by a mixed-radix decimation-in-time FFT of size N/2, and unpacked
// into the N/2 + 1 bins of the real spectrum.  Everything is float64 with precomputed
// twiddles; the reference (scipy.fft.rfft in float32) agrees to float32 rounding.

// Radix-5 butterfly constants: cos and sin of 2 pi / 5 and 4 pi / 5.
const C1 = Math.cos((2 * Math.PI) / 5);
const C2 = Math.cos((4 * Math.PI) / 5);
const S1 = Math.sin((2 * Math.PI) / 5);
const S2 = Math.sin((4 * Math.PI) / 5);

function factorise(n) {
  const factors = [];
  for (const p of [4, 2, 3, 5]) {
    while (n % p === 0) {
      factors.push(p);
      n /= p;
    }
  }
  if (n !== 1) throw new RangeError(`FFT size has a prime factor above 5: ${n}`);
  return factors;
}

// Input order of a DIT FFT whose stages combine `factors` in order (the last factor is the
// outermost split: sub-transform q of the last stage holds the samples q, q + p, q + 2p, ...).
function inputOrder(n, factors) {
  const order = new Int32Array(n);
  let pos = 0;
  const build = (offset, stride, size, depth) => {
    if (size === 1) {
      order[pos++] = offset;
      return;
    }
    const p = factors[depth];
    for (let q = 0; q < p; q++) build(offset + q * stride, stride * p, size / p, depth - 1);
  };
  build(0, 1, n, factors.length - 1);
  return order;
}

export class RealFFT {
  /** @param {number} size even number of real samples */
  constructor(size) {
    if (!Number.isInteger(size) || size < 2 || size % 2) throw new RangeError(`FFT size must be even, got ${size}`);
    this.size = size;
    const m = size / 2;
    this.half = m;
    this.factors = m === 1 ? [] : factorise(m);
    this.order = inputOrder(m, this.factors);
    // Per stage: twiddles W_len^(q k) for q < p, k < len / p.
    this.stages = [];
    let len = 1;
    for (const p of this.factors) {
      const prev = len;
      len *= p;
      const re = new Float64Array(p * prev);
      const im = new Float64Array(p * prev);
      for (let q = 0; q < p; q++) {
        for (let k = 0; k < prev; k++) {
          const a = (-2 * Math.PI * q * k) / len;
          re[q * prev + k] = Math.cos(a);
          im[q * prev + k] = Math.sin(a);
        }
      }
      const rootRe = new Float64Array(p * p);
      const rootIm = new Float64Array(p * p);
      for (let i = 0; i < p * p; i++) {
        const a = (-2 * Math.PI * (i % p) * Math.floor(i / p)) / p;
        rootRe[i] = Math.cos(a);
        rootIm[i] = Math.sin(a);
      }
      this.stages.push({ p, prev, len, re, im, rootRe, rootIm });
    }
    // Unpacking twiddles W_N^k, k <= N/2.
    this.unRe = new Float64Array(m + 1);
    this.unIm = new Float64Array(m + 1);
    for (let k = 0; k <= m; k++) {
      this.unRe[k] = Math.cos((-2 * Math.PI * k) / size);
      this.unIm[k] = Math.sin((-2 * Math.PI * k) / size);
    }
    this.zr = new Float64Array(m);
    this.zi = new Float64Array(m);
    this.tr = new Float64Array(5);
    this.ti = new Float64Array(5);
  }

  /**
   * Power spectrum |rfft(x)|^2 of `x` (length `size`), written into `out` (length size / 2 + 1).
   * @param {Float64Array} x
   * @param {Float64Array} out
   */
  power(x, out) {
    const m = this.half;
    const zr = this.zr;
    const zi = this.zi;
    const order = this.order;
    for (let i = 0; i < m; i++) {
      const j = order[i];
      zr[i] = x[2 * j];
      zi[i] = x[2 * j + 1];
    }
    this._stages(zr, zi);
    // X[k] = (Z[k] + conj Z[m-k]) / 2 - i W^k (Z[k] - conj Z[m-k]) / 2
    for (let k = 0; k <= m; k++) {
      const a = k % m;
      const b = (m - k) % m;
      const er = 0.5 * (zr[a] + zr[b]);
      const ei = 0.5 * (zi[a] - zi[b]);
      const or = 0.5 * (zi[a] + zi[b]);
      const oi = -0.5 * (zr[a] - zr[b]);
      const wr = this.unRe[k];
      const wi = this.unIm[k];
      const re = er + wr * or - wi * oi;
      const im = ei + wr * oi + wi * or;
      out[k] = re * re + im * im;
    }
    return out;
  }

  _stages(zr, zi) {
    const n = this.half;
    const tr = this.tr;
    const ti = this.ti;
    for (const { p, prev, len, re, im, rootRe, rootIm } of this.stages) {
      for (let base = 0; base < n; base += len) {
        for (let k = 0; k < prev; k++) {
          for (let q = 0; q < p; q++) {
            const i = base + k + q * prev;
            const wr = re[q * prev + k];
            const wi = im[q * prev + k];
            tr[q] = zr[i] * wr - zi[i] * wi;
            ti[q] = zr[i] * wi + zi[i] * wr;
          }
          if (p === 2) {
            const i0 = base + k;
            const i1 = i0 + prev;
            zr[i0] = tr[0] + tr[1];
            zi[i0] = ti[0] + ti[1];
            zr[i1] = tr[0] - tr[1];
            zi[i1] = ti[0] - ti[1];
          } else if (p === 4) {
            const i0 = base + k;
            const ar = tr[0] + tr[2];
            const ai = ti[0] + ti[2];
            const br = tr[0] - tr[2];
            const bi = ti[0] - ti[2];
            const cr = tr[1] + tr[3];
            const ci = ti[1] + ti[3];
            const dr = tr[1] - tr[3];
            const di = ti[1] - ti[3];
            zr[i0] = ar + cr;
            zi[i0] = ai + ci;
            zr[i0 + prev] = br + di; // b - i d
            zi[i0 + prev] = bi - dr;
            zr[i0 + 2 * prev] = ar - cr;
            zi[i0 + 2 * prev] = ai - ci;
            zr[i0 + 3 * prev] = br - di; // b + i d
            zi[i0 + 3 * prev] = bi + dr;
          } else if (p === 5) {
            const i0 = base + k;
            const t1r = tr[1] + tr[4];
            const t1i = ti[1] + ti[4];
            const t2r = tr[2] + tr[3];
            const t2i = ti[2] + ti[3];
            const t3r = tr[1] - tr[4];
            const t3i = ti[1] - ti[4];
            const t4r = tr[2] - tr[3];
            const t4i = ti[2] - ti[3];
            const b1r = tr[0] + C1 * t1r + C2 * t2r;
            const b1i = ti[0] + C1 * t1i + C2 * t2i;
            const b2r = tr[0] + C2 * t1r + C1 * t2r;
            const b2i = ti[0] + C2 * t1i + C1 * t2i;
            const s3r = S1 * t3r + S2 * t4r; // y1, y4 = b1 -+ i (S1 t3 + S2 t4)
            const s3i = S1 * t3i + S2 * t4i;
            const s4r = S2 * t3r - S1 * t4r; // y2, y3 = b2 -+ i (S2 t3 - S1 t4)
            const s4i = S2 * t3i - S1 * t4i;
            zr[i0] = tr[0] + t1r + t2r;
            zi[i0] = ti[0] + t1i + t2i;
            zr[i0 + prev] = b1r + s3i;
            zi[i0 + prev] = b1i - s3r;
            zr[i0 + 4 * prev] = b1r - s3i;
            zi[i0 + 4 * prev] = b1i + s3r;
            zr[i0 + 2 * prev] = b2r + s4i;
            zi[i0 + 2 * prev] = b2i - s4r;
            zr[i0 + 3 * prev] = b2r - s4i;
            zi[i0 + 3 * prev] = b2i + s4r;
          } else {
            for (let s = 0; s < p; s++) {
              let sr = 0;
              let si = 0;
              for (let q = 0; q < p; q++) {
                const wr = rootRe[s * p + q];
                const wi = rootIm[s * p + q];
                sr += tr[q] * wr - ti[q] * wi;
                si += tr[q] * wi + ti[q] * wr;
              }
              zr[base + k + s * prev] = sr;
              zi[base + k + s * prev] = si;
            }
          }
        }
      }
    }
  }
}
