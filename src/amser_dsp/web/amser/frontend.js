// The front end of amser_dsp (docs/frontend.md) for the configs the page uses: the `whisper` preset's
// recipe (trailing silence, reflect centre padding, periodic Hann, FFT, Slaney Mel filter bank, log10,
// max - dynamic_range clamp, (x + offset) * scale).  A port of amser_dsp.frontend (the NumPy reference):
// windows and filter banks are built with the same formulas in float64 and rounded to float32 as the
// reference rounds them; the spectrum and Mel sums run in float64, so results agree with the reference's
// float32 arithmetic to about 1e-5 (tested in a real browser against Python, tolerance 1e-3).

import { RealFFT } from "./fft.js";

export class AmserError extends Error {
  constructor(message) {
    super(message);
    this.name = "AmserError";
  }
}

const f32 = Math.fround;

// The fields of a FeatureConfig this port implements, with the values it supports.
const SUPPORTED = {
  preemphasis: [0],
  remove_dc: [false],
  input_scale: [1],
  window: ["hann", "hamming"],
  padding: ["center", "snip"],
  pad_mode: ["reflect"],
  power: [2],
  mel_triangles: ["hz"],
  mel_scale: ["slaney", "htk"],
  mel_norm: ["slaney", null],
  log: ["log10", "ln"],
};

/** Check that `config` (a FeatureConfig.to_dict()) is one this port computes; throw AmserError if not. */
export function checkConfig(config) {
  for (const [key, allowed] of Object.entries(SUPPORTED)) {
    if (!allowed.includes(config[key])) {
      throw new AmserError(`config ${key}=${JSON.stringify(config[key])} is not supported on the page; expected one of ${JSON.stringify(allowed)}`);
    }
  }
  if (config.version !== 1) throw new AmserError(`config version ${config.version} is not supported; expected 1`);
  if (config.n_fft < config.frame_length) {
    throw new AmserError(`n_fft=${config.n_fft} is shorter than the frame length ${config.frame_length}`);
  }
  return config;
}

// ------------------------------------------------------------------ filter bank and window
function hzToMel(hz, scale) {
  if (scale === "htk") return 2595.0 * Math.log10(1.0 + hz / 700.0);
  const fSp = 200.0 / 3;
  const minLogHz = 1000.0;
  const minLogMel = minLogHz / fSp;
  const logstep = Math.log(6.4) / 27.0;
  return hz >= minLogHz ? minLogMel + Math.log(Math.max(hz, minLogHz) / minLogHz) / logstep : hz / fSp;
}

function melToHz(mel, scale) {
  if (scale === "htk") return 700.0 * (10.0 ** (mel / 2595.0) - 1.0);
  const fSp = 200.0 / 3;
  const minLogHz = 1000.0;
  const minLogMel = minLogHz / fSp;
  const logstep = Math.log(6.4) / 27.0;
  return mel >= minLogMel ? minLogHz * Math.exp(logstep * (Math.max(mel, minLogMel) - minLogMel)) : fSp * mel;
}

/**
 * Triangular Mel filter bank, float32 values, as amser_dsp.filterbank.mel_filterbank builds it.
 * Returns {weights: Float32Array (n_mels * n_bins, row-major), lo, hi: first and one-past-last nonzero bin of each band}.
 */
export function melFilterbank(config) {
  const sr = config.sample_rate;
  const nFft = config.n_fft;
  const nMels = config.n_mels;
  const fMin = config.f_min;
  const fMax = config.f_max === null ? sr / 2 : config.f_max;
  const scale = config.mel_scale;
  const nBins = Math.floor(nFft / 2) + 1;
  // numpy.linspace: start + i * step, and exactly `stop` at the end.
  const m0 = hzToMel(fMin, scale);
  const m1 = hzToMel(fMax, scale);
  const count = nMels + 2;
  const step = (m1 - m0) / (count - 1);
  const edgesMel = new Float64Array(count);
  for (let i = 0; i < count; i++) edgesMel[i] = m0 + i * step;
  edgesMel[count - 1] = m1;
  const edges = edgesMel.map((m) => melToHz(m, scale));
  const weights = new Float32Array(nMels * nBins);
  const lo = new Int32Array(nMels);
  const hi = new Int32Array(nMels);
  for (let b = 0; b < nMels; b++) {
    const left = edges[b];
    const centre = edges[b + 1];
    const right = edges[b + 2];
    const norm = config.mel_norm === "slaney" ? 2.0 / (edges[b + 2] - edges[b]) : 1.0;
    lo[b] = nBins;
    hi[b] = 0;
    for (let k = 0; k < nBins; k++) {
      const x = (k * sr) / nFft;
      const rising = (x - left) / (centre - left);
      const falling = (right - x) / (right - centre);
      let w = Math.max(0.0, Math.min(rising, falling));
      if (config.mel_norm === "slaney") w *= norm;
      weights[b * nBins + k] = w;
      if (weights[b * nBins + k] !== 0) {
        lo[b] = Math.min(lo[b], k);
        hi[b] = k + 1;
      }
    }
    if (hi[b] === 0) lo[b] = 0;
  }
  return { weights, lo, hi, nBins };
}

/** The analysis window (float32 values), as amser_dsp.frontend.window builds it. */
export function analysisWindow(config) {
  const length = config.frame_length;
  const m = config.periodic_window ? length + 1 : length;
  const denom = Math.max(m - 1, 1);
  const w = new Float32Array(length);
  for (let n = 0; n < length; n++) {
    const c = Math.cos((2 * Math.PI * n) / denom);
    w[n] = config.window === "hann" ? 0.5 - 0.5 * c : 0.54 - 0.46 * c;
  }
  return w;
}

/** Frames `config` makes from `n` samples (FeatureConfig.num_frames). */
export function numFrames(config, n) {
  const pad = config.padding === "center" ? Math.floor(config.frame_length / 2) : 0;
  const padded = n + config.trailing_silence + 2 * pad;
  if (n === 0 || padded < config.frame_length) return 0;
  const frames = 1 + Math.floor((padded - config.frame_length) / config.hop_length);
  return Math.max(0, frames - (config.drop_last_frame ? 1 : 0));
}

// ------------------------------------------------------------------ per-frame stages
class FrameAnalyser {
  constructor(config) {
    this.config = config;
    this.window = analysisWindow(config);
    this.bank = melFilterbank(config);
    this.fft = new RealFFT(config.n_fft);
    this.frame = new Float64Array(config.n_fft);
    this.spectrum = new Float64Array(this.bank.nBins);
  }

  /** Mel energies of the frame starting at `start` in `signal`, into out[band * stride + column]. */
  energies(signal, start, out, column, stride) {
    const L = this.config.frame_length;
    const frame = this.frame;
    const win = this.window;
    for (let i = 0; i < L; i++) frame[i] = signal[start + i] * win[i];
    const spec = this.fft.power(frame, this.spectrum);
    const { weights, lo, hi, nBins } = this.bank;
    for (let b = 0; b < lo.length; b++) {
      let e = 0;
      const row = b * nBins;
      for (let k = lo[b]; k < hi[b]; k++) e += weights[row + k] * spec[k];
      out[b * stride + column] = e;
    }
  }
}

/**
 * The log stage (amser_dsp.frontend.log_compress) of energies `mel` (n_mels x n, row-major Float64Array):
 * log(max(E, floor)), the clamp at peak - dynamic_range over this block, then (x + offset) * scale.
 * Returns float32 features (n_mels x n, row-major).
 */
export function compress(mel, config) {
  const floor = f32(config.log_floor);
  const ln10 = config.log === "log10";
  const out = new Float32Array(mel.length);
  let peak = -Infinity;
  for (let i = 0; i < mel.length; i++) {
    const v = ln10 ? Math.log10(Math.max(mel[i], floor)) : Math.log(Math.max(mel[i], floor));
    out[i] = v;
    if (out[i] > peak) peak = out[i];
  }
  const lowest = config.dynamic_range === null ? -Infinity : f32(peak - f32(config.dynamic_range));
  const offset = f32(config.log_offset);
  const scale = f32(config.log_scale);
  for (let i = 0; i < out.length; i++) out[i] = f32(f32(Math.max(out[i], lowest) + offset) * scale);
  return out;
}

/**
 * Audio in blocks of any size, feature chunks of `chunkFrames` frames out (a port of
 * amser_dsp.frontend.streaming.ChunkedFeatures): the framing state carries across blocks, so the
 * frames equal the offline ones; the dynamic-range clamp uses each chunk's own maximum (a single chunk:
 * the whole utterance's, as amser_dsp.features).  Chunks are {features: Float32Array (n_mels x n,
 * row-major), nFrames}.
 */
export class FeatureStream {
  constructor(config, chunkFrames = Infinity) {
    this.config = checkConfig(config);
    if (!(chunkFrames === Infinity || (Number.isInteger(chunkFrames) && chunkFrames >= 1))) {
      throw new AmserError(`chunkFrames=${chunkFrames} is invalid: expected a positive integer`);
    }
    this.chunkFrames = chunkFrames;
    this.analyser = new FrameAnalyser(config);
    this.pad = config.padding === "center" ? Math.floor(config.frame_length / 2) : 0;
    this.nSamples = 0;
    this.finished = false;
    this.headDone = this.pad === 0;
    this.buf = new Float32Array(1 << 14); // padded-signal samples [bufStart, bufStart + bufLen)
    this.bufLen = 0;
    this.bufStart = 0;
    this.done = 0; // frames computed
    this.emitted = 0;
    this.pending = []; // Float64Array columns (one per frame) not yet emitted
  }

  _push(samples) {
    if (this.bufLen + samples.length > this.buf.length) {
      const grown = new Float32Array(Math.max(2 * this.buf.length, this.bufLen + samples.length));
      grown.set(this.buf.subarray(0, this.bufLen));
      this.buf = grown;
    }
    this.buf.set(samples, this.bufLen);
    this.bufLen += samples.length;
  }

  /** Add samples (Float32Array at the config's rate); returns the chunks they complete. */
  accept(samples) {
    if (this.finished) throw new AmserError("accept() after finish(): start a new stream");
    if (!samples.length) return [];
    for (let i = 0; i < samples.length; i++) {
      if (!Number.isFinite(samples[i])) throw new AmserError("audio contains NaN or infinite samples");
    }
    this.nSamples += samples.length;
    this._push(samples);
    this._padStart(false);
    this._compute(false);
    return this._emit(false);
  }

  /** End of the audio; returns the remaining chunks. */
  finish() {
    if (this.finished) return [];
    this.finished = true;
    if (this.nSamples === 0) throw new AmserError("the stream ended without any audio");
    if (this.config.trailing_silence) this._push(new Float32Array(this.config.trailing_silence));
    this._padStart(true);
    if (this.pad) {
      // Reflect the last pad + 1 samples: x[m - 2 - j].
      const tail = new Float32Array(this.pad);
      for (let j = 0; j < this.pad; j++) tail[j] = this.buf[this.bufLen - 2 - j];
      this._push(tail);
    }
    this._compute(true);
    return this._emit(true);
  }

  _padStart(final) {
    if (this.headDone) return;
    const p = this.pad;
    if (this.bufLen <= p) {
      if (!final) return;
      throw new AmserError(`reflect padding needs more than ${p} samples, got ${this.bufLen}`);
    }
    // Left padding reflects samples 1 .. p: padded[p - 1 - j] = x[j + 1].
    const head = new Float32Array(p + this.bufLen);
    for (let j = 0; j < p; j++) head[p - 1 - j] = this.buf[j + 1];
    head.set(this.buf.subarray(0, this.bufLen), p);
    this.buf = head;
    this.bufLen = head.length;
    this.headDone = true;
  }

  _compute(final) {
    if (!this.headDone) return;
    const cfg = this.config;
    const end = this.bufStart + this.bufLen;
    let ready = end >= cfg.frame_length ? 1 + Math.floor((end - cfg.frame_length) / cfg.hop_length) : 0;
    if (final) ready = Math.min(ready, numFrames(cfg, this.nSamples));
    const nMels = cfg.n_mels;
    for (; this.done < ready; this.done++) {
      const column = new Float64Array(nMels);
      this.analyser.energies(this.buf, this.done * cfg.hop_length - this.bufStart, column, 0, 1);
      this.pending.push(column);
    }
    const drop = Math.max(0, Math.min(this.done * cfg.hop_length - this.bufStart, this.bufLen));
    if (drop) {
      this.buf.copyWithin(0, drop, this.bufLen);
      this.bufLen -= drop;
      this.bufStart += drop;
    }
  }

  _emit(final) {
    const out = [];
    const size = this.chunkFrames;
    while (this.pending.length >= size || (final && this.pending.length)) {
      const cols = this.pending.splice(0, Math.min(size, this.pending.length));
      const n = cols.length;
      const nMels = this.config.n_mels;
      const mel = new Float64Array(nMels * n);
      for (let t = 0; t < n; t++) for (let b = 0; b < nMels; b++) mel[b * n + t] = cols[t][b];
      this.emitted += n;
      out.push({ features: compress(mel, this.config), nFrames: n });
    }
    return out;
  }
}

/** Features of a whole signal (amser_dsp.features): Float32Array (n_mels x n_frames, row-major) and the shape. */
export function features(samples, config) {
  const stream = new FeatureStream(config, Infinity);
  const chunks = [...stream.accept(samples), ...stream.finish()];
  const nFrames = chunks.reduce((a, c) => a + c.nFrames, 0);
  return { features: chunks.length ? chunks[0].features : new Float32Array(0), nMels: config.n_mels, nFrames };
}
