"""Helpers shared by every test layer.

`require(tool)`: a test that needs Docker or mongrel2 skips when it is missing,
except with CI=true, where it fails: CI must never pass by skipping. `missing()` is the
same rule for anything else a test needs (an importable package, a daemon).

The raw-HTTP reader and the Prometheus text parser live here once, for the
process-level and the end-to-end tests alike.
"""

from __future__ import annotations

import importlib
import os
import shutil
import socket
import time
from types import ModuleType

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing(message: str) -> None:
    """Skip, except under CI=true, where a missing tool fails the test."""
    if IN_CI:
        pytest.fail(message + " (CI=true: missing tools fail, they never skip)", pytrace=False)
    pytest.skip(message)


def require(executable: str, why: str) -> str:
    path = shutil.which(executable)
    if path is None:
        missing(f"{executable} not found: {why}")
    return path


def require_module(name: str, why: str) -> ModuleType:
    """`pytest.importorskip` under the project's rule: under CI a missing package fails."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        missing(f"cannot import {name} ({exc}): {why}")
        raise  # not reached: missing() skips or fails


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check, timeout: float, what: str, interval: float = 0.05):
    """Poll `check` until it returns something true (returned); OSError counts as not yet."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except OSError:
            pass
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# ---- raw HTTP over a socket --------------------------------------------------------------

def _recv(conn: socket.socket, what: str, received: bytes) -> bytes:
    chunk = conn.recv(65536)
    if not chunk:  # the server closed: never loop on b""
        raise AssertionError(f"connection closed before {what}; received {received[:300]!r}")
    return chunk


def read_response(conn: socket.socket) -> tuple[bytes, bytes]:
    """One response (head, body) whose length is given by Content-Length (or none: empty).

    Fails, never spins, when the server closes early; the socket's timeout bounds a
    server that goes silent.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        data += _recv(conn, "the end of the response head", data)
    head, _, body = data.partition(b"\r\n\r\n")
    length = content_length(head)
    while len(body) < length:
        body += _recv(conn, f"the {length} bytes of the body", head + b"\r\n\r\n" + body)
    assert len(body) == length, f"{len(body) - length} bytes after the body: {body[length:][:100]!r}"
    return head, body


def read_until_close(conn: socket.socket, timeout: float = 10) -> bytes:
    """Everything the server sends until it closes; fails if it has not closed by `timeout`."""
    deadline = time.monotonic() + timeout
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"the server did not close within {timeout}s; received {data[:300]!r}")
        conn.settimeout(remaining)
        try:
            chunk = conn.recv(65536)
        except TimeoutError:
            continue  # the loop reports it
        except ConnectionResetError:
            return data  # closed with a reset after what it sent
        if not chunk:
            return data
        data += chunk


def content_length(head: bytes) -> int:
    values = [line.split(b":", 1)[1].strip() for line in head.split(b"\r\n")[1:]
              if line.lower().startswith(b"content-length:")]
    assert len(values) <= 1, f"{len(values)} Content-Length headers: {head[:500]!r}"
    return int(values[0]) if values else 0


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and headers (lower-case names; a repeated header keeps its last value)."""
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers


def send_raw(host: str, port: int, data: bytes, *, trickle: float = 0.0, timeout: float = 15) -> bytes:
    """Send `data` byte for byte (optionally one byte every `trickle` s), return what
    comes back: one complete response, or what arrived before the server closed."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        try:
            if trickle:
                for byte in data:
                    sock.send(bytes([byte]))
                    time.sleep(trickle)
            else:
                sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before we finished: read its answer
        received = b""
        while b"\r\n\r\n" not in received or len(received) < _full_length(received):
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            received += chunk
        return received


def _full_length(received: bytes) -> int:
    head, _, _ = received.partition(b"\r\n\r\n")
    return len(head) + 4 + content_length(head)


# ---- Prometheus text format ----------------------------------------------------------------

class Metrics:
    """A parsed /metrics page: `value(name, **labels)` sums the samples whose labels
    include the given ones (0.0 when none match)."""

    def __init__(self, text: str):
        self.text = text
        self.samples: list[tuple[str, dict[str, str], float]] = []
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            name, _, labels = series.partition("{")
            parsed = {}
            for pair in _split_labels(labels.rstrip("}")):
                key, _, raw = pair.partition("=")
                parsed[key] = raw.strip('"')
            self.samples.append((name, parsed, float(value)))

    def value(self, name: str, **labels: str) -> float:
        return sum(v for n, ls, v in self.samples
                   if n == name and all(ls.get(k) == want for k, want in labels.items()))

    def has(self, name: str, **labels: str) -> bool:
        return any(n == name and all(ls.get(k) == want for k, want in labels.items())
                   for n, ls, _ in self.samples)


def _split_labels(raw: str) -> list[str]:
    """`a="x",b="y,z"` -> ['a="x"', 'b="y,z"'] (commas inside quotes kept)."""
    parts, current, quoted = [], "", False
    for char in raw:
        if char == '"':
            quoted = not quoted
        if char == "," and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    if current:
        parts.append(current)
    return parts
