// Streaming sample-rate conversion to 16 kHz for microphones the browser will not open at 16 kHz
// (a MediaStream source must share its AudioContext's rate in some browsers).  A Kaiser-windowed sinc
// interpolator, low-pass at 0.9 of the lower Nyquist frequency, 24 zero crossings on each side
// (Kaiser beta 9: stop band about -90 dB), the kernel tabulated at 1/512 of an input sample and
// interpolated linearly.  Blocks of any size in; the output does not depend on the block sizes.
// Output sample n is the signal at input instant n * inRate / outRate (as scipy's resample_poly aligns
// them); the signal is zero before its start and after its end.

function besselI0(x) {
  let sum = 1;
  let term = 1;
  for (let k = 1; k < 60; k++) {
    term *= (x / (2 * k)) ** 2;
    sum += term;
    if (term < 1e-17 * sum) break;
  }
  return sum;
}

const TABLE_RES = 512;

export class Resampler {
  constructor(inRate, outRate, { zeros = 24, beta = 9.0, cutoff = 0.9 } = {}) {
    if (!(inRate > 0 && outRate > 0)) throw new RangeError(`sample rates must be positive, got ${inRate} and ${outRate}`);
    this.step = inRate / outRate; // input samples per output sample
    const fc = (cutoff * Math.min(1, outRate / inRate)) / 2; // cut-off in cycles per input sample
    this.half = Math.ceil(zeros / (2 * fc)); // taps on each side, in input samples
    const n = this.half * TABLE_RES + 2;
    this.table = new Float64Array(n);
    const i0 = besselI0(beta);
    for (let i = 0; i < n; i++) {
      const d = i / TABLE_RES;
      const r = d / this.half;
      if (r >= 1) continue;
      const x = 2 * fc * d;
      const sinc = x === 0 ? 1 : Math.sin(Math.PI * x) / (Math.PI * x);
      this.table[i] = 2 * fc * sinc * (besselI0(beta * Math.sqrt(1 - r * r)) / i0);
    }
    this.buf = new Float32Array(0); // input samples [bufStart, bufStart + buf.length)
    this.bufStart = 0;
    this.total = 0; // input samples received
    this.next = 0; // next output sample
  }

  _kernel(d) {
    const a = Math.abs(d) * TABLE_RES;
    const i = Math.floor(a);
    if (i >= this.table.length - 1) return 0;
    return this.table[i] + (a - i) * (this.table[i + 1] - this.table[i]);
  }

  _run(final) {
    const out = [];
    for (;;) {
      const t = this.next * this.step;
      if (final ? t >= this.total : Math.floor(t + this.half) >= this.total) break;
      const lo = Math.max(Math.ceil(t - this.half), this.bufStart);
      const hi = Math.min(Math.floor(t + this.half), this.total - 1);
      let s = 0;
      for (let i = lo; i <= hi; i++) s += this.buf[i - this.bufStart] * this._kernel(t - i);
      out.push(s);
      this.next++;
    }
    const drop = Math.min(Math.max(0, Math.ceil(this.next * this.step - this.half) - this.bufStart), this.buf.length);
    if (drop) {
      this.buf = this.buf.slice(drop);
      this.bufStart += drop;
    }
    return Float32Array.from(out);
  }

  /** Add input samples; returns the output samples they determine. */
  write(samples) {
    const grown = new Float32Array(this.buf.length + samples.length);
    grown.set(this.buf);
    grown.set(samples, this.buf.length);
    this.buf = grown;
    this.total += samples.length;
    return this._run(false);
  }

  /** End of the input; returns the remaining output samples (ceil(n * outRate / inRate) in all). */
  close() {
    return this._run(true);
  }
}
