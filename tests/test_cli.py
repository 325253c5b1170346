"""The amser command: each subcommand on a file and on a tree, errors as one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import amser_dsp
from amser_dsp.cli import Done, Job, jobs_for, main, run_jobs, write_output


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.flac"
    shutil.copy(amser_dsp.sample_path(), path)
    return path


def test_features(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.npy"
    assert main(["features", str(clip), str(out), "--preset", "kaldi"]) == 0
    ref = amser_dsp.features(amser_dsp.load_audio(clip), 16000, "kaldi")
    np.testing.assert_array_equal(np.load(out), ref)


def test_encode_decode_info(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blob, npy = tmp_path / "c.amser", tmp_path / "c.npy"
    assert main(["encode", str(clip), str(blob), "--preset", "whisper", "--rank", "12", "--factor-dtype", "int8"]) == 0
    assert main(["decode", str(blob), str(npy)]) == 0
    np.testing.assert_array_equal(np.load(npy), amser_dsp.decode(blob.read_bytes()))
    capsys.readouterr()
    assert main(["info", str(blob), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["codec"]["rank"] == 12 and info["bytes"] == blob.stat().st_size
    assert info["kbps"] > 0 and info["percent_of_pcm"] > 0
    assert main(["info", str(blob)]) == 0
    line = capsys.readouterr().out
    assert "preset whisper" in line and "kbps" in line and "% of 16-bit PCM" in line


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], amser_dsp.DEFAULT_CODEC),
        (["--kbps", "2.5"], {"codec": "kltdct", "kbps": 2.5}),
        (["--quality", "0.08"], {"codec": "kltdct", "quality": 0.08}),
        (["--step", "-8"], {"codec": "kltdct", "step": -8}),
    ],
)
def test_encode_codec_options(clip: Path, tmp_path: Path, options: list[str], expected: dict) -> None:
    blob = tmp_path / "c.amser"
    assert main(["encode", str(clip), str(blob), *options]) == 0
    codec = amser_dsp.inspect(blob.read_bytes()).codec
    assert {k: codec[k] for k in expected} == expected
    assert amser_dsp.decode(blob.read_bytes()).shape[0] == 80


def test_tree_mode_mirrors_and_summarises(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in"
    (src / "a" / "b").mkdir(parents=True)
    shutil.copy(clip, src / "one.flac")
    shutil.copy(clip, src / "a" / "b" / "two.flac")
    (src / "a" / "broken.wav").write_bytes(b"not audio")
    dst = tmp_path / "out"
    assert main(["encode", str(src), str(dst), "--ratio", "0.125"]) == 1  # one file failed, the rest done
    captured = capsys.readouterr()
    assert (dst / "one.amser").is_file() and (dst / "a" / "b" / "two.amser").is_file()
    assert "encode: 2 of 3 files (1 failed)" in captured.err and "kbps" in captured.err
    assert "broken.wav" in captured.err
    assert main(["decode", str(dst), str(tmp_path / "npy")]) == 0
    assert (tmp_path / "npy" / "a" / "b" / "two.npy").is_file()
    assert main(["info", str(dst), "--json"]) == 0


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["decode", "missing.amser", "x.npy"], "input not found"),
        (["encode", "{clip}", "x.amser", "--rank", "0"], "rank=0"),
        (["encode", "{clip}", "x.amser", "--rank", "3", "--ratio", "0.1"], "exactly one of rank, ratio or energy"),
        (["encode", "{clip}", "x.amser", "--entropy", "zstd"], "exactly one of rank, ratio or energy"),
        (["encode", "{clip}", "x.amser", "--kbps", "3", "--factor-dtype", "int8"], "belong to different codecs"),
        (["encode", "{clip}", "x.amser", "--codec", "raw", "--rank", "3"], "does not apply to the raw codec"),
        (["encode", "{clip}", "x.amser", "--step", "99"], "step=99"),
        (["encode", "{clip}", "x.amser", "--preset", "kaldi", "--kbps", "3"], "trained on 'whisper' features"),
        (["decode", "{clip}", "x.npy"], "not an amser container"),
    ],
)
def test_errors_are_one_line(
    argv: list[str],
    message: str,
    clip: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main([a.format(clip=clip) for a in argv]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["encode", "--rank", "three", "a", "b"])
    assert exc.value.code == 2


def test_console_script_runs_as_module(clip: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(amser_dsp.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-m", "amser_dsp", "--help"], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "examples:" in out.stdout and "encode" in out.stdout


def test_unreachable_rate_is_a_warning_naming_the_file(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["encode", str(clip), str(tmp_path / "c.amser"), "--kbps", "0.1"]) == 0
    err = capsys.readouterr().err
    assert f"amser: warning: {clip}: kbps=0.1 cannot be met" in err


def test_features_defaults_to_the_same_preset_as_everything_else(clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "f.npy"
    assert main(["features", str(clip), str(out)]) == 0
    expected = amser_dsp.features(amser_dsp.load_audio(clip), 16000)
    np.testing.assert_array_equal(np.load(out), expected)
    assert expected.shape == amser_dsp.features(amser_dsp.load_audio(clip), 16000, "whisper").shape
    assert amser_dsp.DEFAULT_PRESET == "whisper"


def test_outputs_that_would_collide_are_refused_not_overwritten(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in"
    src.mkdir()
    shutil.copy(clip, src / "x.flac")
    amser_dsp.load_audio(clip)
    import soundfile as sf

    sf.write(src / "x.wav", amser_dsp.load_audio(clip)[:8000], 16000)
    shutil.copy(clip, src / "y.flac")
    assert main(["encode", str(src), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "x.flac, " in err and "x.wav would all be written to" in err and "encode: 1 of 3 files (2 failed)" in err
    assert not (tmp_path / "out" / "x.amser").exists() and (tmp_path / "out" / "y.amser").is_file()


def test_info_carries_on_past_bad_files(clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "c"
    folder.mkdir()
    assert main(["encode", str(clip), str(folder / "good.amser")]) == 0
    (folder / "bad.amser").write_bytes(b"AMSR garbage")
    capsys.readouterr()
    assert main(["info", str(folder), "--json"]) == 1
    out, err = capsys.readouterr()
    lines = [json.loads(line) for line in out.splitlines()]
    assert [Path(i["path"]).name for i in lines] == ["good.amser"]
    assert "bad.amser" in err and "info: 1 of 2 files (1 failed)" in err


def test_dash_means_standard_input_and_output(clip: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(amser_dsp.__file__).parents[1])}

    def amser(*args: str, data: bytes) -> bytes:
        out = subprocess.run([sys.executable, "-m", "amser_dsp", *args], input=data, capture_output=True, env=env)
        assert out.returncode == 0, out.stderr.decode()
        return out.stdout

    blob = amser("encode", "-", "-", data=clip.read_bytes())
    assert blob == amser_dsp.encode_audio(amser_dsp.load_audio(clip))
    feats = np.load(__import__("io").BytesIO(amser("decode", "-", "-", data=blob)))
    np.testing.assert_array_equal(feats, amser_dsp.decode(blob))
    assert json.loads(amser("info", "-", "--json", data=blob))["bytes"] == len(blob)
    npy = amser("features", "-", "-", data=clip.read_bytes())
    np.testing.assert_array_equal(
        np.load(__import__("io").BytesIO(npy)), amser_dsp.features(amser_dsp.load_audio(clip), 16000)
    )


def test_a_closed_pipe_stops_quietly(clip: Path, tmp_path: Path) -> None:
    # `amser info DIR | head -1`: no "Broken pipe" error, the exit status of a process killed by SIGPIPE.
    folder = tmp_path / "many"
    folder.mkdir()
    blob = amser_dsp.encode_audio(amser_dsp.load_audio(clip))
    for i in range(600):
        (folder / f"c{i:03d}.amser").write_bytes(blob)
    env = {**os.environ, "PYTHONPATH": str(Path(amser_dsp.__file__).parents[1])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "amser_dsp", "info", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    first = proc.stdout.readline()
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert b"c000.amser" in first and "Broken pipe" not in err and "Traceback" not in err


def test_progress_lines_do_not_mix_with_the_bar(capsys: pytest.CaptureFixture[str]) -> None:
    from amser_dsp.cli import Progress

    bar = Progress(3, "transcribe", enabled=True)
    bar.step("a.flac")
    bar.write("a.flac: some text")
    bar.close()
    out, err = capsys.readouterr()
    assert out == "a.flac: some text\n"
    # The bar is cleared (carriage return + erase line) before the line is printed, then redrawn.
    assert err.count("\r\033[K") == 2 and err.endswith("\r\033[K")
    first_bar, cleared = err.index("1/3 a.flac"), err.index("\r\033[K")
    assert first_bar < cleared < err.index("1/3", cleared)  # drawn, cleared for the line, drawn again


def test_codec_options_of_different_codecs_are_one_error_not_one_per_file(
    clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.flac", "b.flac"):
        shutil.copy(clip, folder / name)
    assert main(["encode", str(folder), str(tmp_path / "out"), "--rank", "3", "--kbps", "2"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "amser: error: options kbps (kltdct), rank (svd) do not select one codec: they belong to different codecs"
    ]
    assert not (tmp_path / "out").exists()


def test_a_job_listed_without_an_output_fails_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Jobs listed without an output (as for commands that print) that reach a writing step are refused, named."""
    (tmp_path / "a.npy").write_bytes(b"x")

    def work(job: Job) -> Done:
        write_output(job.dst, b"features")
        return Done()

    assert run_jobs(jobs_for([tmp_path], (".npy",)), work, "write") == 1
    assert capsys.readouterr().err.strip() == f"amser: error: {tmp_path / 'a.npy'}: no output was named for it"


# ------------------------------------------------------------- careless input
def _amser(*args: str, data: bytes = b"", cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(Path(amser_dsp.__file__).parents[1])}
    return subprocess.run(
        [sys.executable, "-m", "amser_dsp", *args], input=data, capture_output=True, env=env, cwd=cwd, timeout=120
    )


def _wav(path: Path, seconds: float = 0.5) -> Path:
    import soundfile as sf

    sf.write(path, amser_dsp.load_audio(amser_dsp.sample_path())[: int(16000 * seconds)], 16000, subtype="PCM_16")
    return path


@pytest.mark.parametrize("command", ["encode", "features", "decode"])
@pytest.mark.parametrize("how", ["same path", "symlink", "hard link"])
def test_the_output_is_never_the_input(
    command: str, how: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `amser encode v.wav v.wav` overwrote the source with the container and exited 0.
    src = tmp_path / "v.wav"
    if command == "decode":
        src = tmp_path / "v.amser"
        src.write_bytes(amser_dsp.encode_audio(amser_dsp.load_audio(_wav(tmp_path / "a.wav"))))
    else:
        _wav(src)
    before = src.read_bytes()
    out = src
    if how == "symlink":
        out = tmp_path / "link"
        out.symlink_to(src)
    elif how == "hard link":
        out = tmp_path / "hard"
        os.link(src, out)
    assert main([command, str(src), str(out)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"the output {out} is the input" in err
    assert ("through a link" in err) == (how != "same path")
    assert src.read_bytes() == before


def test_an_output_folder_takes_the_files_name(tmp_path: Path) -> None:
    # `amser encode sample.flac existing_dir` failed with "sample.flac: Is a directory", blaming the input.
    src = _wav(tmp_path / "speech.wav")
    (tmp_path / "existing").mkdir()
    assert main(["encode", str(src), str(tmp_path / "existing")]) == 0
    assert amser_dsp.decode((tmp_path / "existing" / "speech.amser").read_bytes()).shape[0] == 80
    assert main(["features", str(src), str(tmp_path / "new") + "/"]) == 0  # a trailing / makes a folder
    assert np.load(tmp_path / "new" / "speech.npy").shape[0] == 80


def test_standard_input_into_a_folder_is_refused(tmp_path: Path) -> None:
    # `amser encode - dir/` wrote a file named `dir`.
    data = _wav(tmp_path / "a.wav").read_bytes()
    for out in ("dir/", str(tmp_path)):
        done = _amser("encode", "-", out, data=data, cwd=tmp_path)
        assert done.returncode == 1
        assert b"standard input has no file name to give its output in the folder" in done.stderr
        assert done.stderr.count(b"\n") == 1
    assert not (tmp_path / "dir").exists()


def test_empty_standard_input_is_named(tmp_path: Path) -> None:
    # `amser encode - - </dev/null` printed soundfile's message with an object repr (<_io.BytesIO object at ...>).
    for command in ("encode", "features", "decode"):
        done = _amser(command, "-", "-")
        assert done.returncode == 1 and done.stdout == b""
        err = done.stderr.decode()
        assert err.startswith("amser: error: standard input: nothing arrived on it"), err
        assert err.count("\n") == 1 and " at 0x" not in err


def test_not_audio_on_standard_input_names_no_object() -> None:
    done = _amser("encode", "-", "-", data=b"not audio at all" * 10)
    err = done.stderr.decode()
    assert done.returncode == 1 and "Format not recognised" in err and " object at 0x" not in err


@pytest.mark.parametrize("rate", [1_000_003, 2_147_483_647])
def test_a_wav_declaring_an_absurd_rate_is_one_error_line(rate: int, tmp_path: Path) -> None:
    # `amser features` on a 4 KB WAV declaring 2**31 - 1 Hz printed a 38-line MemoryError traceback.
    import struct

    path = _wav(tmp_path / "r.wav", 0.1)
    b = bytearray(path.read_bytes())
    b[24:28] = struct.pack("<I", rate)
    path.write_bytes(bytes(b))
    done = _amser("features", str(path), str(tmp_path / "r.npy"))
    err = done.stderr.decode()
    assert done.returncode == 1 and err.count("\n") == 1 and "Traceback" not in err
    assert f"declares a sample rate of {rate} Hz; accepted are 8000 to 192000 Hz" in err


def test_an_unwritable_output_blames_the_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _wav(tmp_path / "a.wav")
    (tmp_path / "plain").write_bytes(b"")
    assert main(["encode", str(src), str(tmp_path / "plain" / "a.amser")]) == 1
    err = capsys.readouterr().err
    assert f"cannot write the output {tmp_path / 'plain' / 'a.amser'}: {tmp_path / 'plain'} is a file" in err


def test_chunk_seconds_a_reader_refuses_is_one_error_before_any_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a.wav", "b.wav"):
        _wav(folder / name)
    assert main(["encode", str(folder), str(tmp_path / "out"), "--chunk-seconds", "400"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "chunk_seconds=400 makes chunks of 40000 frames; readers accept at most 30000" in err[0]
    assert not (tmp_path / "out").exists()
