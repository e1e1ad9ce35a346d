"""The ceiling: the least a Mongrel2 handler can do, to measure the real handlers against.

Plain blocking pyzmq in one thread: no hub, no greenlets, no app, no framework.
It answers GET /plaintext and GET /json with response bytes rendered once at
start-up (through the protocol layer, so they are valid HTTP), 404 for anything else,
and closes the connection when the client asked for it. Whatever the real
handlers spend above this per request is the price of the hub and the app.

    python3 loadtest/ceiling.py    (/app/ceiling.py in its image; the handlers' M2_* / HANDLER_* settings)

It is a load-test variant (`compose/ceiling.yml`), not a product: no request ids,
no validation, no error handling beyond not dying on a malformed message.
"""

from __future__ import annotations

import logging
import signal
import time

import zmq

from m2stack.httpspec import REASONS
from m2stack.protocol import http
from m2stack.scheduling import batch_scheduling
from m2stack.settings import HandlerSettings, load

log = logging.getLogger("m2stack.ceiling")

_HEADERS = [("X-Hub", "blocking"), ("X-Front-Door", "mongrel2-ceiling")]


def _render(status: int, content_type: str, body: bytes, close: bool = False) -> bytes:
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), *_HEADERS]
    if close:
        headers.append(("Connection", "close"))
    return http.render_http_response(status, REASONS[status], headers, body)


# (path, close?) -> the complete HTTP response
RESPONSES: dict[tuple[bytes, bool], bytes] = {}
for _close in (False, True):
    RESPONSES[b"/plaintext", _close] = _render(200, "text/plain; charset=utf-8", b"Hello, World!", _close)
    RESPONSES[b"/json", _close] = _render(200, "application/json", b'{"message":"Hello, World!"}', _close)
NOT_FOUND = {c: _render(404, "application/json", b'{"error":{"status":404,"message":"no route"}}', c)
             for c in (False, True)}

# Byte patterns of the headers mongrel2 sends, as JSON (its default) or tnetstring
# (protocol='tnetstring'). A client's header named like them is lower-case: no false match.
_CONTROL = (b'"METHOD":"JSON"', b"6:METHOD,4:JSON,")  # a notice ({"type":"disconnect"}): no answer
_HTTP10 = (b'"VERSION":"HTTP/1.0"', b"7:VERSION,8:HTTP/1.0,")
_CLOSE = (b'"connection":"close"', b"10:connection,5:close,")


def _has(headers: bytes, patterns: tuple[bytes, bytes]) -> bool:
    return patterns[0] in headers or patterns[1] in headers


def answer(raw: bytes) -> list[bytes]:
    """The frames to send for one request message (empty for control messages)."""
    sp1 = raw.find(b" ")
    sp2 = raw.find(b" ", sp1 + 1)
    sp3 = raw.find(b" ", sp2 + 1)
    if sp1 <= 0 or sp3 < 0:
        return []
    colon = raw.find(b":", sp3)
    try:
        headers = raw[colon + 1:colon + 1 + int(raw[sp3 + 1:colon])]
    except ValueError:
        return []
    if _has(headers, _CONTROL):
        return []
    sender, conn_id = raw[:sp1], raw[sp1 + 1:sp2]
    # The URL path without the query string is mongrel2's PATH, which is the third token.
    path = raw[sp2 + 1:sp3]
    close = _has(headers, _CLOSE) or (_has(headers, _HTTP10) and b"keep-alive" not in headers)
    http = RESPONSES.get((path, close)) or NOT_FOUND[close]
    prefix = b"%b %d:%b, " % (sender, len(conn_id), conn_id)
    frames = [prefix + http]
    if close:
        frames.append(prefix)  # an empty body closes the connection
    return frames


def main() -> int:
    settings = load(HandlerSettings)
    # Plain logging: m2stack.logs needs msgspec, and this image carries pyzmq only.
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stopping = False

    def stop(_signum, _frame):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if settings.batch_scheduling:  # as the handlers run: the bound is measured alike
        batch_scheduling()  # before the context's I/O thread starts, which inherits it

    context = zmq.Context()
    responses = context.socket(zmq.XPUB)
    responses.setsockopt(zmq.LINGER, 2000)
    responses.setsockopt(zmq.RCVTIMEO, 250)
    requests = context.socket(zmq.PULL)
    requests.setsockopt(zmq.RCVHWM, settings.receive_hwm)
    requests.setsockopt(zmq.LINGER, 0)
    requests.setsockopt(zmq.RCVTIMEO, 250)  # plain pyzmq honours it: the loop sees `stopping`

    # Wait for mongrel2's subscription before pulling (the slow-joiner race, as the handlers do).
    responses.connect(settings.responses_endpoint)
    while not stopping:
        try:
            responses.recv()
            break
        except zmq.Again:
            continue
    requests.connect(settings.requests_endpoint)
    log.info("ceiling handler connected (pyzmq %s, libzmq %s)", zmq.pyzmq_version(), zmq.zmq_version())

    served = 0
    next_beat = 0.0
    send, recv = responses.send, requests.recv
    while not stopping:
        now = time.monotonic()
        if now >= next_beat:  # the container healthcheck reads this file's age
            next_beat = now + settings.heartbeat_interval
            with open(settings.heartbeat_file, "w") as f:
                f.write(f"{time.time():.3f}\n")
        try:
            raw = recv()
        except zmq.Again:
            continue
        for frame in answer(raw):
            send(frame)
        served += 1

    requests.close()
    responses.close()
    context.term()
    log.info("stopped after %d requests", served)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
