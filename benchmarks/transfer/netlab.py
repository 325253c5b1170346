"""A shaped link between two network namespaces on one machine (root only).

    python -m benchmarks.transfer.netlab up lte-weak     # set up, print the measured RTT, leave it up
    python -m benchmarks.transfer.netlab down            # remove everything this module made
    python -m benchmarks.transfer.netlab check           # up, measure every profile, down

Topology (every name starts with the prefix, ``amtx`` by default, so clean-up
removes only what this module made; no address exists outside these namespaces)::

    {p}-dev                     {p}-link                               {p}-srv
    {p}-d0 10.77.1.2 ==veth== {p}-d1   {p}-tun (relay.py)   {p}-s1 ==veth== {p}-s0 10.77.2.2
      tbf: uplink rate          tbf on {p}-d1: downlink rate
                                nftables: random loss of packets leaving the relay

- Rate: ``tbf`` on the device's veth (uplink) and on the link side of it (downlink).
- Delay: the link namespace routes everything it forwards into a TUN device that
  ``relay.py`` reads, holds for RTT/2 and writes back (this kernel has no netem).
- Loss: nftables ``numgen random`` drops packets after the relay, i.e. after they
  were sent and counted on the device's interface, as a radio loses them.
- Segmentation offload is off on the device's veth (``gso_max_segs 1``), so the
  interface counters count real MTU-sized packets with their own headers.

Set-up and tear-down are bounded in time (every command has a timeout) and
clean-up runs before every set-up, at exit, and on SIGTERM/SIGINT/SIGHUP.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["PROFILES", "Lab", "Profile", "cleanup", "missing_tools"]

RELAY = Path(__file__).with_name("relay.py")
DEV_ADDR, SRV_ADDR = "10.77.1.2", "10.77.2.2"
CMD_TIMEOUT = 20.0


@dataclass(frozen=True)
class Profile:
    """A link as the device sees it: rates in kbit/s, round trip in ms (added by the relay), loss in %."""

    name: str
    up_kbit: float
    down_kbit: float
    rtt_ms: float
    loss_pct: float
    note: str = ""


#: Uplink rate, RTT and loss as the links users reported; downlink rates are our assumption (answers are small JSON,
#: so they barely matter): a few times the uplink, as cellular links are asymmetric.
PROFILES: dict[str, Profile] = {
    p.name: p
    for p in (
        Profile("2g-edge", 200, 400, 300, 2.0, "EDGE-class uplink"),
        Profile("3g", 1000, 4000, 150, 1.0, "HSPA-class uplink"),
        Profile("lte-weak", 2000, 8000, 60, 1.0, "LTE at the cell edge"),
        Profile("lte", 10000, 30000, 40, 0.1, "LTE, good signal"),
        Profile("wifi", 50000, 50000, 10, 0.0, "home Wi-Fi"),
    )
}


def missing_tools() -> list[str]:
    """What the lab needs and this machine lacks (root, ip, tc, nft, /dev/net/tun); empty when it can run."""
    missing = [] if os.geteuid() == 0 else ["root (network namespaces need it)"]
    missing += [
        f"{t} (apt-get install {pkg})"
        for t, pkg in (("ip", "iproute2"), ("tc", "iproute2"), ("nft", "nftables"))
        if shutil.which(t) is None
    ]
    if not Path("/dev/net/tun").exists():
        missing.append("/dev/net/tun")
    return missing


def run(*args: str, check: bool = True, timeout: float = CMD_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, timeout=timeout, capture_output=True, text=True)


def _namespaces(prefix: str) -> list[str]:
    out = run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.split() and line.split()[0].startswith(f"{prefix}-")]


def cleanup(prefix: str = "amtx") -> list[str]:
    """Kill the processes inside this prefix's namespaces and delete the namespaces (and so their veths, TUN,
    qdiscs and nftables tables); returns the namespaces removed.  Touches nothing else."""
    removed = []
    for ns in _namespaces(prefix):
        for pid in run("ip", "netns", "pids", ns, check=False).stdout.split():
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        run("ip", "netns", "del", ns, check=False)
        removed.append(ns)
    return removed


def leftovers(prefix: str = "amtx") -> list[str]:
    """Namespaces or interfaces in the root namespace whose names start with the prefix (should be none)."""
    links = run("ip", "-o", "link", "show", check=False).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in links.splitlines() if ":" in line]
    return _namespaces(prefix) + [n for n in names if n.startswith(f"{prefix}-")]


class Lab:
    """Three namespaces joined through a shaped, delayed, lossy link; a context manager that always cleans up.

    Parameters
    ----------
    prefix : str
        Start of every namespace and interface name (at most 8 characters).
    """

    def __init__(self, prefix: str = "amtx") -> None:
        if not (1 <= len(prefix) <= 8 and prefix.isalnum()):
            raise ValueError(f"prefix must be 1-8 letters or digits, got {prefix!r}")
        self.prefix = prefix
        self.dev, self.link, self.srv = f"{prefix}-dev", f"{prefix}-link", f"{prefix}-srv"
        self.dev_if, self.tun = f"{prefix}-d0", f"{prefix}-tun"
        self.relay: subprocess.Popen[bytes] | None = None
        self.profile: Profile | None = None
        self._old_handlers: dict[int, object] = {}

    # ------------------------------------------------------------------ life cycle
    def __enter__(self) -> Lab:
        missing = missing_tools()
        if missing:
            raise RuntimeError("the network lab needs " + ", ".join(missing))
        cleanup(self.prefix)  # whatever an interrupted run left
        atexit.register(self.close)
        for sig in (signal.SIGTERM, signal.SIGHUP):
            self._old_handlers[sig] = signal.signal(sig, self._on_signal)
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _on_signal(self, signum: int, frame: object) -> None:
        self.close()
        raise SystemExit(128 + signum)

    def close(self) -> None:
        """Stop the relay and remove every namespace of this prefix (idempotent)."""
        if self.relay is not None:
            self.relay.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.relay.wait(5)
            self.relay = None
        cleanup(self.prefix)
        for sig, handler in self._old_handlers.items():
            signal.signal(sig, handler)  # type: ignore[arg-type]
        self._old_handlers.clear()
        atexit.unregister(self.close)

    def _build(self) -> None:
        p, dev, link, srv = self.prefix, self.dev, self.link, self.srv
        for ns in (dev, link, srv):
            run("ip", "netns", "add", ns)
            self.ip(ns, "link", "set", "lo", "up")
        # Both ends of each veth are born inside their namespaces: nothing ever exists in the root namespace.
        run("ip", "link", "add", f"{p}-d0", "netns", dev, "type", "veth", "peer", "name", f"{p}-d1", "netns", link)
        run("ip", "link", "add", f"{p}-s0", "netns", srv, "type", "veth", "peer", "name", f"{p}-s1", "netns", link)
        for ns, ifname in ((dev, f"{p}-d0"), (link, f"{p}-d1"), (link, f"{p}-s1"), (srv, f"{p}-s0")):
            # One MTU-sized packet per skb, so interface counters count what a radio would send.
            self.ip(ns, "link", "set", ifname, "gso_max_segs", "1", "up")
        self.ip(dev, "addr", "add", f"{DEV_ADDR}/24", "dev", f"{p}-d0")
        self.ip(link, "addr", "add", "10.77.1.1/24", "dev", f"{p}-d1")
        self.ip(link, "addr", "add", "10.77.2.1/24", "dev", f"{p}-s1")
        self.ip(srv, "addr", "add", f"{SRV_ADDR}/24", "dev", f"{p}-s0")
        self.ip(dev, "route", "add", "default", "via", "10.77.1.1")
        self.ip(srv, "route", "add", "default", "via", "10.77.2.1")
        # The link namespace forwards; whatever arrives on either veth goes to the relay's TUN first.
        self.ip(link, "tuntap", "add", "dev", self.tun, "mode", "tun")
        self.ip(link, "link", "set", self.tun, "up")
        for key in (
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.rp_filter=0",
            "net.ipv4.conf.default.rp_filter=0",
            f"net.ipv4.conf.{self.tun}.rp_filter=0",
        ):
            self.netns_exec(link, "sysctl", "-qw", key)
        self.ip(link, "route", "add", "default", "dev", self.tun, "table", "100")
        for ifname in (f"{p}-d1", f"{p}-s1"):
            self.ip(link, "rule", "add", "iif", ifname, "table", "100")

    # ------------------------------------------------------------------ helpers
    def ip(self, ns: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run("ip", "-n", ns, *args)

    def netns_exec(
        self, ns: str, *args: str, check: bool = True, timeout: float = CMD_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        return run("ip", "netns", "exec", ns, *args, check=check, timeout=timeout)

    def popen(self, ns: str, args: list[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start ``args`` inside namespace ``ns`` (killed by :meth:`close` at the latest)."""
        return subprocess.Popen(["ip", "netns", "exec", ns, *args], **kwargs)  # type: ignore[call-overload]

    # ------------------------------------------------------------------ shaping
    def apply(self, profile: Profile) -> None:
        """Shape the link to ``profile`` (rate, delay, loss); replaces the previous profile."""
        p = self.prefix
        for ns, ifname, kbit in ((self.dev, f"{p}-d0", profile.up_kbit), (self.link, f"{p}-d1", profile.down_kbit)):
            # Burst: at least two full frames and 4 ms of the rate (the timer's granularity); a queue of 200 ms
            # of the rate (cellular links buffer deeply) but no fewer than 32 frames.
            rate_bytes = kbit * 1000 / 8
            burst = max(3028, int(rate_bytes * 0.004))
            limit = max(32 * 1514, int(rate_bytes * 0.2))
            self.ip(ns, "link", "set", ifname, "txqueuelen", "1000")
            run(
                "tc",
                "-n",
                ns,
                "qdisc",
                "replace",
                "dev",
                ifname,
                "root",
                "tbf",
                "rate",
                f"{kbit}kbit",
                "burst",
                str(burst),
                "limit",
                str(limit),
            )
        self._set_loss(profile.loss_pct)
        self._restart_relay(profile.rtt_ms / 2)
        self.profile = profile

    def _set_loss(self, loss_pct: float) -> None:
        ruleset = f"table inet {self.prefix}\ndelete table inet {self.prefix}\n"
        ruleset += f"table inet {self.prefix} {{\n  chain forward {{\n    type filter hook forward priority 0; policy accept;\n"
        if loss_pct > 0:
            per_100k = round(loss_pct * 1000)
            ruleset += f'    iifname "{self.tun}" numgen random mod 100000 < {per_100k} counter drop\n'
        ruleset += "  }\n}\n"
        with tempfile.NamedTemporaryFile("w", suffix=".nft") as f:
            f.write(ruleset)
            f.flush()
            self.netns_exec(self.link, "nft", "-f", f.name)

    def _restart_relay(self, delay_ms: float) -> None:
        if self.relay is not None:
            self.relay.terminate()
            self.relay.wait(5)
        with tempfile.TemporaryDirectory() as tmp:
            ready = Path(tmp) / "ready"
            # Real-time priority: the relay stands for the network, so a busy machine must not delay its timers.
            rt = ["chrt", "-f", "20"] if shutil.which("chrt") else []
            self.relay = self.popen(
                self.link,
                [
                    *rt,
                    sys.executable,
                    str(RELAY),
                    "--tun",
                    self.tun,
                    "--delay-ms",
                    str(delay_ms),
                    "--ready-file",
                    str(ready),
                ],
            )
            deadline = time.monotonic() + CMD_TIMEOUT
            while not ready.exists():
                if self.relay.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the delay relay did not start (exit {self.relay.poll()})")
                time.sleep(0.02)

    # ------------------------------------------------------------------ measuring
    def counters(self) -> dict[str, int]:
        """Bytes and packets on the device's interface (Ethernet frames, headers and retransmissions included)."""
        out = json.loads(self.ip(self.dev, "-s", "-j", "link", "show", self.dev_if).stdout)[0]["stats64"]
        return {
            "tx_bytes": out["tx"]["bytes"],
            "tx_packets": out["tx"]["packets"],
            "rx_bytes": out["rx"]["bytes"],
            "rx_packets": out["rx"]["packets"],
        }

    def dropped(self) -> int:
        """Packets the loss rule has dropped so far in this profile."""
        out = self.netns_exec(self.link, "nft", "-j", "list", "table", "inet", self.prefix).stdout
        for item in json.loads(out)["nftables"]:
            for expr in item.get("rule", {}).get("expr", []):
                if "counter" in expr:
                    return int(expr["counter"]["packets"])
        return 0

    def measure_rtt(self, port: int, count: int = 7) -> float:
        """Median TCP handshake time (ms) from the device to ``SRV_ADDR:port``: one round trip on the idle link."""
        code = (
            "import socket,time,statistics\n"
            "r=[]\n"
            f"for _ in range({count}):\n"
            "    t=time.perf_counter()\n"
            f"    s=socket.create_connection(('{SRV_ADDR}',{port}),timeout=10)\n"
            "    r.append(time.perf_counter()-t); s.close(); time.sleep(0.05)\n"
            "print(statistics.median(r)*1000)\n"
        )
        return float(self.netns_exec(self.dev, sys.executable, "-c", code, timeout=60).stdout)


def _echo_server(lab: Lab) -> tuple[subprocess.Popen[bytes], int]:
    port = 9009
    code = f"import socket\ns=socket.create_server(('{SRV_ADDR}',{port}))\nwhile True:\n    c,_=s.accept(); c.close()\n"
    proc = lab.popen(lab.srv, [sys.executable, "-c", code])
    time.sleep(0.3)
    return proc, port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["up", "down", "check"])
    parser.add_argument("profile", nargs="?", default="lte-weak", choices=sorted(PROFILES))
    parser.add_argument("--prefix", default="amtx")
    args = parser.parse_args(argv)
    missing = missing_tools()
    if missing:
        print("netlab needs " + ", ".join(missing), file=sys.stderr)
        return 2
    if args.action == "down":
        print("removed:", " ".join(cleanup(args.prefix)) or "nothing")
        return 0
    lab = Lab(args.prefix)
    lab.__enter__()
    try:
        server, port = _echo_server(lab)
        names = list(PROFILES) if args.action == "check" else [args.profile]
        for name in names:
            lab.apply(PROFILES[name])
            rtts = [lab.measure_rtt(port) for _ in range(1)]
            print(f"{name}: configured RTT {PROFILES[name].rtt_ms:.0f} ms, measured {statistics.median(rtts):.1f} ms")
        server.kill()
        if args.action == "up":
            lab.relay = None  # leave it running for the user; `down` removes it
            atexit.unregister(lab.close)
            return 0
    finally:
        if args.action != "up":
            lab.close()
            left = leftovers(args.prefix)
            print("left over:", " ".join(left) or "nothing")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
