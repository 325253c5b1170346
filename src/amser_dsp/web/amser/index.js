// amser_dsp on the page: features, kltdct encoding and containers, with the shipped tables.
//
//   const amser = await loadAmser("static/tables.json");
//   const feats = amser.features(samples16k);                   // {features, nMels, nFrames}
//   const {container} = amser.encodeAudio(samples16k);          // one container, as amser_dsp.encode_audio
//   const enc = amser.streamEncoder({chunkSeconds: 0.5});       // as amser_dsp.StreamEncoder
//   socket.send(enc.write(block)); ... socket.send(enc.close());

import { ContainerWriter, canonicalJson, concat } from "./container.js";
import { AmserError, FeatureStream, checkConfig, features } from "./frontend.js";
import { KltDctEncoder, KltDctTables, rint } from "./kltdct.js";
import { LaplaceTables } from "./rans.js";

export { AmserError, concat };

const ARRAYS = { float32: Float32Array, float16: Uint16Array, int16: Int16Array, int32: Int32Array, uint8: Uint8Array };

/** IEEE half-precision bit patterns as float32 values (every half is exact in float32). */
function halfToFloat(bits) {
  const out = new Float32Array(bits.length);
  for (let i = 0; i < bits.length; i++) {
    const h = bits[i];
    const sign = h & 0x8000 ? -1 : 1;
    const exp = (h >> 10) & 0x1f;
    const frac = h & 0x3ff;
    if (exp === 0) out[i] = sign * 2 ** -24 * frac;
    else if (exp === 31) out[i] = frac ? NaN : sign * Infinity;
    else out[i] = sign * 2 ** (exp - 15) * (1 + frac / 1024);
  }
  return out;
}

/**
 * A typed array from {dtype, shape, data: base64 of the little-endian values} (amser_dsp.server.web.encoded_array:
 * the arrays of tables.json and the decoded features of /v1/analyze?features=).  float16 comes back as float32.
 */
export function decodeArray({ dtype, shape, data }) {
  const Type = ARRAYS[dtype];
  if (!Type) throw new AmserError(`unknown array dtype ${dtype}`);
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new AmserError("this page needs a little-endian machine");
  const raw = atob(data);
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  const stored = new Type(bytes.buffer);
  const out = dtype === "float16" ? halfToFloat(stored) : stored;
  const size = shape.reduce((a, b) => a * b, 1);
  if (out.length !== size) throw new AmserError(`array of shape ${shape} holds ${out.length} values`);
  return out;
}

export class Amser {
  /** @param {object} asset the parsed tables.json (amser_dsp.server.web.build_asset) */
  constructor(asset) {
    if (asset.format !== 1) throw new AmserError(`tables.json format ${asset.format} is not supported`);
    this.asset = asset;
    this.configJson = asset.config.json;
    this.config = checkConfig(JSON.parse(this.configJson));
    this.dictionary = decodeArray(asset.header_dictionary);
    this.laplace = new LaplaceTables(asset.rans, decodeArray);
    this.tables = new KltDctTables(asset.kltdct, decodeArray);
    if (this.tables.nMels !== this.config.n_mels) throw new AmserError("tables and config differ in n_mels");
    this.maxChunkFrames = asset.max_chunk_frames;
    this.sampleRate = this.config.sample_rate;
    this.framesPerSecond = this.config.sample_rate / this.config.hop_length;
  }

  /**
   * Run features and encoding once on a second of noise, so that the first recording does not wait for
   * the JavaScript engine to compile the hot loops (measured: the first 10 s took twice the later ones).
   * Returns the milliseconds it took.
   */
  warmUp() {
    const t0 = performance.now();
    const x = new Float32Array(this.sampleRate);
    let seed = 1;
    for (let i = 0; i < x.length; i++) {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      x[i] = (seed / 2147483648 - 0.5) * 0.1;
    }
    this.encodeAudio(x);
    this.encodeAudio(x, { chunkSeconds: 0.5 });
    return performance.now() - t0;
  }

  /** Log-Mel features of whole audio (Float32Array at the config's rate), as amser_dsp.features. */
  features(samples) {
    return features(samples, this.config);
  }

  /** A stream encoder (amser_dsp.StreamEncoder); chunkSeconds null: one chunk per 5 minutes. */
  streamEncoder({ chunkSeconds = null, step } = {}) {
    return new StreamEncoder(this, chunkSeconds, step);
  }

  /** One container of whole audio (amser_dsp.encode_audio) with its features and timings. */
  encodeAudio(samples, { chunkSeconds = null, step } = {}) {
    const enc = this.streamEncoder({ chunkSeconds, step });
    const container = concat([enc.write(samples), enc.close()]);
    return { container, chunks: enc.chunks, timings: enc.timings, nFrames: enc.nFrames };
  }
}

export class StreamEncoder {
  constructor(amser, chunkSeconds, step) {
    let frames = amser.maxChunkFrames;
    if (chunkSeconds !== null && chunkSeconds !== undefined) {
      if (!(typeof chunkSeconds === "number" && chunkSeconds > 0)) {
        throw new AmserError(`chunkSeconds=${chunkSeconds} is invalid: expected a positive number of seconds`);
      }
      frames = Math.max(1, rint((chunkSeconds * amser.config.sample_rate) / amser.config.hop_length));
    }
    this.amser = amser;
    this.chunkFrames = frames;
    this.codec = new KltDctEncoder(amser.tables, amser.laplace, { step });
    this.stream = new FeatureStream(amser.config, frames);
    this.writer = new ContainerWriter(amser.configJson, canonicalJson(this.codec.config()), amser.config.n_mels, amser.dictionary);
    this.chunks = []; // {features, nFrames} of every chunk written
    this.timings = { features_ms: 0, encode_ms: 0 };
    this.nFrames = 0;
  }

  get closed() {
    return this.writer.closed;
  }

  _records(chunks) {
    const parts = [];
    for (const c of chunks) {
      const t0 = performance.now();
      parts.push(this.writer.write(c.nFrames, this.codec.encodeChunk(c.features, c.nFrames)));
      this.timings.encode_ms += performance.now() - t0;
      this.chunks.push(c);
      this.nFrames += c.nFrames;
    }
    return parts;
  }

  /** Add audio; returns the bytes ready (the header on the first call, then completed chunks). */
  write(samples) {
    if (this.closed) throw new AmserError("write() after close()");
    const t0 = performance.now();
    const chunks = this.stream.accept(samples);
    this.timings.features_ms += performance.now() - t0;
    return concat([this.writer.start(), ...this._records(chunks)]);
  }

  /** End of the recording: the last chunk and the end record. */
  close() {
    if (this.closed) return new Uint8Array(0);
    const t0 = performance.now();
    const chunks = this.stream.finish();
    this.timings.features_ms += performance.now() - t0;
    return concat([...this._records(chunks), this.writer.close()]);
  }
}

/** Fetch tables.json and build the page's encoder. */
export async function loadAmser(url) {
  const response = await fetch(url);
  if (!response.ok) throw new AmserError(`could not load the codec tables (${url}: HTTP ${response.status})`);
  return new Amser(await response.json());
}
