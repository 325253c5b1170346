"""The amser command, through main(argv) and once as a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import amser_dsp
from amser_dsp.cli import main


@pytest.fixture
def wav(tmp_path: Path) -> Path:
    import soundfile as sf

    x = amser_dsp.load_audio(amser_dsp.sample_path())[:32000]
    path = tmp_path / "in" / "sub" / "a.wav"
    path.parent.mkdir(parents=True)
    sf.write(path, x, 16000)
    sf.write(tmp_path / "in" / "b.wav", x[:20000], 16000)
    return path


def test_features_encode_decode_info(wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["features", str(wav), str(tmp_path / "f.npy"), "--preset", "whisper"]) == 0
    f = np.load(tmp_path / "f.npy")
    assert f.shape == (80, 200)
    out = tmp_path / "a.amser"
    assert main(["encode", str(wav), str(out), "--preset", "whisper", "--rank", "6", "--dtype", "int8"]) == 0
    assert main(["decode", str(out), str(tmp_path / "d.npy")]) == 0
    np.testing.assert_array_equal(np.load(tmp_path / "d.npy"), amser_dsp.decode(out.read_bytes()))
    capsys.readouterr()
    assert main(["info", str(out)]) == 0
    line = capsys.readouterr().out
    assert "rank 6" in line and "kbps" in line and "% of 16-bit PCM" in line
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["ranks"] == [6] and info["config"]["n_fft"] == 400 and info["n_frames"] == 200


def test_encode_from_npy_features(wav: Path, tmp_path: Path) -> None:
    main(["features", str(wav), str(tmp_path / "f.npy")])
    assert main(["encode", str(tmp_path / "f.npy"), str(tmp_path / "f.amser"), "--energy", "0.9"]) == 0
    assert amser_dsp.inspect((tmp_path / "f.amser").read_bytes()).config == amser_dsp.get_preset("amser")


def test_directory_trees(wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src, enc, dec = tmp_path / "in", tmp_path / "enc", tmp_path / "dec"
    assert main(["encode", str(src), str(enc), "--ratio", "0.25"]) == 0
    err = capsys.readouterr().err
    assert "2 of 2 files" in err and "kbps" in err and "2/2" in err
    assert (enc / "sub" / "a.amser").exists() and (enc / "b.amser").exists()
    assert main(["decode", str(enc), str(dec), "-q"]) == 0
    assert (dec / "sub" / "a.npy").exists()
    assert main(["info", str(enc)]) == 0
    assert "2 files" in capsys.readouterr().out


def test_errors_are_one_line_and_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.amser"
    bad.write_bytes(b"not a container")
    assert main(["decode", str(bad), str(tmp_path / "x.npy")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not an .amser container" in err and "Traceback" not in err
    assert main(["info", str(tmp_path / "missing.amser")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["encode", "a", "b", "--rank", "3", "--ratio", "0.5"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2


def test_bad_codec_parameter_is_exit_1(wav: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["encode", str(wav), str(tmp_path / "x.amser"), "--rank", "0"]) == 1
    assert "rank=0 is invalid" in capsys.readouterr().err


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "amser encode" in out


def test_python_dash_m_subprocess(wav: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(Path(amser_dsp.__file__).parents[1])}
    out = tmp_path / "s.amser"
    run = subprocess.run(
        [sys.executable, "-m", "amser_dsp", "encode", str(wav), str(out)], capture_output=True, text=True, env=env, timeout=120
    )
    assert run.returncode == 0, run.stderr
    bad = subprocess.run(
        [sys.executable, "-m", "amser_dsp", "info", str(wav)], capture_output=True, text=True, env=env, timeout=120
    )
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "not an .amser container" in bad.stderr
