"""Two Content-Length headers that disagree: 400 JSON and the connection closed.

Mongrel2 1.12 accepts such a request, takes the first value and parses what follows as a
new request; a proxy in front that took the last value would see another body (request
smuggling). The handler sees both values (a repeated header arrives as a list) and refuses.
"""

from __future__ import annotations

import json
import socket

from support import parse_head, read_until_close


def test_differing_content_lengths_get_400_json_and_the_connection_closes(mongrel2, handler):
    smuggled = b"GET /json HTTP/1.1\r\nHost: x\r\n\r\n"
    body = b'{"a": 1}'
    request = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n%b%b"
               % (len(body), len(body) + len(smuggled), body, smuggled))
    with socket.create_connection(("127.0.0.1", mongrel2.port), timeout=10) as conn:
        conn.sendall(request)
        received = read_until_close(conn, timeout=10)
    head, _, rest = received.partition(b"\r\n\r\n")
    status, headers = parse_head(head)
    assert status == 400, received[:300]
    assert headers["connection"] == "close"
    error = json.loads(rest[: int(headers["content-length"])])["error"]
    assert error["message"] == "conflicting Content-Length values"
    # Nothing else was served on that connection: the smuggled GET got no answer.
    assert b"HTTP/1.1" not in rest[int(headers["content-length"]):], received


def test_equal_repeated_content_lengths_are_one_length(mongrel2, handler):
    body = b'{"a": 1}'
    request = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
               b"Content-Length: %d\r\nContent-Length: %d\r\n\r\n%b" % (len(body), len(body), body))
    with socket.create_connection(("127.0.0.1", mongrel2.port), timeout=10) as conn:
        conn.sendall(request)
        received = read_until_close(conn, timeout=10)
    head, _, rest = received.partition(b"\r\n\r\n")
    status, headers = parse_head(head)
    assert status == 200 and json.loads(rest[: int(headers["content-length"])]) == {"received": {"a": 1}}
