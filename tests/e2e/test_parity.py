"""One parity suite, every variant: the same HTTP behaviours through every front door.

    mongrel2-gevent, mongrel2-eventlet   Mongrel2 -> ZeroMQ -> handler (gevent / eventlet)
    wsgi-gevent, wsgi-eventlet           Gunicorn (gevent / eventlet worker) -> the app

Every test states ONE expectation and runs it against all four, so a behaviour that
differs between front doors fails here. The differences that cannot be removed (README,
"Differences between the front doors") are asserted as such at the end, explicitly.
The session's shared demo stacks (conftest.py): four handlers behind Mongrel2, two
Gunicorn workers; this module runs first on each.
"""

from __future__ import annotations

import json
import re
import socket
from functools import cache

import pytest
import requests

import streams
from stack import DEMO, ROOT, SHARED, Stack
from support import parse_head, read_response, read_until_close

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"
# Two Gunicorn workers, so that a response may come from either and the master's merge
# of their metrics is exercised; four handlers behind Mongrel2.
pytestmark = pytest.mark.parametrize(argvalues=DEMO, **SHARED)


@pytest.fixture
def stack(demo_stack):
    return demo_stack


@cache
def handler_id_pattern(stack: Stack):
    return stack.handler_id_pattern()


def check_common_headers(stack: Stack, response) -> None:
    """What every answer of the app carries, whichever door it came through."""
    headers = response.headers
    assert headers["X-Hub"] == stack.hub
    assert headers["X-Front-Door"] == stack.front_door
    offered = response.request.headers.get("X-Request-Id")
    assert headers["X-Request-Id"] == offered if offered else re.fullmatch("[0-9a-f]{16}", headers["X-Request-Id"])
    assert handler_id_pattern(stack).match(headers["X-Handler-Id"]), headers["X-Handler-Id"]
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

def test_plaintext(stack):
    response = stack.get("/plaintext")
    assert response.status_code == 200 and response.text == "Hello, World!"
    assert response.headers["Content-Type"] == TEXT
    check_common_headers(stack, response)


def test_json(stack):
    response = stack.get("/json")
    assert response.status_code == 200 and response.json() == {"message": "Hello, World!"}
    assert response.headers["Content-Type"] == JSON
    assert response.content == b'{"message":"Hello, World!"}'  # byte for byte
    check_common_headers(stack, response)


def test_sleep_and_its_argument_checks(stack):
    response = stack.get("/sleep?ms=20")
    assert response.status_code == 200 and response.json() == {"slept_ms": 20}
    check_common_headers(stack, response)
    assert stack.get("/sleep?ms=1&ms=2").json() == {"slept_ms": 2}  # the last value wins
    error = check_error(stack, stack.get("/sleep?ms=abc"), 400, "query argument 'ms' must be an integer")
    assert error["details"] == {"argument": "ms", "value": "abc"}
    check_error(stack, stack.get("/sleep?ms=-1"), 400)


def test_healthz(stack):
    response = stack.get("/healthz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok" and body["hub"] == stack.hub
    assert body["handler_id"] == response.headers["X-Handler-Id"]
    check_common_headers(stack, response)


def test_error_is_500_json_and_the_server_keeps_serving(stack):
    check_error(stack, stack.get("/error"), 500, "internal server error")
    assert stack.get("/json").status_code == 200


def test_echo_round_trips_json(stack):
    document = {"name": "caf\u00e9", "list": [1, 2.5, None, True], "nested": {"k": "v"}}
    response = stack.request("POST", "/echo", json=document)
    assert response.status_code == 200 and response.json() == {"received": document}
    check_common_headers(stack, response)


def test_echo_malformed_json_is_400(stack):
    response = stack.request("POST", "/echo", data=b'{"a": ', headers={"Content-Type": JSON})
    check_error(stack, response, 400, "malformed JSON body")


def test_echo_wrong_content_type_is_415(stack):
    response = stack.request("POST", "/echo", data=b'{"a": 1}', headers={"Content-Type": "text/plain"})
    error = check_error(stack, response, 415, "expected Content-Type: application/json")
    assert error["details"] == {"content_type": "text/plain"}


def test_echo_content_type_parameters_are_accepted(stack):
    response = stack.request("POST", "/echo", data=b"[1]",
                               headers={"Content-Type": "application/json; charset=utf-8"})
    assert response.status_code == 200 and response.json() == {"received": [1]}


def test_unknown_path_is_404_json(stack):
    error = check_error(stack, stack.get("/no/such/path"), 404, "no route for this path")
    assert error["details"] == {"path": "/no/such/path"}


@pytest.mark.parametrize("method, path, allow", [
    ("DELETE", "/json", "GET, HEAD"),
    ("POST", "/plaintext", "GET, HEAD"),
    ("GET", "/echo", "POST"),
    ("PUT", "/echo", "POST"),
])
def test_wrong_method_is_405_with_allow(stack, method, path, allow):
    response = stack.request(method, path)
    error = check_error(stack, response, 405)
    assert response.headers["Allow"] == allow and error["details"] == {"allowed": allow}


@pytest.mark.parametrize("path", ["/json", "/plaintext", "/no/such/path"])
def test_head_is_get_without_the_body(stack, path):
    get = stack.get(path)
    head = stack.request("HEAD", path)
    assert head.status_code == get.status_code and head.content == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"]
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    check_common_headers(stack, head)


@pytest.mark.parametrize("target, message", [
    ("/%ff", "invalid UTF-8 in path"),
    ("/json?x=%C3%28", "invalid UTF-8 in query string"),
    ("/json?x=%ff", "invalid UTF-8 in query string"),
])
def test_undecodable_utf8_in_path_or_query_is_400_json(stack, target, message):
    status, headers, body = raw_get(stack, target)
    assert status == 400 and headers["content-type"] == JSON
    assert json.loads(body)["error"] == {"status": 400, "message": message}
    assert headers["x-hub"] == stack.hub and headers["x-front-door"] == stack.front_door


def test_percent_encoded_utf8_path_is_decoded_once(stack):
    assert check_error(stack, stack.get("/caf%C3%A9"), 404)["details"] == {"path": "/caf\u00e9"}
    # "%2541" is "%41" as data, never "A": decoding happens exactly once.
    assert check_error(stack, stack.get("/%2541"), 404)["details"] == {"path": "/%41"}
    assert stack.get("/js%6Fn").json() == {"message": "Hello, World!"}


def test_client_request_id_is_kept_and_a_bad_one_replaced(stack):
    assert stack.get("/json", headers={"X-Request-Id": "parity-123"}).headers["X-Request-Id"] == "parity-123"
    minted = stack.get("/json", headers={"X-Request-Id": "bad id!"}).headers["X-Request-Id"]
    assert minted != "bad id!" and len(minted) == 16


def test_redirect_to_a_local_path_only(stack):
    response = stack.get("/redirect?to=/json", allow_redirects=False)
    assert response.status_code == 302 and response.headers["Location"] == "/json"
    check_common_headers(stack, response)
    check_error(stack, stack.get("/redirect?to=//evil.example", allow_redirects=False), 400)


def test_keep_alive_serves_many_requests_on_one_connection(stack):
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as conn:
        for _ in range(3):
            conn.sendall(b"GET /plaintext HTTP/1.1\r\nHost: parity\r\n\r\n")
            head, body = read_response(conn)
            assert head.startswith(b"HTTP/1.1 200 ") and body == b"Hello, World!"


def test_http10_without_keep_alive_gets_one_response_then_close(stack):
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as conn:
        conn.sendall(b"GET /json HTTP/1.0\r\n\r\n")
        data = read_until_close(conn)  # fails if the server keeps the connection open
    head, _, body = data.partition(b"\r\n\r\n")
    assert parse_head(head)[0] == 200 and body == b'{"message":"Hello, World!"}'


def raw_get(stack: Stack, target: str) -> tuple[int, dict[str, str], bytes]:
    """A GET sent byte for byte (requests would re-quote a malformed "%zz" to "%25zz")."""
    with socket.create_connection(("127.0.0.1", stack.port), timeout=10) as conn:
        conn.sendall(f"GET {target} HTTP/1.1\r\nHost: parity\r\n\r\n".encode("ascii"))
        head, body = read_response(conn)
    status, headers = parse_head(head)
    return status, headers, body


# ---- what differs between the front doors, on purpose (README) --------------------------

def test_a_body_over_mongrel2s_content_length_is_served_by_either_door(stack):
    # 30 KB: over M2_CONTENT_LENGTH (20 KiB), so behind Mongrel2 it comes by temp_store.
    items = list(range(6000))
    response = stack.request("POST", "/echo", json={"items": items})
    assert response.status_code == 200 and response.json() == {"received": {"items": items}}, response.text[:300]


def test_a_body_over_the_limit_is_413_json_from_either_door_before_it_is_sent(stack):
    streams.refused_over_the_limit(stack)


def test_an_upload_is_hashed_by_either_door_in_bounded_memory(stack):
    # 100 MiB through Gunicorn; behind Mongrel2 the 100 MiB runs on the dispatcher's stacks
    # (test_dispatch.py), and 8 MiB here shows the default stack's uploads are on (CI time).
    streams.upload_hashed(stack, streams.MAX_REQUEST_BODY_BYTES if stack.front_door == "wsgi" else 8 << 20)


@pytest.mark.parametrize("target", ["/%zz", "/caf%zz", "/json?x=%zz", "/json?x=%4"])
def test_malformed_percent_encoding_is_400_from_either_door(stack, target):
    status, headers, body = raw_get(stack, target)
    assert status == 400
    if stack.front_door == "wsgi":
        assert json.loads(body)["error"]["message"].startswith("invalid percent-encoding in ")
    else:  # mongrel2's HTTP parser refuses it before any handler: "Bad Request", no X-Hub
        assert "x-hub" not in headers and headers["server"].startswith("Mongrel2")


def test_static_files_only_behind_mongrel2(stack):
    response = stack.get("/static/health.txt")
    if stack.front_door == "mongrel2":
        assert response.status_code == 200
        assert response.content == (ROOT / "mongrel2" / "static" / "health.txt").read_bytes()
    else:
        check_error(stack, response, 404)  # the app has no /static/ route


JSON_200 = {"route": "/json", "method": "GET", "status": "200"}


def test_prometheus_metrics_on_the_internal_port(stack):
    """Every variant serves /metrics on port 9100 inside its network; under Gunicorn the
    master merges its workers' counts (prometheus_client multiprocess mode): requests
    answered by both workers all show up in the one scrape."""
    before = stack.metric("m2stack_requests_total", **JSON_200)
    served_by: set[str] = set()
    sent = 0
    # A new connection per request, so that Gunicorn's workers take turns accepting.
    while sent < 5 or (len(served_by) < stack.processes and sent < 300):
        response = requests.get(stack.url + "/json", headers={"Connection": "close"}, timeout=10)
        assert response.status_code == 200
        served_by.add(response.headers["X-Handler-Id"])
        sent += 1
    assert len(served_by) == stack.processes, f"{sent} requests, answered by {served_by}"
    after = stack.metric("m2stack_requests_total", **JSON_200)
    assert after - before == sent, (before, after, sent)
    for cid in stack.app_ids():
        metrics = stack.scrape(cid)
        assert metrics.value("m2stack_hub_info", front_door=stack.front_door, hub=stack.hub) == 1.0
        assert metrics.has("m2stack_event_loop_lag_seconds")
        assert metrics.has("m2stack_in_flight_requests")
