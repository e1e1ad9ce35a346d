"""Streamed responses through Mongrel2 1.12: a `StreamingResponse` sent as it is produced.

The head goes out with the first non-empty chunk (an error before it is still an ordinary
JSON 500); core.StreamBody frames the body. Mongrel2 drops a connection that has more
than 16 messages undelivered and tells no handler, so each stream paces itself: chunks
joined into messages of at most `stream_message_bytes`, one message per `stream_pace`
seconds per connection; a producer that fills a message waits. A stream stops at
mongrel2's disconnect notice (when it reaches this process) or after `stream_timeout`.
Why, and what was measured: docs/streaming.md.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from m2stack import metrics
from m2stack.app import App, Request, Response
from m2stack.app.response import close_stream
from m2stack.doors.mongrel2.core import StreamBody, first_chunk, internal_error
from m2stack.doors.mongrel2.fronts import Front, Fronts
from m2stack.hubs import Hub
from m2stack.protocol import mongrel2 as protocol
from m2stack.settings import HandlerSettings

log = logging.getLogger("m2stack.doors.streaming")

class Stream:
    """One streamed response: its buffer, its pace, and whether its client is gone."""

    __slots__ = ("hub", "fronts", "pace", "message_bytes", "front", "sender", "conn_id", "parts",
                 "size", "last_sent", "timer", "gone", "sent")

    def __init__(self, streams: Streams, front: Front, sender: bytes, conn_id: bytes):
        self.hub, self.fronts = streams.hub, streams.fronts
        self.pace, self.message_bytes = streams.settings.stream_pace, streams.settings.stream_message_bytes
        self.front, self.sender, self.conn_id = front, sender, conn_id
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
        wait = self.last_sent + self.pace - time.monotonic()
        if wait <= 0:
            self.flush()
        elif self.size >= self.message_bytes:
            self.hub.sleep(wait)  # the producer waits: bounded memory
            self.flush()
        elif not self.timer:
            self.timer = True
            self.hub.spawn_background(self.flush_later, wait)

    def flush_later(self, wait: float) -> None:
        self.hub.sleep(wait)
        self.timer = False
        if self.parts:
            self.flush()

    def flush(self, close: bool = False) -> None:
        """What is queued; then, if `close`, the close (an empty body)."""
        data = b""
        if self.parts:
            data = b"".join(self.parts)
            self.parts.clear()
            self.size = 0
            self.last_sent = time.monotonic()
        if self.gone or self.front.closed or not (data or close):
            return
        self.sent += len(data)
        try:
            self.fronts.send(self.front, self.sender, self.conn_id, data, close)
        except self.hub.zmq.ZMQError:
            self.gone = True  # the front went away: so did its connections


class Streams:
    """The streams of one Mongrel2 door, by connection."""

    def __init__(self, hub: Hub, app: App, settings: HandlerSettings, fronts: Fronts):
        self.hub, self.app, self.settings, self.fronts = hub, app, settings, fronts
        self.active: dict[tuple[bytes, bytes], Stream] = {}

    def disconnected(self, message: protocol.Mongrel2Request) -> None:
        stream = self.active.get((message.sender, message.conn_id))
        if stream is not None:
            stream.gone = True

    def send(self, front: Front, message: protocol.Mongrel2Request, request: Request, response: Response,
             close: bool, hold: Callable[[], bool]) -> tuple[int, bool] | None:
        """Send `response` (its `stream` set); the status sent and whether the connection
        was closed. `hold()` is asked before the head goes out (from then on the request
        must never be repeated); if it says no, nothing is sent and None is returned."""
        assert response.stream is not None
        chunks = iter(response.stream)
        try:
            first = first_chunk(chunks)
        except Exception:
            log.exception("streamed response failed before its first chunk",
                          extra={"request_id": request.request_id, "path": request.path[:200]})
            close_stream(chunks)
            close_stream(response.stream)
            status, wire = internal_error(self.app, request, close=close)
            self.fronts.reply(front, message.sender, message.conn_id, wire, close)
            return status, close
        body = StreamBody(response, close=close, version=request.version)
        if not hold():  # withheld: nothing may be sent
            close_stream(chunks)
            close_stream(response.stream)
            return None
        key = (message.sender, message.conn_id)
        stream = self.active[key] = Stream(self, front, message.sender, message.conn_id)
        metrics.streams_open(1)
        try:
            stream.write(body.head)
            self._body(stream, body, first, chunks)
        except Exception:
            body.stop("error")
            log.exception("streamed response failed after its head: connection closed",
                          extra={"request_id": request.request_id, "path": request.path[:200],
                                 "sent": stream.sent})
        finally:
            close_stream(chunks)
            close_stream(response.stream)
            self._end(stream, body, request)
            self.active.pop(key, None)
            metrics.streams_open(-1)
        return response.status, body.close

    def _body(self, stream: Stream, body: StreamBody, chunk: bytes | None, chunks: Any) -> None:
        limit = self.settings.stream_timeout
        deadline = time.monotonic() + limit if limit else float("inf")
        while chunk is not None:
            wire = body.wire(chunk)
            if wire:
                stream.write(wire)
            if body.ended:
                return
            if stream.gone:
                return body.stop("client gone")
            if time.monotonic() > deadline:
                return body.stop("stream timeout")
            chunk = next(chunks, None)

    @staticmethod
    def _end(stream: Stream, body: StreamBody, request: Request) -> None:
        last = body.end()
        if last:
            stream.write(last)
        if body.ended and body.ended != "error":
            log.info("stream stopped", extra={"request_id": request.request_id,
                                              "reason": body.ended, "sent": stream.sent})
        stream.flush(close=body.close)
