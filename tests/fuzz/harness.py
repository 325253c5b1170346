"""What the plain-Python fuzzers share: the loop over mutants, findings on disk, progress, the report."""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import amser_dsp


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def call_checked(name: str, call: Callable[[], Any], max_seconds: float, problems: list[str]) -> Any:
    """``call()``'s result (None after an ``AmserError``); any other exception, or too much CPU, is a problem."""
    start = time.thread_time()
    try:
        result = call()
    except amser_dsp.AmserError:
        result = None
    except Exception as exc:  # the finding the fuzzers look for
        problems.append(f"{name}: {type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        result = None
    spent = time.thread_time() - start
    if spent > max_seconds:
        problems.append(f"{name}: {spent:.2f} s of CPU")
    return result


def drive(
    runs: int,
    mutant: Callable[[], tuple[bytes, str]],
    check: Callable[[bytes], list[str]],
    findings: Path | None,
    *,
    suffix: str,
    progress: bool = True,
    kind_of: Callable[[str], str] = lambda kind: kind,
) -> dict[str, Any]:
    """Check ``runs`` mutants; a mutant with problems is a finding (its bytes and problems go to ``findings``).

    Returns the summary: runs, findings (and the first five), seconds, the
    worst CPU time of one mutant's checks, peak RSS, its growth over the run
    and the most one mutant raised it, and how many mutants of each kind
    (``kind_of`` of the mutator's name).
    """
    kinds: Counter[str] = Counter()
    found: list[dict[str, Any]] = []
    rss_start = peak_rss_mb()
    start = time.perf_counter()
    worst = jump = 0.0
    for i in range(runs):
        blob, kind = mutant()
        kinds[kind_of(kind)] += 1
        t0, rss0 = time.thread_time(), peak_rss_mb()
        problems = check(blob)
        worst = max(worst, time.thread_time() - t0)
        jump = max(jump, peak_rss_mb() - rss0)
        if problems:
            found.append({"run": i, "kind": kind, "problems": problems})
            if findings is not None:
                findings.mkdir(parents=True, exist_ok=True)
                (findings / f"finding-{i}{suffix}").write_bytes(blob)
                (findings / f"finding-{i}.txt").write_text("\n".join(problems))
        if progress and (i + 1) % 10000 == 0:
            print(
                f"{i + 1} runs, {len(found)} findings, {time.perf_counter() - start:.0f} s, "
                f"peak RSS {peak_rss_mb():.0f} MB",
                file=sys.stderr,
            )
    return {
        "runs": runs,
        "findings": len(found),
        "first_findings": found[:5],
        "seconds": time.perf_counter() - start,
        "worst_cpu_seconds_per_mutant": worst,
        "peak_rss_mb": peak_rss_mb(),
        "rss_growth_mb": peak_rss_mb() - rss_start,
        "largest_rss_jump_mb": jump,  # the most one mutant's checks raised the peak RSS
        "mutations": dict(sorted(kinds.items())),
    }


def arguments(doc: str | None, findings: str) -> argparse.ArgumentParser:
    """The options every fuzzer takes: runs, seed, CPU and RSS bounds, where findings and the report go."""
    parser = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-seconds", type=float, default=1.0, help="CPU seconds allowed per call")
    parser.add_argument("--max-rss-mb", type=float, default=300.0)
    parser.add_argument("--findings", type=Path, default=Path(findings))
    parser.add_argument("--report", type=Path, help="write the summary as JSON here")
    return parser


def report(summary: dict[str, Any], args: argparse.Namespace, rss_mb: float) -> int:
    """Print the summary as JSON (and write it to ``--report``); 1 if anything was found or RSS went over."""
    summary["max_rss_mb"] = args.max_rss_mb
    summary["cpu"] = cpu_name()
    text = json.dumps(summary, indent=1, default=str)
    print(text)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(text)
    return 1 if summary["findings"] or rss_mb > args.max_rss_mb else 0


def cpu_name() -> str:
    """Model name with family and model numbers (VMs often show only "AMD EPYC")."""
    try:
        pairs = (line.split(":", 1) for line in Path("/proc/cpuinfo").read_text().splitlines()[:30] if ":" in line)
        info = {k.strip(): v.strip() for k, v in pairs}
        return f"{info['model name']} (family {info['cpu family']}, model {info['model']})"
    except (OSError, KeyError):
        return os.uname().machine
