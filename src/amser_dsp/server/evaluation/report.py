"""The WER evaluation's results: per-mode rows, the markdown table, the Opus comparison, the plot."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import AmserError
from .modes import SAMPLE_RATE, Clip, Mode
from .scoring import normaliser, paired_bootstrap, word_errors

__all__ = ["Row", "lowest_within", "markdown", "opus_comparison", "plot", "summarise", "total_seconds"]

PCM_KBPS = 256.0


@dataclass
class Row:
    mode: Mode
    kbps: float | None
    wer: float
    delta: float
    ci: tuple[float, float]
    changed: float
    #: WER of this mode's transcripts against the baseline's (no reference text needed), and its 95% interval.
    divergence: float = 0.0
    divergence_ci: tuple[float, float] = (0.0, 0.0)


def total_seconds(clips: Sequence[Clip]) -> float:
    """Audio duration of the clips (from the file headers)."""
    import soundfile as sf

    return sum(sf.info(str(c.path)).frames for c in clips) / SAMPLE_RATE


def summarise(
    clips: Sequence[Clip], modes: Sequence[Mode], baseline: Mode, *, seed: int = 0, resamples: int = 2000
) -> tuple[list[Row], str]:
    """Per mode: kbps, corpus WER, change vs ``baseline`` with a paired bootstrap CI, transcript-change rate, and
    divergence: the WER of the mode's transcripts scored against the baseline's, with its bootstrap interval."""
    norm, norm_name = normaliser()
    refs = [norm(c.text) for c in clips]
    seconds = total_seconds(clips)

    def counts(mode: Mode) -> tuple[np.ndarray, np.ndarray, list[str]]:
        hyps = [norm(mode.results[c.id][0]) for c in clips]
        pairs = [word_errors(r, h) for r, h in zip(refs, hyps, strict=True)]
        return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs]), hyps

    base_err, words, base_hyps = counts(baseline)
    rows = []
    for mode in modes:
        err, _, hyps = counts(mode)
        sizes = [size for c in clips if (size := mode.results[c.id][1]) is not None]
        kbps = sum(sizes) * 8 / seconds / 1000 if len(sizes) == len(clips) else None
        wer = 100 * err.sum() / words.sum()
        delta = wer - 100 * base_err.sum() / words.sum()

        def change(s: np.ndarray, err: np.ndarray = err) -> np.ndarray:
            return 100 * (err[s].sum(1) - base_err[s].sum(1)) / words[s].sum(1)

        lo, hi = paired_bootstrap(change, len(clips), seed=seed, resamples=resamples)
        changed = float(np.mean([h != b for h, b in zip(hyps, base_hyps, strict=True)]))
        apart = [word_errors(b, h) for b, h in zip(base_hyps, hyps, strict=True)]
        d_err, d_words = np.array([a[0] for a in apart]), np.array([a[1] for a in apart])

        def diverged(s: np.ndarray, d_err: np.ndarray = d_err, d_words: np.ndarray = d_words) -> np.ndarray:
            return 100 * d_err[s].sum(1) / np.maximum(d_words[s].sum(1), 1)

        d_ci = paired_bootstrap(diverged, len(clips), seed=seed, resamples=resamples)
        divergence = 100 * d_err.sum() / max(d_words.sum(), 1)
        rows.append(Row(mode, kbps, float(wer), float(delta), (float(lo), float(hi)), changed, float(divergence), d_ci))
    return rows, norm_name


def markdown(
    rows: Sequence[Row], clips: Sequence[Clip], seconds: float, norm_name: str, model: str, command: str
) -> str:
    """The docs/fidelity.md table, with the Opus comparison at equal bitrate."""
    words = sum(len(c.text.split()) for c in clips)
    minutes = seconds / 60
    opus = sorted((r.kbps, r.wer) for r in rows if r.mode.family == "opus" and r.kbps)
    lines = [
        f"{len(clips)} clips, {minutes:.1f} min, about {words:,} reference words; {model}; {norm_name}.",
        f"Command: `{command}`",
        "",
        "| mode | kbps | % of PCM | WER % | change vs uncompressed (95% CI) | transcripts changed "
        "| divergence % (95% CI) | Opus at this rate |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        kbps = f"{r.kbps:.2f}" if r.kbps is not None else "-"
        pct = f"{100 * r.kbps / PCM_KBPS:.2f}" if r.kbps is not None else "-"
        opus_wer = "-"
        if (
            r.kbps is not None
            and r.mode.family not in ("opus", "reference")
            and opus
            and opus[0][0] <= r.kbps <= opus[-1][0]
        ):
            rates, wers = zip(*opus, strict=True)
            opus_wer = f"{np.interp(r.kbps, rates, wers):.2f}"
        lines.append(
            f"| {r.mode.name} | {kbps} | {pct} | {r.wer:.2f} | {r.delta:+.2f} ({r.ci[0]:+.2f}, {r.ci[1]:+.2f}) | "
            f"{100 * r.changed:.0f}% | {r.divergence:.2f} ({r.divergence_ci[0]:.2f}, {r.divergence_ci[1]:.2f}) | "
            f"{opus_wer} |"
        )
    return "\n".join(lines) + "\n"


def lowest_within(rows: Sequence[Row], points: float) -> Row | None:
    """The lowest-bitrate compressed-feature mode whose WER change is at most ``points``."""
    ok = [
        r
        for r in rows
        if r.kbps is not None and r.mode.family not in ("opus", "uncompressed", "reference") and r.delta <= points
    ]
    return min(ok, key=lambda r: math.inf if r.kbps is None else r.kbps) if ok else None


OURS = ("svd float16", "svd int8", "kltdct", "kltdct learned")


def opus_comparison(rows: Sequence[Row], rates: Sequence[float] = tuple(range(2, 17))) -> str:
    """Markdown: at each rate, our best WER at or under it against Opus's (interpolated between its points)."""
    opus = sorted((r.kbps, r.wer) for r in rows if r.mode.family == "opus" and r.kbps)
    lines = [
        "| kbps | our best mode at or under it | its WER % | Opus WER % | ours better |",
        "|---:|---|---:|---:|---|",
    ]
    for rate in rates:
        ours = [r for r in rows if r.mode.family in OURS and r.kbps is not None and r.kbps <= rate]
        best = min(ours, key=lambda r: r.wer) if ours else None
        if opus and opus[0][0] <= rate:
            opus_rates, opus_wers = zip(*opus, strict=True)
            o = float(np.interp(rate, opus_rates, opus_wers))
            opus_text = f"{o:.2f}"
        else:
            o, opus_text = math.inf, f"- (Opus runs at {opus[0][0]:.1f} kbps and up)" if opus else "-"
        # Below Opus's lowest rate there is nothing to be better than: say so rather than "yes".
        verdict = ("yes" if best.wer < o else "no") if best and math.isfinite(o) else ("only ours" if best else "-")
        lines.append(
            f"| {rate:g} | {best.mode.name} | {best.wer:.2f} | {opus_text} | {verdict} |"
            if best
            else f"| {rate:g} | - | - | {opus_text} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def plot(rows: Sequence[Row], path: Path, title: str) -> None:
    """The rate-distortion plot: WER change against kbps for every family, with 95% intervals."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise AmserError("--plot needs matplotlib: pip install 'amser-dsp[plot]'") from None
    fig, ax = plt.subplots(figsize=(8, 5), dpi=120)
    styles = {"kltdct": "o-", "kltdct learned": "v-", "svd int8": "s--", "svd float16": "^--", "opus": "D-", "raw": "x"}
    for family, style in styles.items():
        pts = sorted((r.kbps, r.delta, r.ci) for r in rows if r.mode.family == family and r.kbps)
        if not pts:
            continue
        x, y, ci = zip(*pts, strict=True)
        lows, highs = np.array([c[0] for c in ci]), np.array([c[1] for c in ci])
        # A percentile interval need not contain its point estimate: clip the bars at it.
        err = np.maximum([np.array(y) - lows, highs - np.array(y)], 0)
        ax.errorbar(x, y, yerr=err, fmt=style, capsize=2, label=family, alpha=0.85)
    ax.axhline(0, color="k", lw=0.8)
    ax.axhspan(-0.5, 0.5, color="g", alpha=0.08, label="within 0.5 point")
    ax.set_xscale("log")
    ax.set_xticks([1, 2, 4, 8, 16, 32, 64])
    ax.set_xticklabels(["1", "2", "4", "8", "16", "32", "64"])
    ax.set_xlabel("kbps (container bytes / audio seconds)")
    ax.set_ylabel("WER change vs uncompressed features (points)")
    ax.set_title(title, fontsize=9)
    ax.set_ylim(-2, 12)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
