// The kltdct codec's encoder (amser_dsp.codec.kltdct; docs/format.md, "kltdct"), a port:
//   Z = K^T (X - mu), per block of B frames (the last completed by repeating the last frame) the
//   orthonormal DCT-II along time, q = rint(C / S) with S[k, j] = 2^(s/8) / sqrt(W[k, j]) for the
//   coefficients whose context scale_index - s is at least CODED_MIN_CONTEXT, coded with static rANS.
// The reference computes the transform in float32 with BLAS; here every product is summed in float64
// and rounded to float32 where the reference stores a float32, and the division and rounding
// (float32 C / S, round half to even) are exact, so the symbols equal Python's except where a
// coefficient lies within float32 rounding of a quantiser cell boundary (measured in the browser tests).

import { AmserError } from "./frontend.js";
import { ransEncode } from "./rans.js";

const f32 = Math.fround;

// 2 ** (k / 8), k = 0..7, as Python computes 2.0 ** (k * 0.125) (correctly rounded): the quantiser step
// 2 ** (s / 8) is one of these times a power of two, so it equals kltdct.step_size(s) exactly.
const OCTAVE_EIGHTHS = [
  1.0, 1.0905077326652577, 1.189207115002721, 1.2968395546510096, 1.4142135623730951, 1.5422108254079407,
  1.681792830507429, 1.8340080864093424,
];

export function stepSize(stepIndex) {
  const k = ((stepIndex % 8) + 8) % 8;
  return OCTAVE_EIGHTHS[k] * 2 ** ((stepIndex - k) / 8);
}

/** numpy.rint (and Python's round()): round half to even. */
export function rint(v) {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function dctMatrix(n) {
  // Orthonormal DCT-II, rows are basis functions, float32 as kltdct._dct.
  const d = new Float32Array(n * n);
  for (let k = 0; k < n; k++) {
    for (let m = 0; m < n; m++) {
      let v = Math.cos((Math.PI * (2 * m + 1) * k) / (2 * n)) * Math.sqrt(2.0 / n);
      if (k === 0) v /= Math.sqrt(2.0);
      d[k * n + m] = v;
    }
  }
  return d;
}

/**
 * Trained tables: `asset` is the "kltdct" object of tables.json.
 */
export class KltDctTables {
  constructor(asset, decodeArray) {
    this.name = asset.name;
    this.sha256 = asset.sha256;
    this.configDigest = asset.config_digest;
    this.block = asset.block;
    this.nMels = asset.n_mels;
    this.codedMinContext = asset.coded_min_context;
    this.stepIndexMin = asset.step_index_min;
    this.stepIndexMax = asset.step_index_max;
    this.defaultStep = asset.default_step;
    this.mean = decodeArray(asset.mean);
    this.basis = decodeArray(asset.basis); // (n_mels, n_mels) row-major: basis[m * n + k], component k
    this.weight = decodeArray(asset.weight); // (n_mels, block)
    this.scaleIndex = decodeArray(asset.scale_index); // (n_mels, block)
    const n = this.nMels;
    const b = this.block;
    if (this.mean.length !== n || this.basis.length !== n * n || this.weight.length !== n * b || this.scaleIndex.length !== n * b) {
      throw new AmserError("kltdct tables have the wrong shapes");
    }
    this.dct = dctMatrix(b);
    // The transposed basis (components by rows) for a contiguous inner loop.
    this.basisT = new Float64Array(n * n);
    for (let m = 0; m < n; m++) for (let k = 0; k < n; k++) this.basisT[k * n + m] = this.basis[m * n + k];
    this.plans = new Map();
  }

  /** Which coefficients a step index codes, their steps and entropy tables (kltdct._coding_plan). */
  plan(stepIndex, scaleIndexMin, scaleIndexMax) {
    let p = this.plans.get(stepIndex);
    if (p) return p;
    const n = this.nMels;
    const b = this.block;
    const base = stepSize(stepIndex);
    const coded = [];
    const step = [];
    const table = [];
    for (let k = 0; k < n; k++) {
      for (let j = 0; j < b; j++) {
        const ctx = this.scaleIndex[k * b + j] - stepIndex;
        if (ctx >= this.codedMinContext) {
          coded.push(k * b + j);
          step.push(f32(base / Math.sqrt(this.weight[k * b + j])));
          table.push(Math.min(ctx, scaleIndexMax) - scaleIndexMin);
        }
      }
    }
    const components = [...new Set(coded.map((i) => Math.floor(i / b)))];
    const componentRow = coded.map((i) => components.indexOf(Math.floor(i / b))); // row of each coded coefficient's component
    p = {
      coded: Int32Array.from(coded),
      step: Float32Array.from(step),
      table: Int32Array.from(table),
      components: Int32Array.from(components),
      componentRow: Int32Array.from(componentRow),
    };
    this.plans.set(stepIndex, p);
    return p;
  }
}

/** The kltdct encoder at a fixed step index (the codec's `step` option; the default is the tables' default). */
export class KltDctEncoder {
  constructor(tables, laplace, { step } = {}) {
    this.tables = tables;
    this.laplace = laplace;
    this.step = step === undefined || step === null ? tables.defaultStep : step;
    if (!Number.isInteger(this.step) || this.step < tables.stepIndexMin || this.step > tables.stepIndexMax) {
      throw new AmserError(`step=${step} is invalid: expected an integer ${tables.stepIndexMin} to ${tables.stepIndexMax}`);
    }
  }

  /** The codec's get_config() without unset targets, as the header carries it. */
  config() {
    return { codec: "kltdct", step: this.step, tables: this.tables.name, tables_sha256: this.tables.sha256.slice(0, 16) };
  }

  /**
   * The coded coefficients of features (n_mels x T, row-major Float32Array) in symbol order, Float32Array
   * (n_coded, n_blocks): kltdct._picked(kltdct.analyse(x)), computed for the coded coefficients only (the
   * same sums, so the same values as computing all of them).
   */
  codedCoefficients(x, T, plan) {
    const { nMels: n, block: b, mean, basisT, dct } = this.tables;
    const nBlocks = Math.ceil(T / b);
    const L = nBlocks * b;
    // Frame-major centred features, float32 as the reference subtracts in float32.
    const xt = new Float32Array(T * n);
    for (let m = 0; m < n; m++) {
      const mu = mean[m];
      for (let t = 0; t < T; t++) xt[t * n + m] = x[m * T + t] - mu;
    }
    // z = K^T (X - mu) for the components with a coded coefficient, the last frame repeated to a whole block.
    const comps = plan.components;
    const z = new Float32Array(comps.length * L);
    for (let ci = 0; ci < comps.length; ci++) {
      const row = comps[ci] * n;
      const zo = ci * L;
      for (let t = 0; t < T; t++) {
        const off = t * n;
        let s = 0;
        for (let m = 0; m < n; m++) s += basisT[row + m] * xt[off + m];
        z[zo + t] = s;
      }
      for (let t = T; t < L; t++) z[zo + t] = z[zo + T - 1];
    }
    // The DCT of each block, for the coded time-DCT indices only.
    const coeffs = new Float32Array(plan.coded.length * nBlocks);
    for (let c = 0; c < plan.coded.length; c++) {
      const zo = plan.componentRow[c] * L;
      const d = (plan.coded[c] % b) * b;
      for (let blk = 0; blk < nBlocks; blk++) {
        const off = zo + blk * b;
        let s = 0;
        for (let m = 0; m < b; m++) s += z[off + m] * dct[d + m];
        coeffs[c * nBlocks + blk] = s;
      }
    }
    return { coeffs, nBlocks };
  }

  /** One chunk's payload: int8 step | float32 min | float32 max | rANS stream. */
  encodeChunk(x, T) {
    if (x.length !== this.tables.nMels * T) throw new AmserError(`features of ${x.length} values are not ${this.tables.nMels} x ${T}`);
    const lt = this.laplace;
    const plan = this.tables.plan(this.step, lt.scaleIndexMin, lt.scaleIndexMax);
    const { coeffs, nBlocks } = this.codedCoefficients(x, T, plan);
    const nCoded = plan.coded.length;
    const q = new Int32Array(nCoded * nBlocks);
    const tab = new Int32Array(nCoded * nBlocks);
    for (let c = 0; c < nCoded; c++) {
      const s = plan.step[c];
      for (let blk = 0; blk < nBlocks; blk++) {
        q[c * nBlocks + blk] = rint(f32(coeffs[c * nBlocks + blk] / s));
        tab[c * nBlocks + blk] = plan.table[c];
      }
    }
    let lo = Infinity;
    let hi = -Infinity;
    for (let i = 0; i < x.length; i++) {
      if (x[i] < lo) lo = x[i];
      if (x[i] > hi) hi = x[i];
    }
    const stream = ransEncode(q, tab, lt);
    const payload = new Uint8Array(9 + stream.length);
    const view = new DataView(payload.buffer);
    view.setInt8(0, this.step);
    view.setFloat32(1, lo, true);
    view.setFloat32(5, hi, true);
    payload.set(stream, 9);
    return payload;
  }
}
