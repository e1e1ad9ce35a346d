"""One parity suite, every variant: the same HTTP behaviours through every front door.

    mongrel2-gevent, mongrel2-eventlet   Mongrel2 -> ZeroMQ -> handler (gevent / eventlet)
    wsgi-gevent, wsgi-eventlet           Gunicorn (gevent / eventlet worker) -> the app

Every test states ONE expectation and runs it against all four, so a behaviour that
differs between front doors fails here. The differences that cannot be removed (README,
"Differences between the front doors") are asserted as such at the end, explicitly.
One stack per variant (module scope), one handler each: four compose up/down cycles.
"""

from __future__ import annotations

import json
import socket

import pytest

from stack import VARIANTS, Stack

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


@pytest.fixture(scope="module", params=list(VARIANTS))
def variant(request, docker_available):
    stack = Stack(f"parity-{request.param}", VARIANTS[request.param])
    stack.variant = request.param
    stack.hub = request.param.split("-")[1]
    try:
        stack.up(handlers=1)
        yield stack
    finally:
        stack.down()


def check_common_headers(stack: Stack, response) -> None:
    """What every answer of the app carries, whichever door it came through."""
    headers = response.headers
    assert headers["X-Hub"] == stack.hub
    assert headers["X-Front-Door"] == stack.front_door
    assert headers["X-Request-Id"] and headers["X-Handler-Id"]
    if response.request.method != "HEAD":
        assert headers["Content-Length"] == str(len(response.content))


def check_error(stack: Stack, response, status: int, message: str | None = None) -> dict:
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"] == JSON
    body = response.json()
    assert set(body) == {"error", "request_id"}
    assert body["request_id"] == response.headers["X-Request-Id"]
    assert body["error"]["status"] == status
    if message is not None:
        assert body["error"]["message"] == message
    check_common_headers(stack, response)
    return body["error"]


# ---- every endpoint ------------------------------------------------------------------

def test_plaintext(variant):
    response = variant.get("/plaintext")
    assert response.status_code == 200 and response.text == "Hello, World!"
    assert response.headers["Content-Type"] == TEXT
    check_common_headers(variant, response)


def test_json(variant):
    response = variant.get("/json")
    assert response.status_code == 200 and response.json() == {"message": "Hello, World!"}
    assert response.headers["Content-Type"] == JSON
    assert response.content == b'{"message":"Hello, World!"}'  # byte for byte
    check_common_headers(variant, response)


def test_sleep_and_its_argument_checks(variant):
    response = variant.get("/sleep?ms=20")
    assert response.status_code == 200 and response.json() == {"slept_ms": 20}
    check_common_headers(variant, response)
    assert variant.get("/sleep?ms=1&ms=2").json() == {"slept_ms": 2}  # the last value wins
    error = check_error(variant, variant.get("/sleep?ms=abc"), 400, "query argument 'ms' must be an integer")
    assert error["details"] == {"argument": "ms", "value": "abc"}
    check_error(variant, variant.get("/sleep?ms=-1"), 400)


def test_healthz(variant):
    response = variant.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["hub"] == variant.hub
    assert body["handler_id"] == response.headers["X-Handler-Id"]
    check_common_headers(variant, response)


def test_error_is_500_json_and_the_server_keeps_serving(variant):
    check_error(variant, variant.get("/error"), 500, "internal server error")
    assert variant.get("/json").status_code == 200


def test_echo_round_trips_json(variant):
    document = {"name": "caf\u00e9", "list": [1, 2.5, None, True], "nested": {"k": "v"}}
    response = variant.request("POST", "/echo", json=document)
    assert response.status_code == 200 and response.json() == {"received": document}
    check_common_headers(variant, response)


def test_echo_malformed_json_is_400(variant):
    response = variant.request("POST", "/echo", data=b'{"a": ', headers={"Content-Type": JSON})
    check_error(variant, response, 400, "malformed JSON body")


def test_echo_wrong_content_type_is_415(variant):
    response = variant.request("POST", "/echo", data=b'{"a": 1}', headers={"Content-Type": "text/plain"})
    error = check_error(variant, response, 415, "expected Content-Type: application/json")
    assert error["details"] == {"content_type": "text/plain"}


def test_echo_content_type_parameters_are_accepted(variant):
    response = variant.request("POST", "/echo", data=b"[1]",
                               headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 200 and response.json() == {"received": [1]}


def test_unknown_path_is_404_json(variant):
    error = check_error(variant, variant.get("/no/such/path"), 404, "no route for this path")
    assert error["details"] == {"path": "/no/such/path"}


@pytest.mark.parametrize("method, path, allow", [
    ("DELETE", "/json", "GET, HEAD"),
    ("POST", "/plaintext", "GET, HEAD"),
    ("GET", "/echo", "POST"),
    ("PUT", "/echo", "POST"),
])
def test_wrong_method_is_405_with_allow(variant, method, path, allow):
    response = variant.request(method, path)
    error = check_error(variant, response, 405)
    assert response.headers["Allow"] == allow and error["details"] == {"allowed": allow}


@pytest.mark.parametrize("path", ["/json", "/plaintext", "/no/such/path"])
def test_head_is_get_without_the_body(variant, path):
    get = variant.get(path)
    head = variant.request("HEAD", path)
    assert head.status_code == get.status_code and head.content == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"]
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    check_common_headers(variant, head)


@pytest.mark.parametrize("target, message", [
    ("/%ff", "invalid UTF-8 in path"),
    ("/json?x=%C3%28", "invalid UTF-8 in query string"),
    ("/json?x=%ff", "invalid UTF-8 in query string"),
])
def test_undecodable_utf8_in_path_or_query_is_400_json(variant, target, message):
    status, headers, body = raw_get(variant, target)
    assert status == 400 and headers["content-type"] == JSON
    assert json.loads(body)["error"] == {"status": 400, "message": message}
    assert headers["x-hub"] == variant.hub and headers["x-front-door"] == variant.front_door


def test_percent_encoded_utf8_path_is_decoded_once(variant):
    assert check_error(variant, variant.get("/caf%C3%A9"), 404)["details"] == {"path": "/caf\u00e9"}
    # "%2541" is "%41" as data, never "A": decoding happens exactly once.
    assert check_error(variant, variant.get("/%2541"), 404)["details"] == {"path": "/%41"}
    assert variant.get("/js%6Fn").json() == {"message": "Hello, World!"}


def test_client_request_id_is_kept_and_a_bad_one_replaced(variant):
    assert variant.get("/json", headers={"X-Request-Id": "parity-123"}).headers["X-Request-Id"] == "parity-123"
    minted = variant.get("/json", headers={"X-Request-Id": "bad id!"}).headers["X-Request-Id"]
    assert minted != "bad id!" and len(minted) == 16


def test_redirect_to_a_local_path_only(variant):
    response = variant.get("/redirect?to=/json", allow_redirects=False)
    assert response.status_code == 302 and response.headers["Location"] == "/json"
    check_common_headers(variant, response)
    check_error(variant, variant.get("/redirect?to=//evil.example", allow_redirects=False), 400)


def test_keep_alive_serves_many_requests_on_one_connection(variant):
    with socket.create_connection(("127.0.0.1", variant.port), timeout=10) as conn:
        for _ in range(3):
            conn.sendall(b"GET /plaintext HTTP/1.1\r\nHost: parity\r\n\r\n")
            head, body = read_response(conn)
            assert head.startswith(b"HTTP/1.1 200 ") and body == b"Hello, World!"


def test_http10_without_keep_alive_gets_one_response_then_close(variant):
    with socket.create_connection(("127.0.0.1", variant.port), timeout=10) as conn:
        conn.sendall(b"GET /json HTTP/1.0\r\n\r\n")
        data = b""
        while chunk := conn.recv(65536):  # ends only if the server closes
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.split(b" ", 2)[1] == b"200" and json.loads(body) == {"message": "Hello, World!"}


def raw_get(stack: Stack, target: str) -> tuple[int, dict[str, str], bytes]:
    """A GET sent byte for byte (requests would re-quote a malformed "%zz" to "%25zz")."""
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: parity\r\n\r\n".encode("ascii"))
        head, body = read_response(conn)
    lines = head.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip()
               for name, _, value in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split(" ")[1]), headers, body


def read_response(conn: socket.socket) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        body += conn.recv(65536)
    return head, body


# ---- what differs between the front doors, on purpose (README) --------------------------

def test_body_over_the_limit_is_413_from_either_door(variant):
    response = variant.request("POST", "/echo", data=b"[" + b"1," * 15_000 + b"1]",
                               headers={"Content-Type": JSON})
    assert response.status_code == 413
    if variant.front_door == "wsgi":
        check_error(variant, response, 413, "request body too large")
    else:  # mongrel2 refuses it itself, before any handler: "Entity Too Large", no X-Hub
        assert "X-Hub" not in response.headers and response.headers["Server"].startswith("Mongrel2")


@pytest.mark.parametrize("target", ["/%zz", "/caf%zz", "/json?x=%zz", "/json?x=%4"])
def test_malformed_percent_encoding_is_400_from_either_door(variant, target):
    status, headers, body = raw_get(variant, target)
    assert status == 400
    if variant.front_door == "wsgi":
        assert json.loads(body)["error"]["message"].startswith("invalid percent-encoding in ")
    else:  # mongrel2's HTTP parser refuses it before any handler: "Bad Request", no X-Hub
        assert "x-hub" not in headers and headers["server"].startswith("Mongrel2")


def test_static_files_only_behind_mongrel2(variant):
    response = variant.get("/static/health.txt")
    if variant.front_door == "mongrel2":
        assert response.status_code == 200
    else:
        check_error(variant, response, 404)  # the app has no /static/ route


def test_prometheus_metrics_on_the_internal_port(variant):
    """Every variant serves /metrics on port 9100 inside its network; under Gunicorn the
    master merges its workers' counts (prometheus_client multiprocess mode)."""
    import subprocess

    for _ in range(5):
        assert variant.get("/json").status_code == 200
    script = ("import urllib.request; "
              "print(urllib.request.urlopen('http://127.0.0.1:9100/metrics', timeout=5).read().decode())")
    total = 0.0
    for cid in variant.container_ids(variant.app_service):
        text = subprocess.run(["docker", "exec", cid, "python3", "-c", script],
                              capture_output=True, text=True, check=True).stdout
        assert f'front_door="{variant.front_door}",hub="{variant.hub}"' in text
        assert "m2stack_event_loop_lag_seconds" in text
        for line in text.splitlines():
            if line.startswith('m2stack_requests_total{method="GET",route="/json",status="200"}'):
                total += float(line.rsplit(" ", 1)[1])
    assert total >= 5, total
