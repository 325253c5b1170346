"""Turn pytest-benchmark JSON into one Markdown table.

Usage: ``python benchmarks/report.py out/bench.json [--seconds 60]``.

For every benchmark: median microseconds of wall time per second of audio,
the real-time factor (processing time / audio duration; 1e-4 means 10,000
times faster than real time) and the ratio to the fastest anchor library timed
on the same audio length with one thread (below 1: faster than every anchor).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def rows_from(data: dict) -> list[dict]:
    """One dict per benchmark with what, kind, threads, seconds, median_us (per audio second)."""
    rows = []
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info", {})
        seconds = info.get("seconds")
        if not seconds:
            continue  # not a per-audio-second benchmark (e.g. codec benchmarks without it)
        rows.append(
            {
                "what": info.get("what", bench["name"]),
                "kind": info.get("kind", "?"),
                "threads": info.get("threads", 1),
                "seconds": seconds,
                "median_us": bench["stats"]["median"] / seconds * 1e6,
                "min_us": bench["stats"]["min"] / seconds * 1e6,
            }
        )
    return rows


def table(rows: list[dict], seconds: list[int] | None = None) -> str:
    """Markdown table, grouped by audio length, fastest first."""
    lines = [
        "| audio | front end | kind | threads | median us per audio-s | best | real-time factor | vs fastest anchor |",
        "|---:|---|---|---:|---:|---:|---:|---:|",
    ]
    rows = [r for r in rows if r["kind"] != "codec"]
    lengths = sorted({r["seconds"] for r in rows})
    for length in lengths:
        if seconds and length not in seconds:
            continue
        group = sorted((r for r in rows if r["seconds"] == length), key=lambda r: r["median_us"])
        anchors = [r["median_us"] for r in group if r["kind"] == "anchor" and r["threads"] == 1]
        fastest = min(anchors) if anchors else None
        for r in group:
            ratio = f"{r['median_us'] / fastest:.2f}" if fastest else "-"
            lines.append(
                f"| {length:g} s | {r['what']} | {r['kind']} | {r['threads']} | {r['median_us']:,.1f} | "
                f"{r['min_us']:,.1f} | {r['median_us'] * 1e-6:.2e} | {ratio} |"
            )
    return "\n".join(lines)


def codec_table(rows: list[dict]) -> str:
    """Codec timings against their budget, the NumPy back end's features of the same audio."""
    codec = [r for r in rows if r["kind"] == "codec"]
    budget = next((r for r in codec if "budget" in r["what"]), None)
    if not codec or budget is None:
        return ""
    lines = ["| codec step | audio | median ms | vs the features (NumPy back end) |", "|---|---:|---:|---:|"]
    for r in sorted(codec, key=lambda r: r["median_us"]):
        ms = r["median_us"] * r["seconds"] / 1000
        lines.append(f"| {r['what']} | {r['seconds']:g} s | {ms:.2f} | {r['median_us'] / budget['median_us']:.3f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json", type=Path, help="pytest-benchmark --benchmark-json output")
    parser.add_argument("--seconds", type=int, action="append", help="only these audio lengths (repeatable)")
    args = parser.parse_args(argv)
    data = json.loads(args.json.read_text(encoding="utf-8"))
    rows = rows_from(data)
    if not rows:
        print(f"no front-end benchmarks in {args.json}", file=sys.stderr)
        return 1
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {}).get("brand_raw", "")
    print(f"{data.get('datetime', '')} {machine.get('node', '')} {cpu} python {machine.get('python_version', '')}\n")
    if any(r["kind"] != "codec" for r in rows):
        print(table(rows, args.seconds))
    codec = codec_table(rows)
    if codec:
        print("\n" + codec)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
