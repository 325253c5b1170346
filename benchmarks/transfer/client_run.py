"""One upload run on the device side (started by ``run.py`` inside the device's namespace).

    python client_run.py --url http://10.77.2.2:8000 --payloads DIR --method amser --transport ws --count 200

Transports:

- ``paper``: a new TCP connection and one HTTP request per file, each answer awaited before the next file
  (``requests.post`` per file, as a script would do it; TCP_NODELAY on, as urllib3 sets it).
- ``keepalive-nagle``: one kept-alive HTTP/1.1 connection, one request per file, answers awaited; httpx's
  defaults (Nagle's algorithm on): what ``amser send`` did before it set TCP_NODELAY.
- ``keepalive``: the same with TCP_NODELAY.
- ``ws``: :meth:`amser_dsp.client.Client.transcribe_many`: one WebSocket, files sent back to back
  without waiting, answers read as they come (what ``amser send`` does now).
- ``stream``: the live-recording WebSocket ``/v1/stream``, one connection per file, the container's bytes
  sent at once, waiting for its last chunk's text (containers only; made for live audio, not for batches).

Prints one JSON object: seconds from the first byte to each answer (in file order), the transcripts, errors.
Payloads are read into memory before the clock starts.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from pathlib import Path

import httpx

from amser_dsp.client import Client

NODELAY = [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)]


def http_path(audio: bool) -> str:
    return "/v1/transcribe/audio" if audio else "/v1/transcribe"


def run_http(url: str, blobs: list[bytes], audio: bool, transport: str) -> tuple[list[float], list[str], float]:
    times, texts = [], []
    headers = {"Content-Type": "application/octet-stream"}
    t0 = time.perf_counter()
    if transport == "paper":
        for blob in blobs:
            with httpx.Client(base_url=url, timeout=600, transport=httpx.HTTPTransport(socket_options=NODELAY)) as http:
                r = http.post(http_path(audio), content=blob, headers={**headers, "Connection": "close"})
            r.raise_for_status()
            times.append(time.perf_counter() - t0)
            texts.append(r.json()["text"])
    else:
        options = NODELAY if transport == "keepalive" else None
        with httpx.Client(base_url=url, timeout=600, transport=httpx.HTTPTransport(socket_options=options)) as http:
            for blob in blobs:
                r = http.post(http_path(audio), content=blob, headers=headers)
                r.raise_for_status()
                times.append(time.perf_counter() - t0)
                texts.append(r.json()["text"])
    return times, texts, t0


def run_ws(url: str, blobs: list[bytes], audio: bool) -> tuple[list[float], list[str], float]:
    times, texts = [0.0] * len(blobs), [""] * len(blobs)
    with Client(url) as client:
        client.info()  # what a device asks once; outside the clock like the payloads
        t0 = time.perf_counter()
        for result in client.transcribe_many(blobs, audio=audio):
            times[result["index"]] = time.perf_counter() - t0
            texts[result["index"]] = result["text"]
    return times, texts, t0


def run_stream(url: str, blobs: list[bytes]) -> tuple[list[float], list[str], float]:
    from websockets.sync.client import connect

    times, texts = [], []
    uri = url.replace("http://", "ws://") + "/v1/stream"
    host, port = uri.split("/")[2].split(":")
    t0 = time.perf_counter()
    for blob in blobs:
        sock = socket.create_connection((host, int(port)), timeout=600)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with connect(uri, sock=sock, compression=None) as ws:
            ws.send(blob)
            parts = []
            while not (answer := json.loads(ws.recv(timeout=600))).get("done"):
                if "error" in answer:
                    raise RuntimeError(answer["error"]["message"])
                parts.append(answer["text"])
        times.append(time.perf_counter() - t0)
        texts.append(" ".join(parts))
    return times, texts, t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--payloads", type=Path, required=True)
    parser.add_argument("--method", required=True)
    parser.add_argument("--audio", action="store_true", help="payloads are audio files, not containers")
    parser.add_argument("--transport", choices=["paper", "keepalive-nagle", "keepalive", "ws", "stream"], required=True)
    parser.add_argument("--count", type=int, required=True)
    args = parser.parse_args(argv)
    blobs = [(args.payloads / args.method / f"{i}.bin").read_bytes() for i in range(args.count)]
    if args.transport == "ws":
        times, texts, t0 = run_ws(args.url, blobs, args.audio)
    elif args.transport == "stream":
        if args.audio:
            parser.error("the stream transport carries containers only")
        times, texts, t0 = run_stream(args.url, blobs)
    else:
        times, texts, t0 = run_http(args.url, blobs, args.audio, args.transport)
    print(json.dumps({"answer_s": times, "texts": texts, "start_monotonic": t0}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
