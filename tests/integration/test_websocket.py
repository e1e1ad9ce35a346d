"""WebSockets through the real mongrel2 and real handler processes, with a real client
library (websockets) and, for the bad frames, a raw socket."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
import urllib.request
from collections import Counter
from contextlib import ExitStack

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from m2stack.protocol import websocket as ws
from processes import ROOT  # noqa: F401 (the package path comes with it)

KEY = b"\x01\x02\x03\x04"
CHAT_CLIENTS = 200  # the figure: 200 concurrent clients across 2 handlers


def open_ws(mongrel2, path="/ws/echo", **kwargs):
    return connect(f"ws://127.0.0.1:{mongrel2.port}{path}", proxy=None, open_timeout=5,
                   max_size=None, **kwargs)


class RawClient:
    """A WebSocket client that sends whatever bytes it is told to."""

    def __init__(self, port: int, path: str = "/ws/echo"):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                          f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                          "Sec-WebSocket-Version: 13\r\n\r\n".encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = self.sock.recv(4096)
            assert chunk, head
            head += chunk
        head, _, self.rest = head.partition(b"\r\n\r\n")
        self.head = head.decode()
        assert self.head.startswith("HTTP/1.1 101 "), self.head
        assert f"Sec-WebSocket-Accept: {ws.accept_key(key)}" in self.head
        self.parser = ws.FrameParser(require_mask=False, max_message=16 << 20)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def messages(self) -> list[ws.Message]:
        """Every message until the server closes the connection."""
        out = self.parser.feed(self.rest)
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return out
            out += self.parser.feed(chunk)


def test_echo_text_and_binary(mongrel2, handler):
    with open_ws(mongrel2) as client:
        client.send("héllo")
        assert client.recv(5) == "héllo"
        client.send(b"\x00\xffbin")
        assert client.recv(5) == b"\x00\xffbin"


def test_a_one_megabyte_fragmented_message(mongrel2, handler):
    data = os.urandom(1_000_000)
    with open_ws(mongrel2) as client:
        client.send(data[i:i + 65536] for i in range(0, len(data), 65536))  # 16 fragments
        assert client.recv(30) == data
        text = "ü" * 500_000  # 1 MB of UTF-8 text in 125 fragments
        client.send(text[i:i + 4001] for i in range(0, len(text), 4001))
        assert client.recv(30) == text


def test_a_burst_of_1000_messages_is_echoed_whole_by_two_handlers(mongrel2, start_handler):
    """Without coalescing, mongrel2 dropped the client after 2 to 60 replies of a 50-message
    burst (16 undelivered writes per connection, src/connection.h:47)."""
    start_handler()
    start_handler()
    sent = [f"m{i}" for i in range(1000)]
    with open_ws(mongrel2) as client:
        for text in sent:
            client.send(text)
        got = [client.recv(10) for _ in sent]
    assert sorted(got) == sorted(sent)  # round-robin over handlers: each handler's replies in order


def test_ping_pong_and_the_close_handshake(mongrel2, handler):
    with open_ws(mongrel2) as client:
        assert client.ping(b"are you there").wait(5)
        client.close(1000, "bye")
        assert client.protocol.close_rcvd is not None and client.protocol.close_rcvd.code == 1000


@pytest.mark.parametrize("frame, code", [
    (ws.build_frame(ws.TEXT, b"\xff\xfe", mask=KEY), 1007),                    # text not UTF-8
    (ws.build_frame(ws.BINARY, b"x" * ((4 << 20) + 1), mask=KEY), 1009),       # over /ws/echo's 4 MiB
    (ws.build_frame(ws.TEXT, b"x", rsv=4, mask=KEY), 1002),                    # RSV1, no extension
    (ws.build_frame(0x3, b"x", mask=KEY), 1002),                               # reserved opcode
    (ws.build_frame(ws.CLOSE, b"\x03\xed", mask=KEY), 1002),                   # close code 1005 sent
])
def test_bad_frames_get_the_right_close_code_and_the_handler_keeps_serving(mongrel2, handler, frame, code):
    client = RawClient(mongrel2.port)
    client.send(frame)
    messages = client.messages()
    assert [(m.opcode, m.code) for m in messages] == [(ws.CLOSE, code)]
    with open_ws(mongrel2) as again:
        again.send("still here")
        assert again.recv(5) == "still here"


def test_an_unmasked_frame_is_dropped_by_mongrel2_itself(mongrel2, handler):
    """mongrel2 1.12 closes the TCP connection on an unmasked frame (src/websocket.h,
    WS_validate_packet) before any handler sees it: no close frame 1002 can be sent."""
    client = RawClient(mongrel2.port)
    client.send(ws.build_frame(ws.TEXT, b"not masked"))
    assert client.messages() == []
    with open_ws(mongrel2) as again:
        again.send("still here")
        assert again.recv(5) == "still here"


def test_a_client_that_only_listens_outlives_mongrel2s_idle_timeout(mongrel2, start_handler):
    """mongrel2's reaper counts only client reads (src/register.c:310, Register_ping): the
    owner's keep-alive notes (HANDLER_WS_KEEPALIVE) keep a silent client connected."""
    start_handler(HANDLER_WS_KEEPALIVE="1")
    with open_ws(mongrel2, ping_interval=None) as client:
        time.sleep(mongrel2.IDLE_TIMEOUT + 3)  # past the reaper's worst case (min_ping + 2 ticks)
        client.send("still open")
        assert client.recv(5) == "still open"


def test_a_handshake_for_a_path_with_no_websocket_endpoint(mongrel2, handler):
    with pytest.raises(InvalidStatus) as caught:
        open_ws(mongrel2, "/ws/nothing-here")
    assert caught.value.response.status_code == 404
    with pytest.raises(InvalidStatus) as caught:
        open_ws(mongrel2, "/json")
    assert caught.value.response.status_code == 404


def test_a_plain_get_of_a_websocket_endpoint_is_400_json(mongrel2, handler):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(mongrel2.url + "/ws/echo", timeout=5)
    assert caught.value.code == 400
    assert "WebSocket" in json.loads(caught.value.read())["error"]["message"]


# -- the chat across handler processes (PostgreSQL LISTEN/NOTIFY) -------------------------------

def test_chat_across_two_handlers_every_client_gets_every_message_once(mongrel2, start_handler, postgres):
    handlers = [start_handler(**postgres), start_handler(**postgres)]
    with ExitStack() as stack:
        clients = [stack.enter_context(open_ws(mongrel2, "/ws/chat")) for _ in range(CHAT_CLIENTS)]
        for client in clients:  # a client read refreshes mongrel2's idle clock (limits.min_ping)
            client.ping()
        time.sleep(0.3)
        senders = clients[:10]
        sent = [f"message {i} from client {i % len(senders)}" for i in range(50)]
        for i, text in enumerate(sent):
            senders[i % len(senders)].send(text)
        started = time.monotonic()
        received = []
        for client in clients:
            got = []
            deadline = time.monotonic() + 10
            while len(got) < len(sent) and time.monotonic() < deadline:
                try:
                    got.append(client.recv(max(0.1, deadline - time.monotonic())))
                except (TimeoutError, ConnectionClosed) as exc:
                    got.append(repr(exc))
                    break
            received.append(got)
        elapsed = time.monotonic() - started
        wrong = [(i, len(got), got[-1:]) for i, got in enumerate(received) if sorted(got) != sorted(sent)]
        assert not wrong, (elapsed, wrong)
        time.sleep(0.3)
        for client in clients:
            with pytest.raises(TimeoutError):
                client.recv(0)  # nothing twice
        owners = Counter(client.response.headers["X-Handler-Id"] for client in clients)
        assert set(owners) == {p.handler_id for p in handlers}, owners  # members on both handlers
    logs = [p.output() for p in handlers]
    assert all("Traceback" not in text for text in logs), logs


def test_chat_members_that_leave_get_nothing_more(mongrel2, start_handler, postgres):
    start_handler(**postgres)
    start_handler(**postgres)
    with ExitStack() as stack:
        stay = [stack.enter_context(open_ws(mongrel2, "/ws/chat")) for _ in range(4)]
        go = [stack.enter_context(open_ws(mongrel2, "/ws/chat")) for _ in range(4)]
        time.sleep(0.3)
        for client in go[:2]:
            client.close()
        for client in go[2:]:
            client.socket.close()  # no close frame: only mongrel2's disconnect notice tells
        time.sleep(0.5)
        stay[0].send("after they left")
        for client in stay:
            assert client.recv(10) == "after they left"
