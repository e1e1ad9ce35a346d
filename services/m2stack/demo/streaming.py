"""Streamed responses: /stream, /events (server-sent events), /download.

    GET /stream?chunks=N&interval_ms=M&size=S   N chunks of S bytes, M ms apart
    GET /stream?fail=before|after                 an error before the first chunk (500 JSON)
                                                  or after it (the stream ends, the connection closes)
    GET /events?n=N&interval_ms=M                 text/event-stream, one event every M ms
    GET /download?mb=N                            N MiB of a fixed pattern (its SHA-256 is known)

The body is a generator: the front door sends each chunk as it is produced (the Mongrel2
door paces them, doors/mongrel2_streaming.py; Gunicorn writes them itself), and calls its
close() when it stops reading, so `finally` runs when the client leaves too.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

from m2stack.app import Endpoint, Response, Router, StreamingResponse

routes = Router()

MAX_CHUNKS = 100_000
MAX_INTERVAL_MS = 60_000
MAX_CHUNK_SIZE = 1 << 20
MAX_DOWNLOAD_MB = 4096
PATTERN = bytes(range(256)) * 4096  # 1 MiB


def download_bytes(mib: int) -> Iterator[bytes]:
    """What /download?mb=N sends: PATTERN N times (tests hash it the same way)."""
    for _ in range(mib):
        yield PATTERN


@routes.route("/stream")
class Stream(Endpoint):
    def get(self) -> Response:
        q = self.request
        chunks = q.int_argument("chunks", 10, minimum=0, maximum=MAX_CHUNKS)
        interval = q.int_argument("interval_ms", 100, minimum=0, maximum=MAX_INTERVAL_MS) / 1000
        size = q.int_argument("size", 0, minimum=0, maximum=MAX_CHUNK_SIZE)
        fail = q.argument("fail", "")

        def produce() -> Iterator[bytes]:
            if fail == "before":
                raise RuntimeError("this stream fails before its first chunk, on purpose")
            for i in range(chunks):
                if i:
                    time.sleep(interval)
                if fail == "after" and i == 1:
                    raise RuntimeError("this stream fails after its first chunk, on purpose")
                line = b"chunk %d\n" % i
                yield line if not size else (line * (size // len(line) + 1))[:size]

        return StreamingResponse(produce(), content_type="text/plain; charset=utf-8")


@routes.route("/events")
class Events(Endpoint):
    def get(self) -> Response:
        n = self.request.int_argument("n", 10, minimum=0, maximum=MAX_CHUNKS)
        interval = self.request.int_argument("interval_ms", 1000, minimum=0, maximum=MAX_INTERVAL_MS) / 1000

        def produce() -> Iterator[bytes]:
            yield b"retry: 3000\n\n"
            for i in range(n):
                if i:
                    time.sleep(interval)
                yield b"id: %d\nevent: tick\ndata: {\"n\": %d, \"time\": %.3f}\n\n" % (i, i, time.time())

        response = StreamingResponse(produce(), content_type="text/event-stream")
        response.set_header("Cache-Control", "no-cache")
        return response


@routes.route("/download")
class Download(Endpoint):
    def get(self) -> Response:
        mib = self.request.int_argument("mb", 1, minimum=0, maximum=MAX_DOWNLOAD_MB)
        response = StreamingResponse(download_bytes(mib))
        response.set_header("Content-Disposition", 'attachment; filename="download.bin"')
        return response
