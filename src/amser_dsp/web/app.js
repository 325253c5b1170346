// The page: record or choose a file, compute features and containers here, show what the server understood.
// The codec and front end are in ./amser/ (a port of amser_dsp); this file is the user interface.
// window.amserPage is the page's state, read by the browser tests.

import { AmserError, concat, decodeArray, loadAmser } from "./amser/index.js";
import { Resampler } from "./amser/resample.js";

const $ = (id) => document.getElementById(id);

const KEY_STORAGE = "amser-api-key";
const LIVE_CHUNK_SECONDS = 0.5;

const state = {
  amser: null,
  info: null,
  key: sessionStorage.getItem(KEY_STORAGE) || "",
  recording: null,
  busy: false,
  analysis: null, // the last analysis: {samples, container, features, nFrames, response, timings}
  live: null, // the last live stream: {messages, bytes, text, end}
  errors: [],
  stepChosen: false, // the user picked a codec step: the server's default no longer moves it
};

// ---------------------------------------------------------------------------- messages
class UserError extends Error {}

function showError(message) {
  state.errors.push(message);
  const box = $("error");
  box.textContent = message;
  box.hidden = false;
}

function clearError() {
  $("error").hidden = true;
  $("error").textContent = "";
}

function setBusy(text) {
  $("busy").textContent = text || "";
}

function authHeaders() {
  return state.key ? { Authorization: `Bearer ${state.key}` } : {};
}

/** A UserError from a non-2xx response of the service (its JSON envelope: {error: {code, message}}). */
async function serverError(response) {
  let code = "";
  let message = `HTTP ${response.status}`;
  try {
    const body = await response.json();
    code = body.error?.code || "";
    message = body.error?.message || message;
  } catch {
    // not JSON: keep the status
  }
  if (response.status === 401) {
    $("api-key").focus();
    return new UserError(
      state.key
        ? "The server refused this API key. Check it and press “Use key”."
        : "The server needs an API key: enter it above and press “Use key”.",
    );
  }
  if (response.status === 503) {
    const wait = response.headers.get("Retry-After");
    return new UserError(`The server is busy (${message}).${wait ? ` Try again in ${wait} s.` : " Try again shortly."}`);
  }
  if (response.status === 413) return new UserError(`Too much for the server: ${message}`);
  if (response.status === 504) return new UserError(`The server took too long: ${message}`);
  return new UserError(`The server could not use the container (${code || response.status}): ${message}`);
}

// ---------------------------------------------------------------------------- server
async function loadInfo() {
  let response;
  try {
    response = await fetch("v1/info", { headers: authHeaders() });
  } catch {
    throw new UserError("Cannot reach the server. Is `amser serve` running?");
  }
  if (response.status === 401 || response.status === 503) throw await serverError(response);
  if (!response.ok) throw new UserError(`This address does not answer as an amser server does (GET v1/info: HTTP ${response.status}).`);
  const info = await response.json();
  state.info = info;
  if (!(info.presets || []).includes("whisper")) throw new UserError("This server does not read the whisper preset's features.");
  const parts = [`Connected: ${info.model}`, `format ${info.format}`];
  const needsKey = info.limits?.auth === "api-key";
  parts.push(needsKey ? (state.key ? "API key entered" : "needs an API key: enter it below") : "no API key needed");
  parts.push(info.stream ? "live transcript available" : "no live transcript on this server");
  const emotion = info.emotion;
  parts.push(emotion ? `emotion: ${emotion.status}` : "no emotion classifier on this server");
  $("server-status").textContent = parts.join(" · ");
  if (needsKey && !state.key) $("api-key").focus();
  $("live").disabled = !info.stream;
  if (!info.stream) $("live").checked = false;
  followServerCodec(info.default_codec);
  return info;
}

// The server names the step its recogniser needs (Whisper base hears finer detail than tiny.en): the page
// encodes at it until the user picks another step.
const SERVER_DEFAULT = " · this server's default";
function followServerCodec(codec) {
  if (!codec || codec.codec !== "kltdct" || !Number.isInteger(codec.step)) return;
  const select = $("step");
  let option = [...select.options].find((o) => Number(o.value) === codec.step);
  if (!option) {
    option = new Option(`${codec.step}`, String(codec.step));
    select.add(option);
  }
  for (const o of select.options) o.textContent = o.textContent.replace(SERVER_DEFAULT, "");
  option.textContent += SERVER_DEFAULT;
  if (!state.stepChosen) select.value = String(codec.step);
}

// ---------------------------------------------------------------------------- drawing
const COLOURS = [
  [0, 0, 4],
  [59, 15, 112],
  [140, 41, 129],
  [222, 73, 104],
  [254, 159, 109],
  [252, 253, 191],
]; // magma, from dark to light

function colour(v) {
  const x = Math.min(Math.max(v, 0), 1) * (COLOURS.length - 1);
  const i = Math.min(Math.floor(x), COLOURS.length - 2);
  const f = x - i;
  return COLOURS[i].map((c, k) => c + f * (COLOURS[i + 1][k] - c));
}

/** Draw features (n_mels x n, row-major) on a canvas, low bands at the bottom, values lo..hi mapped to colours. */
function drawSpectrogram(canvas, feats, nMels, n, lo, hi, label) {
  const width = Math.max(1, Math.min(n, 4000));
  canvas.width = width;
  canvas.height = nMels;
  const ctx = canvas.getContext("2d");
  const img = ctx.createImageData(width, nMels);
  for (let x = 0; x < width; x++) {
    const t = Math.floor((x * n) / width);
    for (let b = 0; b < nMels; b++) {
      const [r, g, bl] = colour((feats[b * n + t] - lo) / (hi - lo || 1));
      const o = ((nMels - 1 - b) * width + x) * 4;
      img.data[o] = r;
      img.data[o + 1] = g;
      img.data[o + 2] = bl;
      img.data[o + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
  canvas.setAttribute("aria-label", label);
}

/** The decoded features of an /v1/analyze?features=float16 answer, or null. */
function serverFeatures(body) {
  const f = body.features;
  if (!f || !Array.isArray(f.shape)) return null;
  return { values: decodeArray(f), nMels: f.shape[0], nFrames: f.shape[1] };
}

function fmtBytes(n) {
  return n >= 10000 ? `${(n / 1024).toFixed(1)} KiB` : `${n} B`;
}

function table(id, rows) {
  const body = $(id).tBodies[0];
  body.replaceChildren(
    ...rows.map(([name, value]) => {
      const tr = document.createElement("tr");
      const th = document.createElement("th");
      th.scope = "row";
      th.textContent = name;
      const td = document.createElement("td");
      // Parts of a value ("1546 B", "3.78 kbps") stay whole; a narrow screen wraps between them.
      td.append(
        ...String(value)
          .split(" · ")
          .map((part, i) => {
            const span = document.createElement("span");
            span.textContent = i ? ` · ${part}` : part;
            return span;
          }),
      );
      tr.append(th, td);
      return tr;
    }),
  );
}

function showBytes(seconds, container, liveBytes) {
  const ref = state.amser.asset.reference;
  const pcm = Math.round(seconds * 16000 * 2);
  const opus = Math.round((ref.opus_kbps * 1000 * seconds) / 8);
  const kbps = (b) => ((b * 8) / seconds / 1000).toFixed(2);
  const rows = [[`Container sent (${seconds.toFixed(2)} s of audio)`, `${fmtBytes(container)} · ${kbps(container)} kbps`]];
  if (liveBytes) rows.push([`Live stream (${LIVE_CHUNK_SECONDS} s chunks)`, `${fmtBytes(liveBytes)} · ${kbps(liveBytes)} kbps`]);
  rows.push([`16-bit PCM at 16 kHz`, `${fmtBytes(pcm)} · container is ${((100 * container) / pcm).toFixed(2)}%`]);
  rows.push([
    `Opus ${ref.criterion} (${ref.opus_kbps} kbps, ${ref.source})`,
    `${fmtBytes(opus)} · container is ${((100 * container) / opus).toFixed(1)}%`,
  ]);
  table("bytes", rows);
}

function showEmotion(emotion) {
  const box = $("emotion");
  if (!emotion) {
    const status = state.info?.emotion?.status;
    const p = document.createElement("p");
    p.className = "hint";
    p.textContent = status && status !== "ready" ? `No emotion: the server's classifier is ${status}.` : "No emotion: the server has no emotion classifier.";
    box.replaceChildren(p);
    return;
  }
  const label = document.createElement("p");
  label.className = "emotion-label";
  label.id = "emotion-label";
  label.textContent = emotion.label;
  const bars = document.createElement("div");
  bars.className = "bars"; // read in order: "angry 43.8% happy 24.2% ..."; the bars are decoration
  for (const [name, p] of Object.entries(emotion.probabilities)) {
    const n = document.createElement("span");
    n.textContent = name;
    const bar = document.createElement("div");
    bar.className = "bar";
    bar.style.width = `${(100 * p).toFixed(1)}%`;
    bar.setAttribute("aria-hidden", "true");
    const v = document.createElement("span");
    v.className = "mono";
    v.textContent = `${(100 * p).toFixed(1)}%`;
    bars.append(n, bar, v);
  }
  box.replaceChildren(label, bars);
}

// ---------------------------------------------------------------------------- analysis of whole audio
/** Features, container and /v1/analyze for whole audio at 16 kHz; shows everything. */
async function analyse(samples, live) {
  const amser = state.amser;
  const seconds = samples.length / amser.sampleRate;
  if (samples.length < amser.sampleRate / 10) throw new UserError("The audio is shorter than 0.1 s: record or choose some speech.");
  const step = Number($("step").value);
  const encoded = amser.encodeAudio(samples, { step });
  const nMels = amser.config.n_mels;
  const n = encoded.nFrames;
  const page = encoded.chunks.length === 1 ? encoded.chunks[0].features : joinChunks(encoded.chunks, nMels, n);
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of page) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  drawSpectrogram($("spec-page"), page, nMels, n, lo, hi, `Spectrogram computed on this page: ${n} frames, ${nMels} bands`);
  state.analysis = { samples, container: encoded.container, features: page, nFrames: n, response: null, timings: encoded.timings };
  showBytes(seconds, encoded.container.length, live?.bytes || 0);
  setBusy("Sending the container to the server…");
  const t0 = performance.now();
  let response;
  try {
    response = await fetch("v1/analyze?features=float16", {
      method: "POST",
      body: encoded.container,
      headers: { "Content-Type": "application/octet-stream", ...authHeaders() },
    });
  } catch {
    throw new UserError("Cannot reach the server. Is `amser serve` running?");
  }
  const body = response.ok ? await response.json() : null;
  const roundTrip = performance.now() - t0;
  if (!response.ok) throw await serverError(response);
  state.analysis.response = body;
  setBusy("");
  $("final-text").textContent = body.text.trim() || "(no speech recognised)";
  $("partial-text").textContent = "";
  $("live-transcript").hidden = !live;
  if (live) $("live-transcript").textContent = `Live, while recording: ${live.text.trim() || "(nothing)"}`;
  showEmotion(body.emotion);
  const server = serverFeatures(body);
  if (server && server.nFrames === n) {
    drawSpectrogram($("spec-server"), server.values, nMels, n, lo, hi, `Spectrogram decoded by the server: ${n} frames`);
    let sq = 0;
    let worst = 0;
    for (let i = 0; i < page.length; i++) {
      const d = server.values[i] - page[i];
      sq += d * d;
      worst = Math.max(worst, Math.abs(d));
    }
    $("spec-diff").textContent = `Difference (server minus page): RMS ${Math.sqrt(sq / page.length).toFixed(3)}, largest ${worst.toFixed(3)} (features span ${lo.toFixed(2)} to ${hi.toFixed(2)}).`;
  } else {
    $("spec-diff").textContent = "The server did not return its decoded features.";
  }
  const t = body.timings || {};
  const rows = [
    ["Features (this page)", `${encoded.timings.features_ms.toFixed(1)} ms`],
    ["Encode (this page)", `${encoded.timings.encode_ms.toFixed(1)} ms`],
    ["Network (round trip less server time)", `${Math.max(0, roundTrip - (t.total_ms || 0)).toFixed(1)} ms`],
    ["Server: decode", `${(t.decode_ms ?? 0).toFixed(1)} ms`],
    ["Server: speech recognition", `${(t.asr_ms ?? 0).toFixed(1)} ms`],
  ];
  if (t.emotion_ms !== undefined && t.emotion_ms !== null) rows.push(["Server: emotion", `${t.emotion_ms.toFixed(1)} ms`]);
  rows.push(["Server: total", `${(t.total_ms ?? 0).toFixed(1)} ms`]);
  const lt = live?.end?.timings;
  if (lt?.commit_latency_p50 !== undefined && lt.commit_latency_p50 !== null) {
    rows.push(["Live: words final after (median, 90th percentile)", `${lt.commit_latency_p50.toFixed(2)} s, ${lt.commit_latency_p90.toFixed(2)} s`]);
  }
  table("timings", rows);
  state.analysis.roundTrip = roundTrip;
  return body;
}

function joinChunks(chunks, nMels, n) {
  const out = new Float32Array(nMels * n);
  let t0 = 0;
  for (const c of chunks) {
    for (let b = 0; b < nMels; b++) out.set(c.features.subarray(b * c.nFrames, (b + 1) * c.nFrames), b * n + t0);
    t0 += c.nFrames;
  }
  return out;
}

// ---------------------------------------------------------------------------- live stream
const CLOSE_MESSAGES = {
  4400: "The server could not read the stream",
  4401: "The server needs a valid API key for live transcripts",
  4408: "The stream was idle too long",
  4413: "The recording is too long for the server",
  4415: "The server refused a message",
  4429: "The server is busy: too many live streams. Try again shortly",
  1011: "Speech recognition failed on the server",
};

function openLive(step) {
  const enc = state.amser.streamEncoder({ chunkSeconds: LIVE_CHUNK_SECONDS, step });
  const url = new URL("v1/stream", location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  // Browsers cannot set headers on a WebSocket: the key travels in a same-site cookie for this path only
  // (the service reads it on handshakes from its own origin: amser_dsp.server.web.websocket_key).
  document.cookie = state.key
    ? `amser_api_key=${encodeURIComponent(state.key)}; path=${url.pathname}; SameSite=Strict${location.protocol === "https:" ? "; Secure" : ""}`
    : `amser_api_key=; path=${url.pathname}; max-age=0`;
  const ws = new WebSocket(url);
  ws.binaryType = "arraybuffer";
  const live = { messages: [], bytes: 0, text: "", end: null, error: null };
  state.live = live;
  const queue = [];
  let finished;
  const done = new Promise((resolve) => {
    finished = resolve;
  });
  const send = (bytes) => {
    if (!bytes.length) return;
    live.bytes += bytes.length;
    if (ws.readyState === WebSocket.OPEN) ws.send(bytes);
    else if (ws.readyState === WebSocket.CONNECTING) queue.push(bytes);
  };
  ws.onopen = () => {
    for (const b of queue.splice(0)) ws.send(b);
  };
  ws.onmessage = (event) => {
    let m;
    try {
      m = JSON.parse(event.data);
    } catch {
      return;
    }
    live.messages.push(m);
    if (m.type === "final") {
      live.text += m.text;
      $("final-text").textContent = live.text;
      $("partial-text").textContent = "";
    } else if (m.type === "partial") {
      $("partial-text").textContent = (live.text ? " " : "") + m.text.trim();
    } else if (m.type === "lag") {
      setBusy(`The server is ${m.behind_seconds.toFixed(1)} s behind.`);
    } else if (m.type === "end") {
      live.end = m;
      live.text = m.text;
      $("final-text").textContent = m.text;
      $("partial-text").textContent = "";
    } else if (m.type === "error") {
      live.error = m.error;
    }
  };
  ws.onerror = () => {};
  ws.onclose = (event) => {
    if (!live.end) {
      const why = live.error?.message || event.reason || "the connection closed";
      const lead = CLOSE_MESSAGES[event.code] || "The live transcript stopped";
      live.error = live.error || { code: String(event.code), message: why };
      showError(`${lead}: ${why}`);
    }
    finished(live);
  };
  return {
    write: (samples) => send(enc.write(samples)),
    close: () => {
      send(enc.close());
      // The server answers `end` once it has decoded everything; do not wait for ever if it does not.
      const timeout = setTimeout(() => {
        live.error = live.error || { code: "timeout", message: "no end of the live transcript within 60 s" };
        ws.close();
      }, 60000);
      return done.finally(() => clearTimeout(timeout));
    },
    abort: () => ws.close(),
  };
}

// ---------------------------------------------------------------------------- recording
function micError(err) {
  if (err?.name === "NotAllowedError" || err?.name === "SecurityError") {
    return new UserError("Microphone permission was denied. Allow the microphone for this site in the browser's settings, or choose a file instead.");
  }
  if (err?.name === "NotFoundError" || err?.name === "OverconstrainedError") return new UserError("No microphone was found. Connect one, or choose a file instead.");
  if (err?.name === "NotReadableError") return new UserError("The microphone is in use by another program, or could not be opened.");
  return new UserError(`The microphone could not be opened: ${err?.message || err}`);
}

async function openContext(stream) {
  // 16 kHz straight from the browser where it can; otherwise the device's rate and our resampler
  // (?resample=page forces the latter, to test it).
  const choices = new URLSearchParams(location.search).get("resample") === "page" ? [{}] : [{ sampleRate: 16000 }, {}];
  for (const options of choices) {
    let ctx;
    try {
      ctx = new AudioContext(options);
      if (ctx.state === "suspended") await ctx.resume(); // started from the click, as autoplay rules require
      await ctx.audioWorklet.addModule("static/capture-worklet.js");
      const source = ctx.createMediaStreamSource(stream);
      return { ctx, source };
    } catch (err) {
      if (ctx) await ctx.close();
      if (!options.sampleRate) throw err;
    }
  }
  throw new UserError("This browser cannot process audio.");
}

async function startRecording() {
  if (!navigator.mediaDevices?.getUserMedia) {
    throw new UserError(
      window.isSecureContext ? "This browser cannot record audio; choose a file instead." : "The microphone needs a secure page: open it over https, or at localhost.",
    );
  }
  let stream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      audio: { channelCount: 1, echoCancellation: false, noiseSuppression: false, autoGainControl: false },
    });
  } catch (err) {
    throw micError(err);
  }
  let ctx;
  let source;
  try {
    ({ ctx, source } = await openContext(stream));
  } catch (err) {
    for (const track of stream.getTracks()) track.stop(); // do not leave the microphone open
    throw new UserError(`This browser could not process the microphone's audio: ${err?.message || err}`);
  }
  const node = new AudioWorkletNode(ctx, "amser-capture", { numberOfInputs: 1, numberOfOutputs: 1 });
  const rec = {
    stream,
    ctx,
    node,
    resampler: ctx.sampleRate === 16000 ? null : new Resampler(ctx.sampleRate, 16000),
    blocks: [],
    n: 0,
    live: null,
    flushed: null,
    started: performance.now(),
    inputRate: ctx.sampleRate,
  };
  const step = Number($("step").value);
  if ($("live").checked && state.info?.stream) rec.live = openLive(step);
  node.port.onmessage = (event) => {
    if (event.data === "flushed") {
      rec.flushed?.();
      return;
    }
    take(rec, rec.resampler ? rec.resampler.write(event.data) : event.data);
  };
  source.connect(node);
  node.connect(ctx.destination); // the node writes silence; connected so that it is pulled
  state.recording = rec;
  $("record").textContent = "Stop recording";
  $("record").setAttribute("aria-pressed", "true");
  $("final-text").textContent = "";
  $("partial-text").textContent = "";
  $("live-transcript").hidden = true;
  // The server refuses audio longer than its limit: stop there rather than record what it will not take.
  const limit = state.info?.limits?.max_audio_seconds;
  rec.timer = setInterval(() => {
    $("rec-time").textContent = `${(rec.n / 16000).toFixed(1)} s`;
    if (limit && rec.n / 16000 >= limit - 0.5 && state.recording === rec) {
      setBusy(`Stopped at the server's limit of ${limit} s of audio.`);
      guarded(stopRecording);
    }
  }, 100);
}

function take(rec, block) {
  if (!block.length) return;
  rec.blocks.push(block);
  rec.n += block.length;
  let sq = 0;
  for (const v of block) sq += v * v;
  $("level").value = Math.min(1, 3 * Math.sqrt(sq / block.length));
  rec.live?.write(block);
}

async function stopRecording() {
  const rec = state.recording;
  state.recording = null;
  clearInterval(rec.timer);
  await new Promise((resolve) => {
    rec.flushed = resolve;
    rec.node.port.postMessage("flush");
  });
  if (rec.resampler) take(rec, rec.resampler.close());
  for (const track of rec.stream.getTracks()) track.stop();
  await rec.ctx.close();
  $("record").textContent = "Start recording";
  $("record").setAttribute("aria-pressed", "false");
  $("level").value = 0;
  const samples = concat(rec.blocks, Float32Array);
  $("rec-time").textContent = `${(samples.length / 16000).toFixed(1)} s`;
  let live = null;
  if (rec.live) {
    setBusy("Waiting for the live transcript to finish…");
    live = await rec.live.close();
  }
  state.lastRecording = { samples, inputRate: rec.inputRate };
  await analyse(samples, live);
}

// ---------------------------------------------------------------------------- files
async function decodeFile(file) {
  const data = await file.arrayBuffer();
  // An OfflineAudioContext at 16 kHz decodes and resamples (the browser's resampler), then we mix to mono.
  let buffer;
  try {
    buffer = await new OfflineAudioContext(1, 1, 16000).decodeAudioData(data);
  } catch {
    throw new UserError(`${file.name} is not audio this browser can decode.`);
  }
  const mono = new Float32Array(buffer.length);
  for (let c = 0; c < buffer.numberOfChannels; c++) {
    const ch = buffer.getChannelData(c);
    for (let i = 0; i < ch.length; i++) mono[i] += ch[i] / buffer.numberOfChannels;
  }
  return mono;
}

async function analyseFile(file) {
  const samples = await decodeFile(file);
  $("final-text").textContent = "";
  $("partial-text").textContent = "";
  $("live-transcript").hidden = true;
  $("rec-time").textContent = `${(samples.length / 16000).toFixed(1)} s`;
  return analyse(samples, null);
}

// ---------------------------------------------------------------------------- wiring
async function guarded(work) {
  if (state.busy) return;
  if (state.recording && work !== stopRecording) {
    showError("Stop the recording first.");
    return;
  }
  state.busy = true;
  $("record").disabled = true;
  clearError();
  try {
    await work();
  } catch (err) {
    setBusy("");
    showError(err instanceof UserError || err instanceof AmserError ? err.message : `Something went wrong: ${err?.message || err}`);
    if (!(err instanceof UserError)) console.error(err);
  } finally {
    state.busy = false;
    $("record").disabled = false;
  }
}

function wire() {
  $("api-key").value = state.key;
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("api-key").value.trim();
    if (state.key) sessionStorage.setItem(KEY_STORAGE, state.key);
    else sessionStorage.removeItem(KEY_STORAGE);
    clearError();
    loadInfo().catch((err) => showError(err.message));
  });
  $("step").addEventListener("change", () => {
    state.stepChosen = true;
  });
  $("record").addEventListener("click", () => guarded(state.recording ? stopRecording : startRecording));
  $("file").addEventListener("change", () => {
    const file = $("file").files[0];
    if (file) guarded(() => analyseFile(file));
  });
  const drop = $("drop");
  drop.addEventListener("dragover", (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (event) => {
    event.preventDefault();
    drop.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) guarded(() => analyseFile(file));
  });
}

async function main() {
  wire();
  try {
    state.amser = await loadAmser("static/tables.json");
  } catch (err) {
    showError(`The page could not load its codec: ${err.message}`);
    throw err;
  }
  $("format-version").textContent = state.amser.asset.format_version;
  state.warmUpMs = state.amser.warmUp();
  try {
    await loadInfo();
  } catch (err) {
    $("server-status").textContent = "Not connected.";
    showError(err.message);
  }
  return state.amser;
}

window.amserPage = { state, ready: main(), analyse };
