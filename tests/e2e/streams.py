"""WebSocket, streamed responses and large uploads, checked end to end through mongrel2 with
real clients. One set of checks, run by test_stack.py (mongrel2 round-robins) and by
test_dispatch.py (the dispatcher routes a connection's frames to the handler holding it).
The upload checks (uploads are on by default: mongrel2's temp_store, Gunicorn's spool) run
through both doors: test_parity.py (Gunicorn) and test_dispatch.py (Mongrel2 and the dispatcher).
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time

from websockets.sync.client import connect as ws_connect

from support import parse_head, read_response

MAX_REQUEST_BODY_BYTES = 100 << 20   # the stack's default (services/m2stack/settings.py)
PATTERN = bytes(range(256)) * 4096  # what /download sends, 1 MiB at a time


def websocket_echo(stack, messages: int = 20) -> None:
    """Text and binary frames echoed in order over one connection, then a clean close."""
    url = f"ws://127.0.0.1:{stack.port}/ws/echo"
    with ws_connect(url, open_timeout=10, close_timeout=5, proxy=None) as ws:
        for i in range(messages):
            ws.send(f"hello {i} é")
            assert ws.recv(timeout=10) == f"hello {i} é"
            payload = os.urandom(1000 + i)
            ws.send(payload)
            assert ws.recv(timeout=10) == payload


def websocket_chat(stack, members: int = 3, rounds: int = 5) -> None:
    """Every member of the chat hears every member's message once: the fan-out crosses
    handlers (PostgreSQL LISTEN/NOTIFY). A handler starts listening when its first member
    joins, which the client cannot see, so members send in rounds until one round reaches
    everyone whole; a member that ever hears a message twice fails at once."""
    url = f"ws://127.0.0.1:{stack.port}/ws/chat"
    sockets = [ws_connect(url, open_timeout=10, close_timeout=5, proxy=None) for _ in range(members)]
    try:
        heard: list[list[str]] = [[] for _ in sockets]
        for r in range(rounds):
            sent = {f"round {r} from {i}" for i in range(members)}
            for i, ws in enumerate(sockets):
                ws.send(f"round {r} from {i}")
            for i, ws in enumerate(sockets):
                got: set[str] = set()
                try:
                    while got != sent:
                        message = ws.recv(timeout=3)
                        heard[i].append(message)
                        if message in sent:
                            got.add(message)
                except TimeoutError:
                    pass
            ours = [[m for m in h if m.startswith("round ")] for h in heard]
            assert all(len(h) == len(set(h)) for h in ours), ours
            if all(sent <= set(h) for h in heard):
                return
        raise AssertionError(f"no round of {rounds} reached every member: {heard}")
    finally:
        for ws in sockets:
            ws.close()


def streamed_chunks(stack) -> None:
    """Chunks reach the client as they are produced, not at the end."""
    with stack.http.get(stack.url + "/stream?chunks=6&interval_ms=300", stream=True, timeout=10) as response:
        assert response.status_code == 200
        assert response.headers["Transfer-Encoding"] == "chunked"
        chunks = response.iter_content(chunk_size=None)
        first = next(chunks)
        assert first.startswith(b"chunk 0\n")
        rest = b"".join(chunks)
    assert (first + rest).decode().split() == [f"{w}" for i in range(6) for w in ("chunk", str(i))]


def download_hashed(stack, mib: int = 16) -> None:
    """A download sent whole: 1 MiB messages, so with 16 of them mongrel2's queue of 16
    undelivered messages cannot overflow however slowly this client reads (a longer one
    at the default pace needs a client and a mongrel2 that keep up: docs/streaming.md)."""
    expected = hashlib.sha256()
    for _ in range(mib):
        expected.update(PATTERN)
    got, size = hashlib.sha256(), 0
    with stack.http.get(stack.url + f"/download?mb={mib}", stream=True, timeout=60) as response:
        assert response.status_code == 200
        for chunk in response.iter_content(chunk_size=1 << 20):
            got.update(chunk)
            size += len(chunk)
    assert (size, got.hexdigest()) == (mib << 20, expected.hexdigest())


def peak_rss(stack) -> dict[str, int]:
    """The peak resident memory (VmHWM, bytes) of every process of the app's containers, by
    container and pid."""
    peaks = {}
    for container in stack.app_ids():
        out = subprocess.run(["docker", "exec", container, "sh", "-c", "grep -H VmHWM /proc/[0-9]*/status"],
                             capture_output=True, text=True, timeout=30).stdout
        for line in out.splitlines():
            where, _, figure = line.partition(":VmHWM:")
            peaks[container[:12] + where] = int(figure.split()[0]) * 1024
    return peaks


def upload_hashed(stack, size: int = MAX_REQUEST_BODY_BYTES) -> dict:
    """`size` random bytes (100 MiB, the limit itself) to POST /upload: the app answers the
    SHA-256 and the length it read, and no process of the app grows its peak memory by more
    than a quarter of the body, 16 MiB at most (read whole, the body would add all of it:
    the app reads it in 64 KiB chunks; measured with 100 MiB: 0.1-0.2 MiB in a handler,
    2-4.5 MiB in a Gunicorn worker)."""
    body = os.urandom(size)
    before = peak_rss(stack)
    started = time.monotonic()
    response = stack.request("POST", "/upload", data=body, timeout=120,
                             headers={"Content-Type": "application/octet-stream"})
    took = time.monotonic() - started
    assert response.status_code == 200, response.text[:300]
    assert response.json() == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    after = peak_rss(stack)
    grown = max(after[k] - before[k] for k in after if k in before)
    figures = {"mib": size / (1 << 20), "seconds": round(took, 2), "peak_rss_growth_kib": grown // 1024}
    print(f"[measured] upload through {stack.project}: {figures}")
    assert grown < min(16 << 20, size // 4), figures
    return figures


def refused_over_the_limit(stack, limit: int = MAX_REQUEST_BODY_BYTES, path: str = "/upload",
                           content_type: str = "application/octet-stream") -> None:
    """A body declared one byte over the limit gets 413 JSON saying the limit while the
    client has sent only 64 KiB of it: nobody waits for the rest. Behind Mongrel2 the
    connection closes with the answer."""
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: e2e\r\nContent-Type: {content_type}\r\n".encode()
                     + b"Content-Length: %d\r\n\r\n" % (limit + 1) + b"x" * 65_536)
        head, body = read_response(sock)  # the socket's 10 s timeout: a hung client fails here
        status, headers = parse_head(head)
        assert status == 413, head
        assert headers["content-type"] == "application/json" and headers["x-front-door"] == stack.front_door
        assert json.loads(body)["error"]["details"] == {"limit": limit, "length": limit + 1}
        if stack.front_door == "mongrel2":
            assert headers["connection"] == "close"
            assert sock.recv(1) == b""
