"""Streamed responses through Mongrel2 1.12: a `StreamingResponse` sent as it is produced.

The head goes out once the producer has yielded its first non-empty chunk (so an error
before it is still an ordinary JSON error response), then the body: chunked for HTTP/1.1
(`Transfer-Encoding: chunked`, ended by the zero chunk), close-delimited for HTTP/1.0
(the connection closed at the end).

What mongrel2 tolerates (src/connection.h:47 `DELIVER_OUTSTANDING_MSGS 16`, and
connection.c:135): more than 16 messages queued to one connection and not yet written to
the client, and mongrel2 drops the connection and what is queued for it. It tells the
handler nothing (`download.flow_control`, connection.c:1418, would send credits, but
round-robin over all handlers, one message per write). So this side paces itself: the
chunks produced are joined into messages of at most `stream_message_bytes`, and a
connection gets at most one message per `stream_pace` seconds; a chunk that arrives
sooner waits (a timer sends it), and a producer that fills a message waits for the pace
(bounded memory: one message and one chunk per stream). The pace is a ceiling per
stream (256 KiB / 10 ms: about 25 MiB/s by default); a client that reads slower than
that falls behind, and once it is 16 messages (4 MiB) behind, mongrel2 drops it.

A client that leaves: mongrel2's disconnect notice stops the producer when it reaches
this process (it is round-robined over all handlers, so with N handlers it reaches this
one about once in N); otherwise the stream runs until its producer ends or
`stream_timeout` passes (checked between chunks), its messages discarded by mongrel2.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from m2stack import metrics
from m2stack.app import Request, Response, error_response
from m2stack.app.response import close_stream
from m2stack.protocol import http
from m2stack.protocol import mongrel2 as protocol

if TYPE_CHECKING:
    from m2stack.doors.mongrel2.fronts import Front
    from m2stack.doors.mongrel2.driver import Mongrel2Door

log = logging.getLogger("m2stack.doors.streaming")

_LAST_CHUNK = b"0\r\n\r\n"


class Stream:
    """One streamed response: its buffer, its pace, and whether its client is gone."""

    __slots__ = ("door", "front", "sender", "conn_id", "parts", "size", "last_sent",
                 "timer", "gone", "sent")

    def __init__(self, door: Mongrel2Door, front: Front, sender: bytes, conn_id: bytes):
        self.door, self.front, self.sender, self.conn_id = door, front, sender, conn_id
        self.parts: list[bytes] = []
        self.size = 0
        self.last_sent = 0.0
        self.timer = False
        self.gone = False
        self.sent = 0  # body bytes handed to mongrel2

    def write(self, data: bytes) -> None:
        """Queue bytes; send them now if the pace allows, else when it does."""
        self.parts.append(data)
        self.size += len(data)
        settings = self.door.settings
        wait = self.last_sent + settings.stream_pace - time.monotonic()
        if wait <= 0:
            self.flush()
        elif self.size >= settings.stream_message_bytes:
            self.door.hub.sleep(wait)  # the producer waits: bounded memory
            self.flush()
        elif not self.timer:
            self.timer = True
            self.door.hub.spawn_background(self.flush_later, wait)

    def flush_later(self, wait: float) -> None:
        self.door.hub.sleep(wait)
        self.timer = False
        if self.parts:
            self.flush()

    def flush(self) -> None:
        if not self.parts:
            return
        data = b"".join(self.parts)
        self.parts.clear()
        self.size = 0
        self.last_sent = time.monotonic()
        if self.gone or self.front.closed:
            return
        self.sent += len(data)
        try:
            for frame in protocol.frame_response(self.sender, (self.conn_id,), data):
                self.door.hub.send(self.front.responses, frame)
        except self.door.hub.zmq.ZMQError:
            self.gone = True  # the front went away: so did its connections

    def close(self) -> None:
        """What is queued, then the close (an empty body)."""
        self.flush()
        if self.gone or self.front.closed:
            return
        try:
            for frame in protocol.frame_close(self.sender, (self.conn_id,)):
                self.door.hub.send(self.front.responses, frame)
        except self.door.hub.zmq.ZMQError:
            pass


class Streams:
    """The streams of one Mongrel2 door, by connection."""

    def __init__(self, door: Mongrel2Door):
        self.door = door
        self.active: dict[tuple[bytes, bytes], Stream] = {}
        self.stopped_by_disconnect = 0

    def disconnected(self, message: protocol.Mongrel2Request) -> None:
        stream = self.active.get((message.sender, message.conn_id))
        if stream is not None:
            stream.gone = True

    def send(self, front: Front, message: protocol.Mongrel2Request, request: Request,
             response: Response, *, close: bool, ticket: bytes | None = None) -> tuple[int, bool | None]:
        """Send `response` (its `stream` set); the status sent, and whether the connection
        was closed (None: nothing was sent, the dispatcher forgot the request). `ticket`:
        the dispatcher's request id, told before the head goes out (from then on the
        request must never be repeated)."""
        assert response.stream is not None
        chunks = iter(response.stream)
        try:
            first = _first_chunk(chunks)
        except Exception:
            log.exception("streamed response failed before its first chunk",
                          extra={"request_id": request.request_id, "path": request.path[:200]})
            close_stream(chunks)
            close_stream(response.stream)
            problem = self.door.app.finish(request, error_response(
                500, "internal server error", request.request_id))
            if close:
                problem.headers.append(("Connection", "close"))
            elif request.version == "HTTP/1.0":
                problem.headers.append(("Connection", "keep-alive"))
            self.door.send(front, message, http.render_http_response(
                problem.status, problem.reason, problem.headers, problem.body), close=close)
            return problem.status, close
        declared = [v for n, v in response.headers if n.lower() == "content-length"]
        length = int(declared[-1]) if declared and declared[-1].strip().isdigit() else None
        chunked = request.version != "HTTP/1.0" and length is None
        headers = [(n, v) for n, v in response.headers if n.lower() not in ("content-length", "connection")]
        if length is not None:  # the producer declared its length (e.g. a WSGI app): no framing
            headers.append(("Content-Length", str(length)))
            if close:
                headers.append(("Connection", "close"))
            elif request.version == "HTTP/1.0":
                headers.append(("Connection", "keep-alive"))
        elif chunked:
            headers.append(("Transfer-Encoding", "chunked"))
            if close:
                headers.append(("Connection", "close"))
        else:
            close = True
            headers.append(("Connection", "close"))
        if ticket is not None and not self.door.hold(ticket):  # withheld: nothing may be sent
            close_stream(chunks)
            close_stream(response.stream)
            return response.status, None
        key = (message.sender, message.conn_id)
        stream = Stream(self.door, front, message.sender, message.conn_id)
        self.active[key] = stream
        metrics.streams_open(1)
        limit = self.door.settings.stream_timeout
        deadline = time.monotonic() + limit if limit else float("inf")
        ended = "done"
        left = length
        try:
            stream.write(http.render_http_response(response.status, response.reason, headers, b""))
            chunk = first
            while chunk is not None:
                if left is not None:
                    if len(chunk) > left:
                        chunk = chunk[:left]
                        ended = "longer than its Content-Length"
                    left -= len(chunk)
                if chunk:
                    stream.write(b"%x\r\n%b\r\n" % (len(chunk), chunk) if chunked else bytes(chunk))
                if ended != "done":
                    break
                if stream.gone:
                    ended = "client gone"
                    break
                if time.monotonic() > deadline:
                    ended = "stream timeout"
                    break
                chunk = next(chunks, None)
        except Exception:
            ended = "error"
            log.exception("streamed response failed after its head: connection closed",
                          extra={"request_id": request.request_id, "path": request.path[:200],
                                 "sent": stream.sent})
            close = True
        finally:
            if ended == "done" and left:
                ended = "shorter than its Content-Length"
            close_stream(chunks)
            close_stream(response.stream)
            if ended == "done" and chunked:
                stream.write(_LAST_CHUNK)
            if ended != "done":
                close = True
                if ended != "error":
                    log.info("stream stopped", extra={"request_id": request.request_id,
                                                      "reason": ended, "sent": stream.sent})
                    self.stopped_by_disconnect += ended == "client gone"
            if close:
                stream.close()
            else:
                stream.flush()
            self.active.pop(key, None)
            metrics.streams_open(-1)
        return response.status, close


def _first_chunk(chunks: Iterator[bytes]) -> bytes | None:
    """The first non-empty chunk, or None if there is none."""
    for chunk in chunks:
        if chunk:
            return chunk
    return None
