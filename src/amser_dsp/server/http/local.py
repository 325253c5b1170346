"""Run ``amser serve`` in a child process on 127.0.0.1 for demos, tests and load tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

__all__ = ["LocalServer"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _die_with_parent() -> None:
    """In the child: SIGTERM when the thread that started it dies (Linux), so a killed run leaves no server."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class LocalServer:
    """``with LocalServer(["--queue", "4"]) as url:`` starts the service, waits for /healthz, stops it after.

    Parameters
    ----------
    args : list of str
        Extra ``amser serve`` options.
    env : dict, optional
        Extra environment variables (``AMSER_API_KEY``, ...).  The caller's own ``AMSER_API_KEY`` and
        ``AMSER_API_KEY_FILE`` are not inherited: a local server has a key only when given one here.
    startup_timeout : float
        Seconds to wait for the service to answer.
    port : int, optional
        The port to listen on (default: a free one); a replica restarted on its old port takes it again.
    """

    def __init__(
        self,
        args: list[str] | None = None,
        *,
        env: dict[str, str] | None = None,
        startup_timeout: float = 60.0,
        port: int | None = None,
    ) -> None:
        self.args, self.extra_env, self.startup_timeout = list(args or []), env or {}, startup_timeout
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None
        # The server logs a line per request: a file, not a pipe nobody reads (a full pipe blocks the server).
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (open while the server runs, closed by __exit__)

    def __enter__(self) -> str:
        import httpx

        src = str(Path(__file__).resolve().parents[2])
        inherited = {k: v for k, v in os.environ.items() if k not in ("AMSER_API_KEY", "AMSER_API_KEY_FILE")}
        env = {
            **inherited,
            "PYTHONPATH": os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")])),
            **self.extra_env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "amser_dsp", "serve", "--host", "127.0.0.1", "--port", str(self.port), *self.args],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        deadline = time.monotonic() + self.startup_timeout
        try:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"amser serve exited: {self.log_tail()}")
                try:
                    if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                        return self.url
                except httpx.TransportError:
                    time.sleep(0.2)
            raise TimeoutError(f"amser serve did not answer within {self.startup_timeout} s")
        except BaseException:  # Ctrl-C while waiting included: __exit__ will not run
            self.stop()
            raise

    def log_tail(self, n_bytes: int = 4000) -> str:
        """The end of the server's log (stderr)."""
        self.log.seek(0, os.SEEK_END)
        self.log.seek(max(0, self.log.tell() - n_bytes))
        return self.log.read().decode(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
        self.log.close()
