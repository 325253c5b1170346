"""docs/transfer.md tables and docs/img/transfer.png from the JSON files of ``run.py``.

    python -m benchmarks.transfer.report out/transfer --markdown out/transfer/tables.md --plot docs/img/transfer.png

Medians over rounds where a combination ran more than once.  Energy follows ``energy.py``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

from . import energy
from .netlab import PROFILES
from .payloads import LABELS, METHODS

PAPER_FILES = 22_366
PAPER = {"raw": (406.58, 0.0056), "amser": (180.75, 0.0025)}  # seconds, kWh (the paper's Table III)
TRANSPORT_LABEL = {
    "paper": "new connection per file",
    "keepalive-nagle": "kept-alive, Nagle on (old client)",
    "keepalive": "kept-alive, TCP_NODELAY",
    "ws": "one WebSocket, no waiting (client now)",
    "stream": "live-stream WebSocket per file",
}


def load(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


def grouped(records: list[dict], recognise: bool) -> dict[tuple, dict]:
    """(profile, method, transport) -> medians of one combination over its rounds (largest --count wins)."""
    runs: dict[tuple, list[tuple[dict, dict]]] = defaultdict(list)
    for rec in records:
        if rec["recognise"] != recognise or rec["dataset"] != "emotion":
            continue
        for run in rec["runs"]:
            if "answer_s" in run:
                runs[(run["profile"], run["method"], run["transport"])].append((rec, run))
    out = {}
    for key, items in runs.items():
        count = max(rec["count"] for rec, _ in items)
        items = [(rec, run) for rec, run in items if rec["count"] == count]
        rec = items[0][0]
        seconds = statistics.median(run["answer_s"][-1] for _, run in items)
        first = statistics.median(min(run["answer_s"]) for _, run in items)
        up = statistics.median(run["wire"]["tx_bytes"] for _, run in items)
        down = statistics.median(run["wire"]["rx_bytes"] for _, run in items)
        payload = sum(rec["payloads"][key[1]]["bytes"][:count])
        radio = energy.radio_for_profile(key[0])
        out[key] = {
            "count": count,
            "rounds": len(items),
            "seconds": seconds,
            "first": first,
            "up": up,
            "down": down,
            "payload": payload,
            "audio_s": rec["audio_seconds"],
            "packets": statistics.median(run["wire"]["tx_packets"] for _, run in items),
            "dropped": statistics.median(run["dropped_packets"] for _, run in items),
            "radio_j": energy.radio_energy_j(radio, seconds, up, down),
            "rtt": rec["profiles"][key[0]]["measured_rtt_ms"],
            "texts": items[0][1]["texts"],
            "rec": rec,
        }
    return out


def extrapolated(row: dict, profile: str, files: int = PAPER_FILES) -> tuple[float, float]:
    """Seconds and radio joules for ``files`` files (the paper's 22,366) at this row's measured per-file cost."""
    scale = files / row["count"]
    seconds = row["seconds"] * scale
    return seconds, energy.radio_energy_j(
        energy.radio_for_profile(profile), seconds, row["up"] * scale, row["down"] * scale
    )


def transmission_tables(groups: dict[tuple, dict]) -> list[str]:
    lines = []
    for profile in PROFILES:
        rows = {k[1:]: v for k, v in groups.items() if k[0] == profile}
        if not rows:
            continue
        base = rows.get(("wav", "paper"))
        p = PROFILES[profile]
        any_row = next(iter(rows.values()))
        radio = energy.radio_for_profile(profile)
        lines += [
            f"### {profile}: {p.up_kbit:g} kbit/s up, {p.down_kbit:g} down, RTT {p.rtt_ms:g} ms "
            f"(measured {any_row['rtt']:.0f} ms), loss {p.loss_pct:g}%; the first N emotion clips (median 3.6 s); "
            f"radio model {radio.name}",
            "",
            "| payload | transport | files (rounds) | bytes up on the wire (payload) | packets up (lost) | time s "
            "| ms/file | speed-up vs WAV (paper's way) | radio J | saving vs WAV | 22,366 files: s | kWh |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for method in METHODS:
            for transport in TRANSPORT_LABEL:
                r = rows.get((method, transport))
                if r is None:
                    continue
                # Against WAV at WAV's file count (rows measured with more files are scaled per file).
                rs, rj = extrapolated(r, profile, base["count"]) if base else (0.0, 0.0)
                speed = f"{base['seconds'] / rs:.1f} x" if base else "-"
                saving = f"{100 * (1 - rj / base['radio_j']):.0f}%" if base else "-"
                xs, xj = extrapolated(r, profile)
                lines.append(
                    f"| {LABELS[method]} | {TRANSPORT_LABEL[transport]} | {r['count']} ({r['rounds']}) | "
                    f"{r['up']:,.0f} ({r['payload']:,}) | "
                    f"{r['packets']:,.0f} ({r['dropped']:.0f}) | {r['seconds']:.2f} | {1000 * r['seconds'] / r['count']:.0f} | "
                    f"{speed} | {r['radio_j']:.1f} | {saving} | {xs:,.0f} | {xj / 3.6e6:.5f} |"
                )
        lines.append("")
    return lines


def encode_table(records: list[dict], folder: Path) -> list[str]:
    """Sizes from the payloads the runs sent; CPU times from ``encode/*.json`` (payloads.py, interleaved,
    one thread) when present, else from the payload build."""
    rec = max((r for r in records if r["dataset"] == "emotion"), key=lambda r: (len(r["payloads"]), r["count"]))
    n = rec["count"]
    timed = sorted((folder / "encode").glob("*.json"))
    times = json.loads(timed[-1].read_text()) if timed else None
    cpu_source = (
        f"interleaved measurement of {times['count']} clips (`python -m benchmarks.transfer.payloads`) on {times['cpu']}, "
        f"back end `{times['backend']}`"
        if times
        else f"the payload build on {rec['cpu']}, back end `{rec['encode_backend']}`"
    )
    lines = [
        f"Payloads of the first {n} emotion clips ({rec['audio_seconds']:.0f} s of audio). Device encode CPU time "
        f"from 16 kHz samples to payload bytes (features included for containers; Opus in an ffmpeg child "
        f"process, its start-up included): {cpu_source}; one thread. CPU energy: the bound of energy.py.",
        "",
        "| payload | bytes per clip (median) | kbps | % of WAV | encode ms per clip (median) | ms per audio s "
        "| CPU energy bound mJ per clip |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    wav = statistics.median(rec["payloads"]["wav"]["bytes"][:n]) if "wav" in rec["payloads"] else None
    for method in METHODS:
        if method not in rec["payloads"]:
            continue
        sizes = rec["payloads"][method]["bytes"][:n]
        cpu = times["encode_cpu_s"][method] if times else rec["payloads"][method]["encode_cpu_s"][:n]
        audio_s = times["audio_seconds"] if times else rec["audio_seconds"]
        kbps = sum(sizes) * 8 / rec["audio_seconds"] / 1000
        share = f"{100 * statistics.median(sizes) / wav:.1f}%" if wav else "-"
        lines.append(
            f"| {LABELS[method]} | {statistics.median(sizes):,.0f} | {kbps:.2f} | {share} | "
            f"{1000 * statistics.median(cpu):.2f} | {1000 * sum(cpu) / audio_s:.2f} | "
            f"{1000 * energy.cpu_energy_j(statistics.median(cpu)):.1f} |"
        )
    return lines


def table3(groups: dict[tuple, dict]) -> list[str]:
    """The paper's Table III beside ours: 22,366 files at each profile's measured per-file cost."""
    lines = [
        "| link | raw audio | s | kWh (radio) | containers | s | kWh (radio) | faster | less energy |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
        f"| the paper (its own network, not stated) | raw audio | {PAPER['raw'][0]} | {PAPER['raw'][1]} | "
        f"SVD 6.25% | {PAPER['amser'][0]} | {PAPER['amser'][1]} | {PAPER['raw'][0] / PAPER['amser'][0]:.2f} x | "
        f"{100 * (1 - PAPER['amser'][1] / PAPER['raw'][1]):.1f}% |",
    ]
    pairs = (
        (("wav", "paper"), ("svd-paper", "paper"), "the paper's way, SVD"),
        (("wav", "paper"), ("amser", "ws"), "default codec, client now"),
    )
    for profile in PROFILES:
        for raw_key, ours_key, what in pairs:
            raw, ours = groups.get((profile, *raw_key)), groups.get((profile, *ours_key))
            if not raw or not ours:
                continue
            rs, rj = extrapolated(raw, profile)
            cs, cj = extrapolated(ours, profile)
            lines.append(
                f"| {profile} | WAV, {TRANSPORT_LABEL[raw_key[1]]} | {rs:,.0f} | {rj / 3.6e6:.4f} | "
                f"{LABELS[ours_key[0]]}, {TRANSPORT_LABEL[ours_key[1]]} ({what}) | {cs:,.0f} | {cj / 3.6e6:.4f} | "
                f"{rs / cs:.1f} x | {100 * (1 - cj / rj):.1f}% |"
            )
    return lines


def recognition_table(groups: dict[tuple, dict]) -> list[str]:
    lines = [
        "| profile | payload | transport | clips | first transcript s | all transcripts s |",
        "|---|---|---|---:|---:|---:|",
    ]
    for (profile, method, transport), r in sorted(
        groups.items(), key=lambda kv: (list(PROFILES).index(kv[0][0]), METHODS.index(kv[0][1]))
    ):
        lines.append(
            f"| {profile} | {LABELS[method]} | {TRANSPORT_LABEL[transport]} | {r['count']} | {r['first']:.2f} | "
            f"{r['seconds']:.2f} |"
        )
    return lines


def wer_table(records: list[dict]) -> list[str]:
    """WER of the transcripts the service returned, per payload, for each run with recognition on a link."""
    from amser_dsp.server.evaluation.scoring import normaliser, word_errors

    norm, norm_name = normaliser()
    columns = []  # (heading, {method: (errors, words)})
    for rec in records:
        if not rec["recognise"] or rec["count"] < 50:
            continue
        scores: dict[str, list[int]] = {}
        for run in rec["runs"]:
            if "texts" not in run or run["method"] in scores:
                continue
            errors = words = 0
            for ref, hyp in zip(rec["texts"], run["texts"], strict=True):
                e, w = word_errors(norm(ref), norm(hyp))
                errors, words = errors + e, words + w
            scores[run["method"]] = [errors, words]
        where = rec["runs"][0]["profile"]
        if rec["dataset"] == "asr":
            heading = f"{rec['count']} asr clips ({where}; kltdct tables trained on them: in sample)"
        else:
            heading = f"{rec['count']} RAVDESS clips ({where}; out of sample)"
        columns.append((heading, scores))
    if not columns:
        return ["(no run with recognition of 50 clips or more yet)"]
    lines = [
        "Transcripts returned by the service after crossing the link (TCP delivers every byte, so the link does "
        f"not change a transcript); {norm_name}. WER % (reference words).",
        "",
        "| payload | " + " | ".join(h for h, _ in columns) + " |",
        "|---|" + "---:|" * len(columns),
    ]
    for method in METHODS:
        cells = [
            f"{100 * sc[method][0] / sc[method][1]:.2f} ({sc[method][1]})" if method in sc else "-" for _, sc in columns
        ]
        lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    return lines


def plot(groups: dict[tuple, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    profiles = [p for p in PROFILES if any(k[0] == p for k in groups)]
    cols = min(3, len(profiles) + 1)
    rows = -(-(len(profiles) + 1) // cols)  # one more cell for the legend
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.6 * rows), squeeze=False)
    cells = list(axes.flat)
    markers = dict(zip(METHODS, "osD^v*P", strict=True))
    colours = dict(zip(TRANSPORT_LABEL, ("tab:red", "tab:orange", "tab:olive", "tab:blue", "tab:purple"), strict=True))
    for ax, profile in zip(cells, profiles, strict=False):
        for (p, method, transport), r in groups.items():
            if p != profile:
                continue
            ax.scatter(
                r["up"] / r["count"] / 1000,
                1000 * r["seconds"] / r["count"],
                marker=markers[method],
                color=colours[transport],
                s=40,
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        prof = PROFILES[profile]
        ax.set_title(f"{profile} ({prof.up_kbit:g} kbit/s up, {prof.rtt_ms:g} ms, {prof.loss_pct:g}%)", fontsize=9)
        ax.set_xlabel("kB up on the wire per file")
        ax.set_ylabel("ms per file")
        ax.grid(True, which="both", alpha=0.3)
    for ax in cells[len(profiles) :]:
        ax.axis("off")
    handles = [plt.Line2D([], [], marker=markers[m], linestyle="", color="grey", label=LABELS[m]) for m in METHODS]
    handles += [
        plt.Line2D([], [], marker="o", linestyle="", color=c, label=TRANSPORT_LABEL[t]) for t, c in colours.items()
    ]
    cells[len(profiles)].legend(handles=handles, loc="center", fontsize=8, frameon=False)
    fig.suptitle(
        "Upload time per file against bytes per file (first byte to last answer, server validates only)", fontsize=10
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def checks(groups: dict[tuple, dict], records: list[dict]) -> list[str]:
    """The issue's must-show ratios, computed from the same medians."""
    out = []
    g = {k: v for k, v in groups.items()}
    a, w, f = g.get(("lte-weak", "amser", "ws")), g.get(("lte-weak", "wav", "paper")), g.get(("lte-weak", "flac", "ws"))
    if a and w and f:
        out.append(
            f"- lte-weak, {a['count']} clips: default-codec containers over one WebSocket {a['seconds']:.2f} s; "
            f"WAV the paper's way {w['seconds']:.2f} s ({w['seconds'] / a['seconds']:.1f} x); FLAC the best "
            f"way {f['seconds']:.2f} s ({f['seconds'] / a['seconds']:.1f} x); radio energy saving against WAV "
            f"{100 * (1 - a['radio_j'] / w['radio_j']):.1f}% ({a['radio_j']:.1f} J against {w['radio_j']:.1f} J)"
        )
    for profile in ("2g-edge", "3g"):
        for transport in TRANSPORT_LABEL:
            c, o = g.get((profile, "amser", transport)), g.get((profile, "opus16", transport))
            if c and o:
                out.append(
                    f"- {profile}, {TRANSPORT_LABEL[transport]}: container {c['seconds']:.2f} s against "
                    f"Opus 16 kbps {o['seconds']:.2f} s ({o['seconds'] / c['seconds']:.1f} x)"
                )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", type=Path)
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--plot", type=Path)
    args = parser.parse_args(argv)
    records = load(args.folder)
    if not records:
        parser.error(f"no run.py results in {args.folder}")
    tx = grouped(records, recognise=False)
    asr = grouped(records, recognise=True)
    cpus = sorted({r["cpu"] for r in records})
    lines = [f"CPU: {', '.join(cpus)}. Commands: " + "; ".join(f"`{r['command']}`" for r in records), ""]
    lines += ["## Checks", "", *checks(tx, records), "", "## Transmission", "", *transmission_tables(tx)]
    lines += ["## Table III analogue (22,366 files)", "", *table3(tx), ""]
    lines += ["## Encoding on the device", "", *encode_table(records, args.folder), ""]
    lines += ["## With recognition", "", *recognition_table(asr), "", "## Word error rate", "", *wer_table(records)]
    text = "\n".join(lines) + "\n"
    if args.markdown:
        args.markdown.write_text(text)
    print(text)
    if args.plot:
        plot(tx, args.plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
