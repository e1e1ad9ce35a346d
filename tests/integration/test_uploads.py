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


def peak_rss(pid: int) -> int:
    """The process's peak resident memory (VmHWM), bytes."""
    with open(f"/proc/{pid}/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


@pytest.mark.parametrize("mib", [10, 100])
def test_large_bodies_are_hashed_and_their_files_deleted(uploads, upload_handler, mib):
    # The handler reads the file in 64 KiB chunks: its peak memory grows by far less than
    # the body (read whole, it would grow by the body's size at least).
    server, directory = uploads
    handler = upload_handler()
    post(server, b"x" * 50_000)  # a first upload: what any upload costs once (imports, buffers)
    before = peak_rss(handler.process.pid)
    body = os.urandom(1 << 20) * mib
    status, _, answer = post(server, body)
    assert status == 200, answer[:300]
    assert json.loads(answer) == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert list(directory.iterdir()) == []
    grown = peak_rss(handler.process.pid) - before
    print(f"[measured] {mib} MiB upload: the handler's peak RSS grew by {grown / 1024:.0f} KiB")
    assert grown < 8 << 20, grown


def chunked_post(server: Mongrel2, chunks: list[bytes]) -> bytes:
    """A chunked POST /upload on a raw socket: everything the server sent until it closed."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n")
        for chunk in chunks:
            sock.sendall(b"%x\r\n%b\r\n" % (len(chunk), chunk))
        sock.sendall(b"0\r\n\r\n")
        return read_until_close(sock)


def test_a_chunked_body_goes_through_temp_store_whatever_its_size(uploads, upload_handler):
    # mongrel2 1.12.2 writes every chunked body to temp_store (no Content-Length to go by),
    # and closes the connection without an answer at a chunk over 100 KiB (MAX_CHUNK_SIZE in
    # its connection.c, no setting): README, "Uploads".
    server, directory = uploads
    upload_handler()
    body = os.urandom(300_000)
    answer = chunked_post(server, [body[i:i + 65_536] for i in range(0, len(body), 65_536)])
    head, _, json_body = answer.partition(b"\r\n\r\n")
    assert b" 200 " in head.split(b"\r\n", 1)[0], head
    assert json.loads(json_body) == {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    assert chunked_post(server, [b"x" * 200_000]) == b""
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


def test_over_the_limit_is_413_json_while_the_client_is_still_sending(uploads, upload_handler):
    # Refused at mongrel2's upload-start notice: the client that has sent 64 KiB of a
    # declared 2 MiB gets the 413 and the close at once, and no file stays behind.
    server, directory = uploads
    upload_handler(MAX_REQUEST_BODY_BYTES=str(1 << 20))
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (2 << 20)
                     + b"x" * 65_536)
        answer = read_until_close(sock)  # socket timeout 10 s: a hung client fails here
    head, _, body = answer.partition(b"\r\n\r\n")
    assert b" 413 " in head.split(b"\r\n", 1)[0] and b"Connection: close" in head, head
    assert json.loads(body)["error"]["details"] == {"limit": 1 << 20, "length": 2 << 20}
    wait_until(lambda: not any(directory.iterdir()), 5, "the partial file to be deleted")


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
