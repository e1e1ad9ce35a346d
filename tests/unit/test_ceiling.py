"""The ceiling handler reads mongrel2's headers in either encoding (JSON is the default)."""

from __future__ import annotations

import pytest

import ceiling
from m2stack.protocol import tnetstring


def message(headers: dict, encoding: str, path: str = "/plaintext") -> bytes:
    if encoding == "json":
        import json
        raw = json.dumps(headers, separators=(",", ":")).encode()
    else:
        raw = tnetstring.dumps(headers)
    return b"uuid 7 " + path.encode() + b" %d:%b,0:," % (len(raw), raw)


@pytest.mark.parametrize("encoding", ["json", "tnetstring"])
def test_a_keep_alive_request_gets_one_frame(encoding):
    frames = ceiling.answer(message({"METHOD": "GET", "VERSION": "HTTP/1.1", "PATH": "/plaintext"}, encoding))
    assert len(frames) == 1 and b"Hello, World!" in frames[0] and frames[0].startswith(b"uuid 1:7, ")


@pytest.mark.parametrize("encoding", ["json", "tnetstring"])
def test_connection_close_and_http10_close_after_the_answer(encoding):
    for headers in ({"METHOD": "GET", "VERSION": "HTTP/1.1", "connection": "close"},
                    {"METHOD": "GET", "VERSION": "HTTP/1.0"}):
        frames = ceiling.answer(message(headers, encoding, "/json"))
        assert len(frames) == 2 and frames[1] == b"uuid 1:7, ", headers


@pytest.mark.parametrize("encoding", ["json", "tnetstring"])
def test_a_disconnect_notice_gets_no_answer(encoding):
    assert ceiling.answer(message({"METHOD": "JSON", "PATH": "@*"}, encoding, "@*")) == []
