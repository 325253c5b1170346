"""The page's port of the front end and codec against Python, in headless Chromium.

Features within 1e-3 of the reference (measured about 1e-5); containers byte-identical to Python's
for the same features, except where float32 rounding puts a coefficient on the other side of a
quantiser cell boundary (then that symbol differs by one, and the coefficient is checked to be
within rounding of the boundary); every page container decodes in Python within the codec's
documented error bound.
"""

from __future__ import annotations

import fnmatch
import hashlib
import re
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import amser_dsp
from amser_dsp import container as fmt
from amser_dsp.codec import kltdct, rans
from amser_dsp.config import get_preset
from amser_dsp.filterbank import mel_filterbank_for
from amser_dsp.frontend.stages import window_for
from amser_dsp.frontend.streaming import ChunkedFeatures

from .browser import b64, unb64

WHISPER = get_preset("whisper")
TABLES = kltdct.load_tables(kltdct.DEFAULT_TABLES)
#: Python links zlib 1.2.x here (Debian); pako 2.1.0 reproduces its deflate byte for byte.  Other zlib
#: builds (zlib-ng, 1.3.x) may deflate the header differently: then only its inflated text is compared.
SAME_DEFLATE = zlib.ZLIB_RUNTIME_VERSION.startswith("1.2.")


def page_features(page: Any, audio: np.ndarray) -> np.ndarray:
    out = page.evaluate(
        "(a) => { const f = window.amserPage.state.amser.features(window.t.f32(a)); return [window.t.b64(f.features), f.nFrames]; }",
        b64(audio.astype("<f4")),
    )
    return unb64(out[0], "<f4").reshape(80, out[1])


def page_encode_features(page: Any, feats: np.ndarray, step: int | None = None) -> bytes:
    """The page's container of given features (one chunk), as amser_dsp.encode(feats, config="whisper")."""
    return base64_bytes(
        page.evaluate(
            """([f, n, step]) => {
                const enc = window.amserPage.state.amser.streamEncoder({step: step ?? undefined});
                const payload = enc.codec.encodeChunk(window.t.f32(f), n);
                const a = enc.writer.write(n, payload), b = enc.writer.close();
                const out = new Uint8Array(a.length + b.length); out.set(a); out.set(b, a.length);
                return window.t.b64(out);
            }""",
            [b64(feats.astype("<f4")), feats.shape[1], step],
        )
    )


def page_encode_audio(
    page: Any, audio: np.ndarray, chunk_seconds: float | None = None, blocks: list[int] | None = None
) -> dict:
    """The page's StreamEncoder over audio written in the given block sizes (whole audio: one block)."""
    out = page.evaluate(
        """([a, chunkSeconds, blocks]) => {
            const x = window.t.f32(a);
            const enc = window.amserPage.state.amser.streamEncoder({chunkSeconds});
            const parts = [];
            let pos = 0;
            for (const n of (blocks || [x.length])) { parts.push(enc.write(x.subarray(pos, pos + n))); pos += n; }
            if (pos < x.length) parts.push(enc.write(x.subarray(pos)));
            parts.push(enc.close());
            const all = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
            let o = 0; for (const p of parts) { all.set(p, o); o += p.length; }
            return {container: window.t.b64(all), chunks: enc.chunks.map(c => [window.t.b64(c.features), c.nFrames])};
        }""",
        [b64(audio.astype("<f4")), chunk_seconds, blocks],
    )
    chunks = [unb64(f, "<f4").reshape(80, n) for f, n in out["chunks"]]
    return {"container": base64_bytes(out["container"]), "chunks": chunks}


def base64_bytes(text: str) -> bytes:
    return unb64(text).tobytes()


def symbols(blob: bytes) -> list[np.ndarray]:
    """The quantised symbols of every kltdct chunk of a container."""
    out = []
    for record in fmt.read_all(blob)[1]:
        step, _, _ = kltdct._CHUNK_HEAD.unpack_from(record.payload)
        plan = kltdct._coding_plan(TABLES, step)
        n_blocks = -(-record.n_frames // TABLES.block)
        ctx = np.broadcast_to(plan.context[:, None], (plan.context.size, n_blocks))
        out.append(rans.decode(record.payload[kltdct._CHUNK_HEAD.size :], ctx))
    return out


def error_bound(feats: np.ndarray, step_index: int = -4) -> float:
    """The codec's documented bound on a chunk's squared error (docs/codec.md): (S/2)^2 per coded coefficient
    plus the energy of the uncoded ones."""
    coeffs = kltdct.analyse(feats, TABLES)
    step, coded = kltdct.steps(TABLES, step_index), kltdct._coding_plan(TABLES, step_index).coded
    return float(np.where(coded[:, None, :], (step[:, None, :] / 2) ** 2, coeffs**2).sum()) * (1 + 1e-4)


def assert_same_container(page_blob: bytes, python_blob: bytes, feats_chunks: list[np.ndarray]) -> dict:
    """Byte-identical, or differing only in symbols whose coefficient lies within rounding of a cell boundary."""
    page_header, page_chunks, _ = fmt.read_all(page_blob)
    py_header, py_chunks, _ = fmt.read_all(python_blob)
    assert (page_header.config, page_header.codec, page_header.n_mels) == (py_header.config, py_header.codec, 80)
    if SAME_DEFLATE:
        assert page_blob[: page_header.size] == python_blob[: py_header.size]
    assert [c.n_frames for c in page_chunks] == [c.n_frames for c in py_chunks]
    flips = total = 0
    for x, a, b, qa, qb in zip(
        feats_chunks, page_chunks, py_chunks, symbols(page_blob), symbols(python_blob), strict=True
    ):
        assert a.payload[:9] == b.payload[:9]  # step, min, max
        total += qa.size
        differ = qa != qb
        if not differ.any():
            assert a.payload == b.payload
            continue
        flips += int(differ.sum())
        assert np.all(np.abs(qa[differ].astype(np.int64) - qb[differ]) == 1)
        step = kltdct._CHUNK_HEAD.unpack_from(a.payload)[0]
        plan = kltdct._coding_plan(TABLES, step)
        ratio = kltdct._picked(kltdct.analyse(x, TABLES), plan) / plan.step[:, None]
        frac = np.abs(ratio[differ] - np.floor(ratio[differ]) - 0.5)
        assert np.all(frac < 1e-4), f"a symbol differs away from a cell boundary: {frac.max()}"
    if SAME_DEFLATE and not flips:
        assert page_blob == python_blob
    return {"flips": flips, "symbols": total}


# ------------------------------------------------------------------ data and the front end's tables
def test_window_and_filter_bank_equal_pythons(page: Any) -> None:
    out = page.evaluate(
        """async () => {
            const fe = await import("/static/amser/frontend.js");
            const cfg = window.amserPage.state.amser.config;
            return [window.t.b64(fe.analysisWindow(cfg)), window.t.b64(fe.melFilterbank(cfg).weights)];
        }"""
    )
    np.testing.assert_array_equal(unb64(out[0], "<f4"), window_for(WHISPER))
    bank = unb64(out[1], "<f4").reshape(80, 201)
    np.testing.assert_array_equal(bank, mel_filterbank_for(WHISPER))


def test_page_features_equal_python_on_the_bundled_clip(page: Any, sample_audio: np.ndarray) -> None:
    ref = amser_dsp.features(sample_audio, 16000, "whisper", backend="numpy")
    got = page_features(page, sample_audio)
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 1e-3


def test_page_features_equal_python_on_real_speech(page: Any, speech: list[np.ndarray]) -> None:
    for audio in speech:
        ref = amser_dsp.features(audio, 16000, "whisper", backend="numpy")
        got = page_features(page, audio)
        assert got.shape == ref.shape
        assert np.abs(got - ref).max() < 1e-3


@pytest.mark.parametrize("n", [1, 159, 160, 401, 1000])
def test_page_features_of_short_audio(page: Any, n: int, rng: np.random.Generator) -> None:
    audio = (0.1 * rng.standard_normal(n)).astype(np.float32)
    ref = amser_dsp.features(audio, 16000, "whisper", backend="numpy")
    got = page_features(page, audio)
    assert got.shape == ref.shape == (80, WHISPER.num_frames(n))
    assert np.abs(got - ref).max() < 1e-3


def test_page_streams_features_as_python_does(page: Any, sample_audio: np.ndarray, rng: np.random.Generator) -> None:
    """Chunks of 0.5 s (each clamped at its own maximum), audio in random blocks: Python's ChunkedFeatures."""
    blocks = [int(b) for b in rng.integers(1, 4000, 60)]
    page_out = page_encode_audio(page, sample_audio, 0.5, blocks)
    py = ChunkedFeatures(WHISPER, 50)
    ref = py.accept(sample_audio) + py.finish()
    assert [c.shape for c in page_out["chunks"]] == [c.shape for c in ref]
    for got, want in zip(page_out["chunks"], ref, strict=True):
        assert np.abs(got - want).max() < 1e-3
    # The page's bytes do not depend on the block sizes.
    assert page_encode_audio(page, sample_audio, 0.5)["container"] == page_out["container"]


# ------------------------------------------------------------------ the codec
def test_page_encodes_pythons_features_as_python_does(page: Any, sample_audio: np.ndarray) -> None:
    feats = amser_dsp.features(sample_audio, 16000, "whisper")
    for step in (None, -16, 0, 8):
        kwargs = {} if step is None else {"step": step}
        python_blob = amser_dsp.encode(feats, config="whisper", **kwargs)
        page_blob = page_encode_features(page, feats, step)
        assert_same_container(page_blob, python_blob, [feats])


def test_page_containers_of_real_speech(page: Any, speech: list[np.ndarray]) -> None:
    """Page audio -> page container: decodes in Python within the bound; symbols as Python codes the page's features."""
    flips = total = 0
    for audio in speech:
        out = page_encode_audio(page, audio)
        (feats,) = out["chunks"]
        decoded = amser_dsp.decode(out["container"])
        assert decoded.shape == feats.shape
        assert feats.min() <= decoded.min() and decoded.max() <= feats.max()
        assert float(((decoded - feats) ** 2).sum()) <= error_bound(feats)
        counts = assert_same_container(out["container"], amser_dsp.encode(feats, config="whisper"), [feats])
        flips += counts["flips"]
        total += counts["symbols"]
    assert flips <= 1e-3 * total


def test_page_stream_container_decodes_to_its_chunks(page: Any, sample_audio: np.ndarray) -> None:
    out = page_encode_audio(page, sample_audio, 0.5, [1600] * 40)
    info = amser_dsp.inspect(out["container"])
    assert info.n_chunks == len(out["chunks"]) == -(-WHISPER.num_frames(sample_audio.size) // 50)
    assert info.format_version == "1.1"
    chunks = list(amser_dsp.StreamDecoder().feed(out["container"]))
    for got, sent in zip(chunks, out["chunks"], strict=True):
        assert got.shape == sent.shape and float(((got - sent) ** 2).sum()) <= error_bound(sent)


def test_page_rans_equals_python(page: Any, rng: np.random.Generator) -> None:
    """Integer arithmetic only: byte-identical streams, escapes and int32 extremes included; and back."""
    n = 5000
    ctx = rng.integers(rans.SCALE_INDEX_MIN, rans.SCALE_INDEX_MAX + 1, n).astype(np.int32)
    q = np.rint(rng.laplace(0.0, 2.0 ** (ctx / 8))).astype(np.int32)
    q[::97] = rng.integers(-(2**31), 2**31 - 1, q[::97].size, dtype=np.int64)
    q[:4] = [-(2**31), 2**31 - 1, 32, -32]
    want = rans.encode(q, ctx)
    got = page.evaluate(
        """async ([q, ctx]) => {
            const r = await import("/static/amser/rans.js");
            const lt = window.amserPage.state.amser.laplace;
            const tab = window.t.i32(ctx).map(c => c - lt.scaleIndexMin);
            const data = r.ransEncode(window.t.i32(q), tab, lt);
            return [window.t.b64(data), window.t.b64(r.ransDecode(data, tab, lt))];
        }""",
        [b64(q.astype("<i4")), b64(ctx.astype("<i4"))],
    )
    assert base64_bytes(got[0]) == want
    np.testing.assert_array_equal(unb64(got[1], "<i4"), q)


@pytest.mark.parametrize("cut", [1, 5, 9])
def test_page_rans_refuses_damaged_streams(page: Any, cut: int) -> None:
    ctx = np.zeros(200, np.int32)
    data = rans.encode(np.arange(200, dtype=np.int32) % 5 - 2, ctx)
    message = page.evaluate(
        """async ([data, n]) => {
            const r = await import("/static/amser/rans.js");
            const lt = window.amserPage.state.amser.laplace;
            try { r.ransDecode(window.t.bytes(data), new Int32Array(n).fill(-lt.scaleIndexMin), lt); return "decoded"; }
            catch (e) { return e.name + ": " + e.message; }
        }""",
        [b64(data[:-cut]), 200],
    )
    assert message.startswith("AmserError: entropy-coded stream is corrupt")


def test_page_crc_and_empty_container_equal_pythons(page: Any, rng: np.random.Generator) -> None:
    data = rng.integers(0, 256, 1000, dtype=np.uint8).tobytes()
    got = page.evaluate(
        """async ([d]) => {
            const c = await import("/static/amser/container.js");
            const a = window.amserPage.state.amser;
            const w = new c.ContainerWriter(a.configJson, c.canonicalJson({codec: "raw", dtype: "float16"}), 80, a.dictionary);
            return [c.crc32(window.t.bytes(d)), c.crc32(window.t.bytes(d), 0xdeadbeef), window.t.b64(w.close())];
        }""",
        [b64(data)],
    )
    assert got[0] == zlib.crc32(data) and got[1] == zlib.crc32(data, 0xDEADBEEF)
    python = fmt.Writer(WHISPER.to_dict(), {"codec": "raw", "dtype": "float16"}, 80).close()
    if SAME_DEFLATE:
        assert base64_bytes(got[2]) == python
    assert amser_dsp.inspect(base64_bytes(got[2])).n_frames == 0


@pytest.mark.parametrize(
    ("script", "message"),
    [
        ("a.features(new Float32Array([0.1, NaN]))", "audio contains NaN or infinite samples"),
        ("a.streamEncoder({step: 64})", "step=64 is invalid"),
        ("a.streamEncoder({chunkSeconds: -1})", "chunkSeconds=-1 is invalid"),
        ("a.streamEncoder({}).close()", "the stream ended without any audio"),
        (
            "(() => { const e = a.streamEncoder({}); e.write(new Float32Array(800)); e.close(); e.write(new Float32Array(8)); })()",
            "write\\(\\) after close\\(\\)",
        ),
    ],
)
def test_page_refuses_bad_input(page: Any, script: str, message: str) -> None:
    got = page.evaluate(
        f"() => {{ const a = window.amserPage.state.amser; try {{ {script}; return 'no error'; }} catch (e) {{ return e.name + ': ' + e.message; }} }}"
    )
    assert got.startswith("AmserError: ") and re.search(message, got), got


def test_page_resampler(page: Any) -> None:
    """48 kHz -> 16 kHz in blocks: resample_poly's length, band-limited tones kept, the 9 kHz one removed."""
    sr, n = 48000, 48000
    t = np.arange(n) / sr
    x = (
        0.5 * np.sin(2 * np.pi * 440 * t) + 0.3 * np.sin(2 * np.pi * 3000 * t) + 0.2 * np.sin(2 * np.pi * 9000 * t)
    ).astype(np.float32)
    got = page.evaluate(
        """async ([a, block]) => {
            const {Resampler} = await import("/static/amser/resample.js");
            const x = window.t.f32(a), r = new Resampler(48000, 16000), parts = [];
            for (let i = 0; i < x.length; i += block) parts.push(...r.write(x.subarray(i, i + block)));
            parts.push(...r.close());
            return window.t.b64(Float32Array.from(parts));
        }""",
        [b64(x), 1234],
    )
    y = unb64(got, "<f4")
    assert y.size == n // 3
    u = np.arange(y.size) / 16000
    ideal = 0.5 * np.sin(2 * np.pi * 440 * u) + 0.3 * np.sin(2 * np.pi * 3000 * u)
    assert np.abs(y - ideal)[200:-200].max() < 1e-4


# ------------------------------------------------------------------ what the page is made of (no browser)
def test_tables_asset_is_built_from_the_package() -> None:
    from amser_dsp.web import tables as web

    assert web.asset_path().read_bytes() == web.build_asset(), "run: python -m amser_dsp.web.tables"


def test_vendored_deflate_is_the_pinned_release() -> None:
    from amser_dsp.web import tables as web

    data = (web.web_root() / "vendor" / "pako_deflate.min.js").read_bytes()
    assert data.startswith(b"/*! pako 2.1.0 ")
    assert hashlib.sha256(data).hexdigest() == "9429785d1e7f805d46640c4155957fd0f286144dec05cea09f6f2eaa646adb21"


def test_every_page_file_ships_with_the_package() -> None:
    """Each file of amser_dsp/web matches a package-data pattern of pyproject.toml (a wheel would miss it);
    its Python modules ship as the package ``amser_dsp.web``."""
    import tomllib

    from amser_dsp.web import tables as web

    root = Path(amser_dsp.__file__).parents[2]
    patterns = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["amser_dsp"]
    package = Path(amser_dsp.__file__).parent
    files = [
        p.relative_to(package).as_posix()
        for p in web.web_root().rglob("*")
        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py"
    ]
    assert "web/index.html" in files and "web/tables.json" in files
    missing = [f for f in files if not any(fnmatch.fnmatchcase(f, pat) for pat in patterns)]
    assert not missing, f"not in package-data: {missing}"


#: WCAG 2 contrast of every visible text against the colour behind it, computed in the page.
CONTRAST = """() => {
    const lum = (c) => { const [r, g, b] = c.map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; });
                         return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
    const rgba = (s) => (s.match(/[\\d.]+/g) || []).map(Number);
    const background = (el) => { for (; el; el = el.parentElement) { const c = rgba(getComputedStyle(el).backgroundColor);
                                  if (c.length === 3 || c[3] > 0.99) return c.slice(0, 3); } return [255, 255, 255]; };
    const worst = [];
    for (const el of document.querySelectorAll("body *")) {
        const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
        const box = el.getBoundingClientRect();
        if (!own || !box.width || getComputedStyle(el).visibility === "hidden" || el.closest("[hidden]")) continue;
        if (el.disabled || el.closest(":disabled")) continue;
        const fg = lum(rgba(getComputedStyle(el).color).slice(0, 3)), bg = lum(background(el));
        const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
        worst.push([ratio, el.tagName + (el.id ? "#" + el.id : "") + ": " + el.textContent.trim().slice(0, 30)]);
    }
    return worst.sort((a, b) => a[0] - b[0]).slice(0, 3);
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_page_is_accessible(browser: Any, static_site: str, scheme: str) -> None:
    """Labels on every control, WCAG AA contrast (4.5:1) for all text, no sideways scrolling at 320 px."""
    from .browser import open_page

    page = open_page(browser, static_site + "/")
    page.emulate_media(color_scheme=scheme)
    page.set_viewport_size({"width": 320, "height": 640})
    unlabeled = page.evaluate(
        """() => [...document.querySelectorAll("input, select, button, textarea, meter, canvas")]
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute("aria-label") && !e.textContent.trim())
            .map(e => e.outerHTML.slice(0, 80))"""
    )
    assert unlabeled == []
    worst = page.evaluate(CONTRAST)
    assert worst and worst[0][0] >= 4.5, worst
    assert page.evaluate("document.documentElement.scrollWidth") <= 320
    page.close()


def test_the_pages_opus_reference_is_docs_rd() -> None:
    """The Opus rate the page compares with is the lowest Opus rate of docs/rd.md within 0.5 WER points of
    uncompressed features; the default codec's rate is its row there."""
    from amser_dsp.web import tables as web

    rd = (Path(amser_dsp.__file__).parents[2] / "docs" / "rd.md").read_text()
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in rd.splitlines() if line.startswith("| ")]
    opus = [float(r[1]) for r in rows if r[0].startswith("Opus") and float(r[4].split()[0]) <= 0.5]
    default = [float(r[1]) for r in rows if r[0].startswith(f"KLT-DCT step {kltdct.KltDctCodec.DEFAULT_STEP} ")]
    assert web.REFERENCE["opus_kbps"] == min(opus)
    assert [web.REFERENCE["codec_kbps"]] == default


@pytest.mark.parametrize(
    ("status", "headers", "body", "message"),
    [
        (
            503,
            {"Retry-After": "7"},
            {"error": {"code": "busy", "message": "the queue of 4 requests is full"}},
            "The server is busy (the queue of 4 requests is full). Try again in 7 s.",
        ),
        (
            401,
            {},
            {"error": {"code": "unauthorized", "message": "a valid API key is required"}},
            "The server needs an API key",
        ),
        (
            413,
            {},
            {"error": {"code": "too_long", "message": "audio longer than 120 s"}},
            "Too much for the server: audio longer than 120 s",
        ),
        (
            400,
            {},
            {"error": {"code": "bad_container", "message": "checksum mismatch"}},
            "The server could not use the container (bad_container): checksum mismatch",
        ),
        (502, {}, "<html>bad gateway</html>", "The server could not use the container (502): HTTP 502"),
        (None, {}, None, "Cannot reach the server"),
    ],
)
def test_page_says_server_errors_plainly(
    browser: Any,
    static_site: str,
    tmp_path: Path,
    sample_audio: np.ndarray,
    status: int | None,
    headers: dict,
    body: Any,
    message: str,
) -> None:
    """What /v1/analyze answers (or a dropped connection) becomes one plain sentence on the page."""
    import json

    import soundfile as sf

    from .browser import open_page, wait_for

    wav = tmp_path / "clip.wav"
    sf.write(wav, sample_audio, 16000, subtype="PCM_16")
    page = open_page(browser, static_site + "/")

    def answer(route: Any) -> None:
        if status is None:
            route.abort()
        else:
            text = body if isinstance(body, str) else json.dumps(body)
            route.fulfill(status=status, headers=headers, body=text, content_type="application/json")

    page.route("**/v1/analyze*", answer)
    page.set_input_files("#file", str(wav))
    wait_for(
        page, "document.querySelector('#error').textContent.length > 0 && !document.querySelector('#error').hidden"
    )
    assert message in page.locator("#error").inner_text()
    assert page.evaluate("document.querySelector('#record').disabled") is False  # the page is usable again
    page.close()


@pytest.mark.parametrize(
    "changes",
    [
        # The other branches the port implements: HTK Mel, Hamming, natural log without clamp, no padding, 512-point FFT.
        {
            "window": "hamming",
            "periodic_window": False,
            "mel_scale": "htk",
            "mel_norm": None,
            "log": "ln",
            "dynamic_range": None,
            "log_offset": 0.0,
            "log_scale": 1.0,
            "padding": "snip",
            "trailing_silence": 0,
            "drop_last_frame": False,
            "n_fft": 512,
        },
        {"n_mels": 40, "f_min": 20.0, "f_max": 7600.0, "hop_length": 100, "frame_length": 320, "n_fft": 480},
    ],
)
def test_page_features_of_other_configs(page: Any, sample_audio: np.ndarray, changes: dict) -> None:
    config = WHISPER.replace(**changes)
    ref = amser_dsp.features(sample_audio, 16000, config, backend="numpy")
    out = page.evaluate(
        """async ([a, cfg]) => {
            const fe = await import("/static/amser/frontend.js");
            const f = fe.features(window.t.f32(a), JSON.parse(cfg));
            return [window.t.b64(f.features), f.nFrames];
        }""",
        [b64(sample_audio.astype("<f4")), config.to_json()],
    )
    got = unb64(out[0], "<f4").reshape(config.n_mels, out[1])
    assert got.shape == ref.shape
    assert np.abs(got - ref).max() < 1e-3


@pytest.mark.parametrize(
    ("field", "value"), [("preemphasis", 0.97), ("remove_dc", True), ("pad_mode", "constant"), ("mel_triangles", "mel")]
)
def test_page_refuses_configs_it_does_not_implement(page: Any, field: str, value: Any) -> None:
    config = WHISPER.replace(**{field: value})
    message = page.evaluate(
        """async (cfg) => {
            const fe = await import("/static/amser/frontend.js");
            try { fe.features(new Float32Array(1000), JSON.parse(cfg)); return "computed"; }
            catch (e) { return e.name + ": " + e.message; }
        }""",
        config.to_json(),
    )
    assert message.startswith(f"AmserError: config {field}=") and "not supported on the page" in message


@pytest.mark.parametrize("step, listed", [(-8, True), (-6, False), (-4, True)])
def test_page_encodes_at_the_servers_default_codec(
    browser: Any, static_site: str, tmp_path: Path, sample_audio: np.ndarray, step: int, listed: bool
) -> None:
    """The step /v1/info names (Whisper base asks for -8) is what the page's container is encoded at."""
    import json

    import soundfile as sf

    from amser_dsp import container

    from .browser import open_page, wait_for

    info = {"model": "whisper-base", "format": 2, "presets": ["whisper"], "stream": False, "emotion": None}
    info |= {"limits": {"auth": "none"}, "default_codec": {"codec": "kltdct", "step": step}}
    sent: list[bytes] = []

    def answer_info(route: Any) -> None:
        route.fulfill(status=200, body=json.dumps(info), content_type="application/json")

    def answer_analyze(route: Any) -> None:
        sent.append(route.request.post_data_buffer)
        route.fulfill(status=400, body=json.dumps({"error": {"code": "x", "message": "stop here"}}))

    page = open_page(browser, static_site + "/", routes={"**/v1/info*": answer_info})
    page.route("**/v1/analyze*", answer_analyze)
    wait_for(page, f"document.querySelector('#step').value === '{step}'")
    labels = page.evaluate("[...document.querySelectorAll('#step option')].map((o) => o.textContent)")
    assert sum("this server's default" in label for label in labels) == 1
    assert (len(labels) == 5) is listed  # a step the menu lacks is added to it
    wav = tmp_path / "clip.wav"
    sf.write(wav, sample_audio, 16000, subtype="PCM_16")
    page.set_input_files("#file", str(wav))
    wait_for(page, "!document.querySelector('#error').hidden")
    assert len(sent) == 1
    assert container.read_all(sent[0])[0].codec["step"] == step
    # a step the user picks is kept when the server's info is read again
    page.select_option("#step", "0")
    page.evaluate("document.querySelector('#key-form').requestSubmit()")
    wait_for(page, "document.querySelector('#server-status').textContent.startsWith('Connected')")
    assert page.evaluate("document.querySelector('#step').value") == "0"
    page.close()
