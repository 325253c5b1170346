"""A packet delay line: what netem's ``delay`` does, in user space, for kernels without netem.

    python relay.py --tun amtx-tun --delay-ms 30

Runs inside the middle network namespace of :mod:`netlab`.  The kernel routes
every IPv4 packet that crosses that namespace (both directions) into the TUN
device ``--tun``; this process reads each packet, holds it for ``--delay-ms``
and writes it back into the same TUN device, where the kernel routes it on to
its destination.  Each direction therefore gets the one-way delay once and a
round trip gets it twice (``--delay-ms`` = RTT / 2).

Why packets and not a TCP proxy (toxiproxy's latency toxic): a proxy ends the
device's TCP connection in the proxy, so the device's handshake, congestion
window and loss recovery would all see a round trip of nearly zero; here the
two ends keep one TCP connection over the delayed path, as over a radio link.
The TUN device has no checksum or segmentation offload, so the kernel hands it
finished, MTU-sized packets.

The delay is constant, so packets leave in the order they came; one asyncio
timer per packet on the event loop's heap keeps them.  The loop's timer
resolution (about 1 ms) is the relay's precision; ``netlab`` measures the RTT
that results.  Stops on SIGTERM/SIGINT; holds nothing on disk.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import fcntl
import os
import signal
import struct

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name: str) -> int:
    """A non-blocking file descriptor of the TUN device ``name`` (created if absent), raw IP packets."""
    fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def write_packet(fd: int, packet: bytes) -> None:
    # The kernel may refuse a packet (e.g. the device went down during teardown): then it is lost.
    with contextlib.suppress(OSError):
        os.write(fd, packet)


async def relay(tun: str, delay: float, ready_file: str | None) -> None:
    loop = asyncio.get_running_loop()
    fd = open_tun(tun)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def readable() -> None:
        due = loop.time() + delay
        while True:  # drain everything the kernel has queued, one timer per packet
            try:
                packet = os.read(fd, 65536)
            except BlockingIOError:
                return
            loop.call_at(due, write_packet, fd, packet)

    loop.add_reader(fd, readable)
    if ready_file:
        with open(ready_file, "w") as f:
            f.write(str(os.getpid()))
    await stop.wait()
    loop.remove_reader(fd)
    os.close(fd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tun", required=True, help="TUN device to create or attach to")
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay in each direction")
    parser.add_argument("--ready-file", help="write this process's id here once the device is open")
    args = parser.parse_args(argv)
    if args.delay_ms < 0:
        parser.error("--delay-ms must be >= 0")
    asyncio.run(relay(args.tun, args.delay_ms / 1000, args.ready_file))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
