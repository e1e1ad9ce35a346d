"""Large bodies through mongrel2's upload.temp_store (doors/mongrel2/uploads.py), each hub."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import socket

import pytest

from processes import HandlerProcess, Mongrel2
from support import read_until_close, require, wait_until


@pytest.fixture(scope="module")
def uploads(tmp_path_factory):
    require("mongrel2", "the process-level tests run the real mongrel2 binary (Debian mongrel2-core)")
    directory = tmp_path_factory.mktemp("uploads")
    server = Mongrel2(tmp_path_factory.mktemp("mongrel2-uploads"), M2_UPLOAD_DIR=str(directory))
    yield server, directory
    server.stop()


@pytest.fixture
def upload_handler(uploads, hub, tmp_path):
    server, directory = uploads
    started = []

    def start(**env):
        process = HandlerProcess(hub, server, tmp_path, HANDLER_UPLOAD_DIR=str(directory), **env)
        started.append(process)
        process.wait_connected()
        return process

    yield start
    for process in started:
        process.stop()


def post(server: Mongrel2, body: bytes, headers: dict | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
    try:
        conn.request("POST", "/upload", body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        conn.close()


@pytest.mark.parametrize("mib", [10, 100])
def test_large_bodies_are_hashed_and_their_files_deleted(uploads, upload_handler, mib):
    server, directory = uploads
    upload_handler()
    body = os.urandom(1 << 20) * mib
    status, _, answer = post(server, body)
    assert status == 200, answer[:300]
    assert json.loads(answer) == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert list(directory.iterdir()) == []


def test_a_small_body_still_works(uploads, upload_handler):
    server, directory = uploads
    upload_handler()
    status, _, answer = post(server, b"abc")
    assert status == 200 and json.loads(answer)["bytes"] == 3


def test_spoofed_upload_headers_are_refused(uploads, upload_handler, tmp_path):
    server, directory = uploads
    upload_handler()
    victim = directory / "upload.victim"
    victim.write_bytes(b"someone else's upload")
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    for target, body in ((victim, b""), (secret, b""), (victim, b"x" * 21), (secret, b"x")):
        for headers in ({"x-mongrel2-upload-start": str(target), "x-mongrel2-upload-done": str(target)},
                        {"x-mongrel2-upload-done": str(target)},
                        {"x-mongrel2-upload-start": str(target)}):
            status, ctype, answer = post(server, body, headers)
            assert status == 400 and ctype == "application/json", (target, headers, answer)
    assert victim.read_bytes() == b"someone else's upload" and secret.exists()
    victim.unlink()
    assert list(directory.iterdir()) == []
    # the same headers on the wire, with a body: refused, and the connection closed
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                     b"x-mongrel2-upload-start: %b\r\nx-mongrel2-upload-done: %b\r\n\r\nhello"
                     % (str(secret).encode(), str(secret).encode()))
        assert b" 400 " in read_until_close(sock).split(b"\r\n", 1)[0]


def test_over_the_handler_maximum_is_413_json(uploads, upload_handler):
    server, directory = uploads
    upload_handler(HANDLER_MAX_UPLOAD=str(1 << 20))
    status, ctype, answer = post(server, b"x" * (2 << 20))
    assert status == 413 and ctype == "application/json"
    assert json.loads(answer)["error"]["details"]["limit"] == 1 << 20
    assert list(directory.iterdir()) == []


def test_a_client_that_leaves_mid_upload_leaves_no_file(uploads, upload_handler):
    server, directory = uploads
    handler = upload_handler()
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 300_000)
        wait_until(lambda: any(directory.iterdir()), 5, "mongrel2 to start the file")
    # mongrel2 deletes its own partial file (src/upload.c:146 "Failed to stream to disk")
    wait_until(lambda: not any(directory.iterdir()), 5, "the partial file to be deleted")
    status, _, answer = post(server, b"y" * 50_000)
    assert status == 200 and json.loads(answer)["bytes"] == 50_000
    assert handler.process.poll() is None
