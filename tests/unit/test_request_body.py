"""The request body as the app reads it (Request.body, iter_body, body_file), whole or
streamed from a file a front door holds; the one body limit both doors read
(MAX_REQUEST_BODY_BYTES) and the names it replaced."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tracemalloc

import pytest
from test_wsgi_door import BLOCKING, call, make_environ

from m2stack import apps
from m2stack.app import Request
from m2stack.doors import wsgi
from m2stack.doors.body import YIELD_EVERY, FileBody
from m2stack.settings import HandlerSettings, SettingsError, WSGISettings, load


def streamed(data: bytes, pauses: list | None = None) -> Request:
    pauses = [] if pauses is None else pauses
    body = FileBody(io.BytesIO(data), len(data), lambda: pauses.append(1))
    return Request("POST", "/upload", {}, {}, body)


def test_a_streamed_body_comes_in_chunks_and_whole_only_if_asked():
    data = os.urandom(200_000)
    request = streamed(data)
    assert request.body_size == len(data)
    assert [len(c) for c in request.iter_body(65_536)] == [65_536, 65_536, 65_536, 3_392]
    with pytest.raises(RuntimeError):
        request.body  # noqa: B018 (read once, as a stream)
    request = streamed(data)
    assert request.body == data and b"".join(request.iter_body()) == data  # kept once whole
    request = streamed(b"line 1\nline 2\n" + data)
    file = request.body_file
    assert file.readline() == b"line 1\n" and file.readline() == b"line 2\n" and file.read() == data


def test_the_hub_gets_a_turn_every_mebibyte_read():
    pauses: list = []
    request = streamed(b"z" * (5 * YIELD_EVERY), pauses)
    for _ in request.iter_body():
        pass
    assert len(pauses) == 5


def test_a_large_body_through_the_wsgi_door_is_spooled_and_hashed_in_bounded_memory():
    # 16 MiB through the WSGI door to POST /upload: the answer is its hash, and the peak of
    # memory allocated meanwhile stays a small fraction of it (reading it whole: > 16 MiB).
    data = os.urandom(16 << 20)
    adapter = wsgi.WSGIAdapter(apps.load_app(BLOCKING, front_door="wsgi"), BLOCKING, max_body=len(data))
    environ = make_environ("POST", "/upload", body=data)
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        status, _, body = call(adapter, environ)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert status == 200 and json.loads(body) == {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert peak < 4 << 20, peak


def test_over_the_limit_the_wsgi_door_answers_413_with_the_limit():
    adapter = wsgi.WSGIAdapter(apps.load_app(BLOCKING, front_door="wsgi"), BLOCKING, max_body=2 << 20)
    status, _, body = call(adapter, make_environ("POST", "/upload", body=b"x" * ((2 << 20) + 1)))
    assert status == 413
    assert json.loads(body)["error"]["details"] == {"limit": 2 << 20, "length": (2 << 20) + 1}
    # chunked (no Content-Length): refused once the stream passes the limit
    status, _, body = call(adapter, make_environ("POST", "/upload", body=b"x" * (3 << 20), content_length=False,
                                                 headers={}) | {"wsgi.input_terminated": True})
    assert status == 413 and json.loads(body)["error"]["details"] == {"limit": 2 << 20}


def test_one_limit_for_both_doors_and_the_old_names_are_refused():
    environ = {"MAX_REQUEST_BODY_BYTES": "12345"}
    assert load(HandlerSettings, environ).max_body == load(WSGISettings, environ).max_body == 12345
    assert load(HandlerSettings, {}).max_body == load(WSGISettings, {}).max_body == 100 << 20
    for old in ("MAX_CONTENT_LENGTH", "HANDLER_MAX_UPLOAD"):
        for kind in (HandlerSettings, WSGISettings):
            with pytest.raises(SettingsError, match=f"{old} is no longer read: set MAX_REQUEST_BODY_BYTES"):
                load(kind, {old: "20480"})
