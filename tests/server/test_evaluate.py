"""The WER evaluation's bookkeeping: out-of-fold table choice, the Opus comparison, the plot."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import amser_dsp
from amser_dsp import AmserError

pytest.importorskip("ctranslate2", reason="the server extra is not installed (pip install 'amser-dsp[server]')")

from amser_dsp.codec import kltdct
from amser_dsp.codec.train import fit_tables
from amser_dsp.server.evaluation.modes import Clip, Mode, held_out_tables, kltdct_mode
from amser_dsp.server.evaluation.report import Row, lowest_within, opus_comparison


def _clip(i: int) -> Clip:
    return Clip(f"c{i}", Path(f"c{i}.flac"), "text", f"s{i}")


def _tables(name: str, clips: list[str], speech: list[np.ndarray]) -> kltdct.KltDctTables:
    feats = [amser_dsp.features(x, 16000, "whisper") for x in speech[:2]]
    shipped = kltdct.load_tables(kltdct.DEFAULT_TABLES)
    return fit_tables(
        feats,
        name=name,
        config_digest=amser_dsp.get_preset("whisper").digest(),
        weight=shipped.weight,
        meta={"clips": clips, "preset": "whisper"},
    )


def test_each_clip_is_coded_with_tables_that_never_saw_it(speech: list[np.ndarray]) -> None:
    a = _tables("fold-a", ["c0", "c1"], speech)
    b = _tables("fold-b", ["c2"], speech)
    clips = [_clip(i) for i in range(3)]
    folds = held_out_tables(clips, [a, b])
    assert folds == {"c0": 1, "c1": 1, "c2": 0}
    with pytest.raises(AmserError, match="every file given"):
        held_out_tables([_clip(0)], [a])
    try:
        mode = kltdct_mode("k", {"step": 0}, [a, b], folds)
        assert "out of fold" in mode.name
        feats, size = mode.run(clips[2], speech[0])
        assert feats.shape == amser_dsp.features(speech[0], 16000, "whisper").shape and size > 0
        # The same clip coded with its fold's tables directly gives the same container size.
        feats = amser_dsp.features(speech[0], 16000, "whisper")
        blob = amser_dsp.encode(feats, config="whisper", codec={"codec": "kltdct", "tables": "fold-a", "step": 0})
        assert len(blob) == size
    finally:
        kltdct._REGISTERED.clear()


def _row(family: str, kbps: float, wer: float) -> Row:
    return Row(
        Mode(f"{family} {kbps}", family, lambda c, a: (np.zeros((80, 0)), 0)), kbps, wer, wer - 10, (0.0, 0.0), 0.0
    )


def test_opus_comparison_and_lowest_within() -> None:
    rows = [
        _row("uncompressed", 256, 10.0),
        _row("kltdct", 2.0, 12.0),
        _row("kltdct", 4.0, 10.2),
        _row("kltdct", 9.0, 9.9),
        _row("opus", 6.0, 16.0),
        _row("opus", 12.0, 11.0),
    ]
    table = opus_comparison(rows, rates=(1, 2, 6, 9, 12))
    lines = table.splitlines()[2:]
    assert lines[0].startswith("| 1 | - |") and lines[0].endswith("| - |")
    assert "Opus runs at 6.0 kbps and up" in lines[1] and lines[1].endswith("| only ours |")  # nothing to compare
    assert lines[3].endswith("| yes |")
    assert "| 16.00 |" in lines[2] and "kltdct 4.0" in lines[2] and lines[2].endswith("| yes |")
    assert "| 13.50 |" in lines[3] and "kltdct 9.0" in lines[3]  # Opus interpolated half-way
    assert lowest_within(rows, 0.5).mode.name == "kltdct 4.0"
    assert lowest_within(rows, 0.1) is None or lowest_within(rows, 0.1).kbps == 9.0


def test_divergence_scores_each_mode_against_the_baselines_transcripts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from amser_dsp.server.evaluation import report

    monkeypatch.setattr(report, "total_seconds", lambda clips: 10.0)
    monkeypatch.setattr(report, "normaliser", lambda: (str.lower, "lower"))
    clips = [Clip("a", tmp_path / "a.flac", "the cat sat down", "s"), Clip("b", tmp_path / "b.flac", "a dog ran", "s")]

    def mode(name: str, a: str, b: str) -> Mode:
        m = Mode(name, "kltdct", lambda c, x: (np.zeros((80, 0)), 0))
        m.results = {"a": (a, 100), "b": (b, 100)}
        return m

    base = mode("uncompressed", "the cat sat", "a dog ran")  # itself one deletion from the reference
    same, other = mode("same", "the cat sat", "a dog ran"), mode("other", "the bat sat", "a dog")
    rows, _ = report.summarise(clips, [base, same, other], base, resamples=200)
    assert [r.divergence for r in rows[:2]] == [0.0, 0.0] and rows[1].divergence_ci == (0.0, 0.0)
    # against the baseline's 6 words: one substitution and one deletion; the reference would say 3 of 7
    assert rows[2].divergence == pytest.approx(100 * 2 / 6)
    assert rows[2].wer == pytest.approx(100 * 3 / 7)
    assert rows[2].divergence_ci[0] <= rows[2].divergence <= rows[2].divergence_ci[1]
    assert "divergence % (95% CI)" in report.markdown(rows, clips, 10.0, "lower", "m", "cmd")


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from amser_dsp.server.evaluation.run import plot

    rows = [_row("kltdct", 2.0, 12.0), _row("kltdct", 4.0, 10.2), _row("opus", 6.0, 16.0), _row("opus", 12.0, 11.0)]
    out = tmp_path / "img" / "rd.png"
    plot(rows, out, "test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class _CountingTranscriber:
    key = "fake|int8|beam1"

    def __init__(self) -> None:
        self.windows = 0

    def transcribe(self, items: list[np.ndarray]) -> list[str]:
        self.windows += len(items)
        return [f"mean {float(f.mean()):.3f}" for f in items]


def test_transcripts_are_cached_by_what_the_recogniser_sees(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from amser_dsp.server.evaluation import run as evaluate

    monkeypatch.setattr(evaluate, "load_audio", lambda path: np.zeros(10, np.float32))
    clips = [_clip(0), _clip(1)]
    offset = {"value": 0.0}

    def run(clip: Clip, audio: np.ndarray) -> tuple[np.ndarray, int]:
        return np.full((80, 30), offset["value"] + int(clip.id[1:]), np.float32), 7

    asr = _CountingTranscriber()
    first = Mode("m", "kltdct", run)
    evaluate.run_evaluation(clips, [first], asr, tmp_path, progress=False)
    assert asr.windows == 2 and first.results == {"c0": ("mean 0.000", 7), "c1": ("mean 1.000", 7)}
    again = Mode("renamed", "kltdct", run)
    evaluate.run_evaluation(clips, [again], asr, tmp_path, progress=False)
    assert asr.windows == 2 and again.results == first.results  # same inputs: no recogniser call
    offset["value"] = 0.5  # a codec change that alters the decoded features misses the cache
    changed = Mode("m", "kltdct", run)
    evaluate.run_evaluation(clips, [changed], asr, tmp_path, progress=False)
    assert asr.windows == 4 and changed.results["c0"] == ("mean 0.500", 7)
