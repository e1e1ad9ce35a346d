"""doors/mongrel2/: the door's decisions without a socket. The core (core.py) on its own;
the streaming and WebSocket parts with a recording stand-in for the fronts' sockets and
the real gevent hub module (not monkey-patched: only its sleep and spawn are used)."""

from __future__ import annotations

import pytest

from m2stack.app import App, HTTPError, Response, Router, StreamingResponse
from m2stack.app.websocket import WebSocketEndpoint
from m2stack.doors.mongrel2 import core
from m2stack.doors.mongrel2.fronts import Front
from m2stack.doors.mongrel2.uploads import Uploads
from m2stack.protocol import mongrel2 as protocol
from m2stack.protocol import websocket as ws
from m2stack.settings import HandlerSettings

SENDER = b"4e2b8f0c-1d7a-4c3e-8a55-6b0d9c7e3f12"
LIMIT = 1000  # MAX_REQUEST_BODY_BYTES in these tests


def message(headers: dict, body: bytes = b"", encoding: str = "json", path: str = "/x") -> protocol.Mongrel2Request:
    meta = {"METHOD": "GET", "VERSION": "HTTP/1.1", "PATH": path, **headers}
    return core.parse(protocol.encode_request(SENDER, 7, path, meta, body, encoding))


def no_upload(message):
    raise AssertionError("not an upload")


def served(headers: dict, **kwargs):
    taken = core.request_for(message(headers, **kwargs), no_upload, LIMIT)
    assert taken is not None
    return taken


# -- a message to a request -----------------------------------------------------------

@pytest.mark.parametrize("encoding", ["json", "tnetstring"])
def test_json_and_tnetstring_headers_make_the_same_request(encoding):
    request, close = served({"host": "h", "cookie": ["a=1", "b=2"], "QUERY": "q=1", "x-y": ["1", "2"]},
                            encoding=encoding)
    assert request.headers == {"host": "h", "cookie": "a=1; b=2", "x-y": "1, 2"}  # no mongrel2 header
    assert request.path == "/x" and request.query == {"q": ["1"]} and not close


@pytest.mark.parametrize("version, connection, close", [
    ("HTTP/1.1", None, False), ("HTTP/1.1", "close", True), ("HTTP/1.1", "keep-alive", False),
    ("HTTP/1.0", None, True), ("HTTP/1.0", "keep-alive", False), ("HTTP/1.0", "close", True)])
def test_the_connection_closes_as_the_version_and_headers_say(version, connection, close):
    headers = {"VERSION": version} | ({"connection": connection} if connection else {})
    request, closing = served(headers)
    assert closing is close
    wire = core.render(Response(b"hi"), close=closing, version=request.version)
    head = wire.split(b"\r\n\r\n")[0].lower()
    assert (b"connection: close" in head) is close
    assert (b"connection: keep-alive" in head) is (not close and version == "HTTP/1.0")
    assert wire.startswith(b"HTTP/1.1 200 ")


def test_differing_content_lengths_are_refused_and_close():
    request, close = served({"content-length": ["3", "4"]})
    assert close and request.error is not None and request.error.status == 400
    request, close = served({"content-length": ["3", " 3"]}, body=b"abc")  # the same value twice
    assert not close and request.error is None


def test_a_response_that_cannot_be_rendered_becomes_a_500():
    app = App(Router())
    request, _ = served({})
    response = app.finish(request, Response(b"x"))
    response.headers.append(("Bad Name", "x"))  # not a token: protocol/http.py refuses it
    status, wire = core.reply_bytes(app, request, response, close=False)
    assert status == 500 and wire.startswith(b"HTTP/1.1 500 ") and b'"internal server error"' in wire


def test_a_disconnect_notice_is_a_json_control_message():
    notice = core.parse(protocol.encode_request(SENDER, 7, "@*", {"METHOD": "JSON"}, b'{"type":"disconnect"}',
                                                "json"))
    assert notice.headers["METHOD"] in core.NOT_HTTP and notice.is_disconnect


# -- uploads -------------------------------------------------------------------------

def test_an_upload_start_notice_is_not_answered_and_its_done_message_is_the_body(tmp_path):
    path = tmp_path / "upload.AbC123"
    path.write_bytes(b"x" * 300)
    uploads = Uploads(HandlerSettings(upload_dir=str(tmp_path), max_body=LIMIT))
    start = {"METHOD": "POST", "content-length": "300", core.UPLOAD_START: str(path)}
    assert core.request_for(message(start), uploads.take, LIMIT) is None
    request, close = core.request_for(message({**start, core.UPLOAD_DONE: str(path)}), uploads.take, LIMIT)
    assert request.error is None and not close
    assert core.UPLOAD_START not in request.headers and not path.exists()  # unlinked once open
    assert request.body_size == 300
    assert list(request.iter_body(128)) == [b"x" * 128, b"x" * 128, b"x" * 44]
    request.close_body()


def test_a_declared_length_over_the_limit_is_refused_at_the_start_notice(tmp_path):
    # Answered (413, close) while mongrel2 is still writing: the client is not kept sending.
    path = tmp_path / "upload.AbC123"
    path.write_bytes(b"x" * 10)  # what mongrel2 has written so far
    uploads = Uploads(HandlerSettings(upload_dir=str(tmp_path), max_body=LIMIT))
    start = {"METHOD": "POST", "content-length": str(LIMIT + 1), core.UPLOAD_START: str(path)}
    request, close = core.request_for(message(start), uploads.take, LIMIT)
    assert close and request.error is not None and request.error.status == 413
    assert request.error.details == {"limit": LIMIT, "length": LIMIT + 1}
    assert not path.exists()


def test_a_body_within_mongrel2s_content_length_but_over_the_limit_is_413_and_close():
    request, close = served({"METHOD": "POST", "content-length": str(LIMIT + 1)}, body=b"x" * (LIMIT + 1))
    assert close and request.error is not None and request.error.status == 413
    assert request.error.details == {"limit": LIMIT, "length": LIMIT + 1}
    request, close = served({"METHOD": "POST", "content-length": str(LIMIT)}, body=b"x" * LIMIT)
    assert request.error is None and request.body == b"x" * LIMIT


def test_a_streamed_upload_is_refused_with_501_and_close():
    # mongrel2's upload.stream: the first message carries only the body's first bytes.
    request, close = served({"METHOD": "POST", "content-length": "50000", core.UPLOAD_STREAM: "0"},
                            body=b"x" * 100)
    assert close and request.error is not None and request.error.status == 501
    assert "upload.temp_store" in request.error.message


def test_upload_headers_a_client_sends_get_a_400_and_close(tmp_path):
    uploads = Uploads(HandlerSettings(upload_dir=str(tmp_path)))
    forged = {"METHOD": "POST", "content-length": "3", core.UPLOAD_START: "/etc/passwd",
              core.UPLOAD_DONE: "/etc/passwd"}
    request, close = core.request_for(message(forged, body=b"abc"), uploads.take, LIMIT)
    assert close and isinstance(request.error, HTTPError) and request.error.status == 400


# -- streamed bodies -------------------------------------------------------------------

def framing(version: str, headers=(), close=False) -> core.StreamBody:
    return core.StreamBody(StreamingResponse(iter(()), headers=headers), close=close, version=version)


def test_a_streamed_body_is_chunked_for_http11_and_close_delimited_for_http10():
    body = framing("HTTP/1.1")
    assert b"transfer-encoding: chunked" in body.head.lower() and b"connection" not in body.head.lower()
    assert body.wire(b"abc") == b"3\r\nabc\r\n" and body.wire(b"") == b""
    assert body.end() == core.LAST_CHUNK and not body.close
    body = framing("HTTP/1.0")
    assert b"connection: close" in body.head.lower() and b"transfer-encoding" not in body.head.lower()
    assert body.wire(b"abc") == b"abc" and body.end() == b"" and body.close


def test_a_declared_length_is_kept_cut_to_and_checked():
    body = framing("HTTP/1.0", headers=[("Content-Length", "4")])
    assert b"content-length: 4" in body.head.lower() and b"connection: keep-alive" in body.head.lower()
    assert body.wire(b"abcdef") == b"abcd" and body.ended == "longer than its Content-Length"
    assert body.end() == b"" and body.close
    body = framing("HTTP/1.1", headers=[("Content-Length", "4")])
    body.wire(b"ab")
    assert body.end() == b"" and body.ended == "shorter than its Content-Length" and body.close


def test_a_stream_stopped_early_closes_its_connection():
    body = framing("HTTP/1.1")
    body.stop("client gone")
    assert body.end() == b"" and body.close


def test_the_first_chunk_is_the_first_non_empty_one():
    assert core.first_chunk(iter([b"", b"a", b"b"])) == b"a" and core.first_chunk(iter([b""])) is None


# -- WebSocket handshakes ----------------------------------------------------------------

def test_a_handshake_is_refused_without_an_endpoint_or_with_a_bad_version_or_key():
    app = App(Router())
    request, _ = served({"sec-websocket-version": "13", "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert core.refuse_handshake(app, request, True) is None
    refusal = core.refuse_handshake(app, request, False)
    assert refusal.startswith(b"HTTP/1.1 404 ") and b"Connection: close" in refusal
    for version, key in (("8", "dGhlIHNhbXBsZSBub25jZQ=="), ("13", "short")):
        request, _ = served({"sec-websocket-version": version, "sec-websocket-key": key})
        refusal = core.refuse_handshake(app, request, True)
        assert refusal.startswith(b"HTTP/1.1 400 ") and b"Sec-WebSocket-Version: 13" in refusal


# -- the streaming and WebSocket parts, with the fronts' sockets recorded ----------------

class RecordedFronts:
    """What Fronts.send and Fronts.reply were asked to send: (conn_id, data, close)."""

    def __init__(self):
        self.sent: list[tuple[bytes, bytes, bool]] = []

    def send(self, front, sender, conn_id, data, close):
        self.sent.append((conn_id, data, close))

    reply = send


@pytest.fixture
def gevent_hub():
    return pytest.importorskip("m2stack.hubs.gevent_hub").HUB


def front() -> Front:
    return Front("", "inproc://requests", "inproc://responses", None, None)


def stream(gevent_hub, chunks, version="HTTP/1.1", hold=lambda: True):
    from m2stack.doors.mongrel2.streaming import Streams
    fronts = RecordedFronts()
    app = App(Router())
    streams = Streams(gevent_hub, app, HandlerSettings(stream_pace=0.0), fronts)
    request, close = served({"VERSION": version})
    response = app.finish(request, StreamingResponse(chunks))
    result = streams.send(front(), message({"VERSION": version}), request, response, close, hold)
    return result, b"".join(data for _, data, _ in fronts.sent), fronts.sent[-1][2] if fronts.sent else None


def test_a_stream_goes_out_chunked_and_keeps_the_connection(gevent_hub):
    result, wire, closed = stream(gevent_hub, iter([b"", b"ab", b"cd"]))
    assert result == (200, False) and closed is False
    assert wire.endswith(b"2\r\nab\r\n2\r\ncd\r\n0\r\n\r\n") and b"Transfer-Encoding: chunked" in wire


def test_a_stream_that_fails_after_its_head_closes_the_connection(gevent_hub):
    def failing():
        yield b"ab"
        raise ValueError("boom")

    result, wire, closed = stream(gevent_hub, failing())
    assert result == (200, True) and closed is True and not wire.endswith(core.LAST_CHUNK)


def test_a_stream_that_fails_before_its_first_chunk_is_a_500(gevent_hub):
    def failing():
        raise ValueError("boom")
        yield b""

    result, wire, closed = stream(gevent_hub, failing(), version="HTTP/1.0")
    assert result == (500, True) and wire.startswith(b"HTTP/1.1 500 ") and closed is True


def test_a_stream_is_paced_and_its_chunks_joined(gevent_hub):
    """What comes within `stream_pace` is joined into one message (mongrel2 drops a
    connection with 16 undelivered), and a producer that fills a message waits."""
    import time

    from m2stack.doors.mongrel2.streaming import Streams

    class Timed(RecordedFronts):
        def send(self, front, sender, conn_id, data, close):
            super().send(front, sender, conn_id, data, close)
            self.times.append(time.monotonic())

    fronts = Timed()
    fronts.times = []
    app = App(Router())
    streams = Streams(gevent_hub, app, HandlerSettings(stream_pace=0.05, stream_message_bytes=1024), fronts)
    request, close = served({})
    chunks = [b"a" * 10] * 20 + [b"b" * 600] * 4
    result = streams.send(front(), message({}), request, app.finish(request, StreamingResponse(iter(chunks))),
                          close, lambda: True)
    assert result == (200, False)
    body = b"".join(data for _, data, _ in fronts.sent).split(b"\r\n\r\n", 1)[1]
    assert body.count(b"a" * 10) == 20 and body.count(b"b" * 600) == 4 and body.endswith(core.LAST_CHUNK)
    assert len(fronts.sent) < len(chunks) // 4  # joined
    assert fronts.times[-1] - fronts.times[0] >= 2 * 0.045  # the producer waited twice for a full message


def test_a_withheld_stream_sends_nothing(gevent_hub):
    assert stream(gevent_hub, iter([b"ab"]), hold=lambda: False) == (None, b"", None)


def test_a_disconnect_notice_stops_a_stream(gevent_hub):
    from m2stack.doors.mongrel2.streaming import Streams
    fronts = RecordedFronts()
    app = App(Router())
    streams = Streams(gevent_hub, app, HandlerSettings(stream_pace=0.0), fronts)
    request, _ = served({})
    notice = core.parse(protocol.encode_request(SENDER, 7, "@*", {"METHOD": "JSON"}, b'{"type":"disconnect"}',
                                                "json"))

    def endless():
        while True:
            streams.disconnected(notice)  # as if mongrel2's notice came in meanwhile
            yield b"x"

    result = streams.send(front(), message({}), request, app.finish(request, StreamingResponse(endless())),
                          False, lambda: True)
    assert result == (200, True)


class Echo(WebSocketEndpoint):
    def on_message(self, data):
        self.connection.send_text(data if isinstance(data, str) else data.decode())


def websockets(gevent_hub):
    from m2stack.doors.mongrel2.websocket import WebSockets
    routes = Router()
    routes.route("/ws")(Echo)
    fronts = RecordedFronts()
    return WebSockets(gevent_hub, App(routes), fronts), fronts


def test_a_websocket_handshake_is_answered_then_its_frames_echoed(gevent_hub):
    sockets, fronts = websockets(gevent_hub)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    headers = {"METHOD": "WEBSOCKET_HANDSHAKE", "sec-websocket-version": "13", "sec-websocket-key": key}
    handshake = message(headers, path="/ws")
    assert sockets.handle(handshake, "WEBSOCKET_HANDSHAKE", front(), core.build_request(handshake))
    frame = message({"METHOD": "WEBSOCKET", "FLAGS": "0x81"}, body=b"hi", path="/ws")
    assert sockets.handle(frame, "WEBSOCKET", front(), core.build_request(frame))
    gevent_hub.sleep(0.05)  # the outbox's coalescing greenlet
    (conn_id, wire, close), = fronts.sent
    assert wire.startswith(b"HTTP/1.1 101 ") and ws.accept_key(key).encode() in wire
    assert wire.endswith(ws.build_frame(ws.TEXT, b"hi")) and not close


def test_a_websocket_handshake_to_nowhere_is_a_404_and_a_close(gevent_hub):
    sockets, fronts = websockets(gevent_hub)
    headers = {"METHOD": "WEBSOCKET_HANDSHAKE", "sec-websocket-version": "13",
               "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="}
    handshake = message(headers, path="/nowhere")
    assert not sockets.handle(handshake, "WEBSOCKET_HANDSHAKE", front(), core.build_request(handshake))
    gevent_hub.sleep(0.05)
    (conn_id, wire, close), = fronts.sent
    assert wire.startswith(b"HTTP/1.1 404 ") and b"Connection: close" in wire and close


def test_an_unmasked_reserved_bit_frame_closes_with_1002(gevent_hub):
    sockets, fronts = websockets(gevent_hub)
    frame = message({"METHOD": "WEBSOCKET", "FLAGS": "0xc1"}, body=b"hi", path="/ws")  # RSV1 set
    assert sockets.handle(frame, "WEBSOCKET", front(), core.build_request(frame))
    gevent_hub.sleep(0.05)
    (conn_id, wire, close), = fronts.sent
    assert wire == ws.close_frame(ws.PROTOCOL_ERROR, wire[4:].decode()) and close


# -- the intake's hand-off check ---------------------------------------------------------

class HubThatLostItsHandoff:
    """A hub whose switch hook was replaced after start (a later greenlet.settrace)."""

    def install_handoff(self):
        pass

    def handoff_installed(self):
        return False


class NoFronts:
    """Where PullIntake sets its hooks; no front is ever added here."""


def test_a_lost_hand_off_is_logged_once_set_as_a_metric_and_replaced_by_a_greenlet_each(caplog):
    from prometheus_client import REGISTRY

    from m2stack.doors.mongrel2.pull import PullIntake
    intake = PullIntake(HubThatLostItsHandoff(), HandlerSettings(serve_inline=True), NoFronts(), None, None)
    intake.start()
    assert intake.serve_inline
    intake.check()
    intake.check()
    assert not intake.serve_inline and REGISTRY.get_sample_value("m2stack_handoff_lost") == 1
    assert len([r for r in caplog.records if "hand-off is gone" in r.getMessage()]) == 1
