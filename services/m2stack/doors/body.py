"""A request body in a file (mongrel2's temp_store upload, Gunicorn's spooled body), read by
the app in chunks through `Request.iter_body` / `body_file`: a handler holds one chunk of
it at a time, however large the upload.

Reading a file and hashing what is read never wait on the hub, so a 100 MiB body would
keep every other request of the process (and the dispatcher's beats) waiting for its whole
length: the hub gets a turn every YIELD_EVERY bytes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

YIELD_EVERY = 1 << 20  # bytes read between two turns of the hub (~3 ms of SHA-256 here)


class FileBody:
    """`m2stack.app.BodySource` over an open file of `length` bytes, closed by `close`."""

    __slots__ = ("file", "size", "left", "pause", "since_pause")

    def __init__(self, file: IO[bytes], length: int, pause: Callable[[], None]):
        self.file = file
        self.size = length  # Request.body_size
        self.left = length
        self.pause = pause
        self.since_pause = 0

    def read(self, size: int, /) -> bytes:
        if self.left <= 0:
            return b""
        chunk = self.file.read(min(size, self.left))
        self.left -= len(chunk)
        if not chunk:
            self.left = 0
            return b""
        self.since_pause += len(chunk)
        if self.since_pause >= YIELD_EVERY:
            self.since_pause = 0
            self.pause()
        return chunk

    def close(self) -> None:
        self.file.close()
