"""The WSGI front door: the app as a PEP 3333 callable.

wsgiref.validate checks both sides of the PEP 3333 contract on every call, and
wsgiref.handlers.SimpleHandler is a real (if small) server that refuses hop-by-hop
headers from an application.
"""

from __future__ import annotations

import io
import json
import sys
from wsgiref.handlers import SimpleHandler
from wsgiref.util import setup_testing_defaults
from wsgiref.validate import validator

import pytest

from m2stack import apps, hubs, run_wsgi
from m2stack.app import App, Endpoint
from m2stack.doors import wsgi
from support import require_module

BLOCKING = hubs.blocking_hub()


def make_environ(method="GET", path="/json", query="", body=b"", headers=None, raw_uri=None,
                 content_length=True):
    environ = {"REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": path, "QUERY_STRING": query,
               "wsgi.input": io.BytesIO(body), "SERVER_PROTOCOL": "HTTP/1.1",
               "REMOTE_ADDR": "127.0.0.1"}
    if body and content_length:
        environ["CONTENT_LENGTH"] = str(len(body))
    if raw_uri is not None:
        environ["RAW_URI"] = raw_uri
    for name, value in (headers or {}).items():
        key = name.upper().replace("-", "_")
        environ[key if key in ("CONTENT_TYPE", "CONTENT_LENGTH") else "HTTP_" + key] = value
    setup_testing_defaults(environ)
    return environ


def call(application, environ):
    """Run a WSGI app under wsgiref.validate; (status int, headers list, body bytes)."""
    seen = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, headers
        return lambda data: None

    result = validator(application)(environ, start_response)
    try:
        body = b"".join(result)
    finally:
        result.close()
    return int(seen["status"].split()[0]), seen["headers"], body


def header(headers, name):
    values = [v for n, v in headers if n.lower() == name.lower()]
    assert len(values) == 1, (name, headers)
    return values[0]


@pytest.fixture
def adapter():
    return wsgi.WSGIAdapter(apps.load_app(BLOCKING, front_door="wsgi"), BLOCKING, max_body=100)


def test_json_endpoint_with_every_final_header(adapter):
    status, headers, body = call(adapter, make_environ())
    assert status == 200 and json.loads(body) == {"message": "Hello, World!"}
    assert header(headers, "Content-Type") == "application/json"
    assert header(headers, "Content-Length") == str(len(body))
    assert header(headers, "X-Front-Door") == "wsgi" and header(headers, "X-Hub") == "blocking"
    assert header(headers, "X-Request-Id") and header(headers, "X-Handler-Id")


def test_status_line_carries_the_reason_phrase(adapter):
    seen = []
    adapter(make_environ(path="/nope"), lambda status, headers, exc_info=None: seen.append(status))
    assert seen == ["404 Not Found"]


def test_error_bodies_are_the_same_json_as_behind_mongrel2(adapter):
    status, headers, body = call(adapter, make_environ(path="/error"))
    error = json.loads(body)
    assert status == 500 and error["error"] == {"status": 500, "message": "internal server error"}
    assert error["request_id"] == header(headers, "X-Request-Id")
    status, headers, body = call(adapter, make_environ(method="DELETE", path="/json"))
    assert status == 405 and header(headers, "Allow") == "GET, HEAD"


def test_post_body_is_read_with_the_declared_length(adapter):
    body = b'{"a": [1, 2]}'
    environ = make_environ("POST", "/echo", body=body + b"trailing garbage",
                           headers={"Content-Type": "application/json"})
    environ["CONTENT_LENGTH"] = str(len(body))
    status, _, out = call(adapter, environ)
    assert status == 200 and json.loads(out) == {"received": {"a": [1, 2]}}


@pytest.mark.parametrize("body, content_type, expected", [
    (b"{nope", "application/json", 400),
    (b'{"a": 1}', "text/plain", 415),
])
def test_echo_errors(adapter, body, content_type, expected):
    status, _, out = call(adapter, make_environ("POST", "/echo", body=body,
                                                headers={"Content-Type": content_type}))
    assert status == expected and json.loads(out)["error"]["status"] == expected


def test_body_over_the_limit_is_413_json_and_is_not_read(adapter):
    stream = io.BytesIO(b"x" * 1000)
    environ = make_environ("POST", "/echo", headers={"Content-Type": "application/json"})
    environ["CONTENT_LENGTH"], environ["wsgi.input"] = "1000", stream
    status, _, out = call(adapter, environ)
    assert status == 413 and json.loads(out)["error"]["details"]["limit"] == 100
    assert stream.tell() == 0


def test_chunked_body_over_the_limit_is_413(adapter):
    environ = make_environ("POST", "/echo", headers={"Content-Type": "application/json"})
    environ["wsgi.input"], environ["wsgi.input_terminated"] = io.BytesIO(b"1" * 500), True
    status, _, _ = call(adapter, environ)
    assert status == 413


def test_short_body_and_bad_content_length_are_400(adapter):
    environ = make_environ("POST", "/echo", body=b"{}", headers={"Content-Type": "application/json"})
    environ["CONTENT_LENGTH"] = "10"
    assert call(adapter, environ)[0] == 400
    environ = make_environ("POST", "/echo", headers={"Content-Type": "application/json"})
    environ["CONTENT_LENGTH"] = "-1"  # wsgiref.validate refuses such an environ: call directly
    seen = []
    adapter(environ, lambda status, headers, exc_info=None: seen.append(status))
    assert seen == ["400 Bad Request"]


def test_head_has_the_get_length_and_no_body(adapter):
    _, get_headers, get_body = call(adapter, make_environ(path="/plaintext"))
    status, headers, body = call(adapter, make_environ("HEAD", "/plaintext"))
    assert status == 200 and body == b""
    assert header(headers, "Content-Length") == header(get_headers, "Content-Length") == str(len(get_body))


@pytest.mark.parametrize("raw_uri", ["/%zz", "/%ff", "/json?x=%zz", "/json?x=%ff"])
def test_bad_percent_encoding_or_utf8_from_raw_uri_is_400(adapter, raw_uri):
    path, _, query = raw_uri.partition("?")
    status, _, out = call(adapter, make_environ(path="/", query=query, raw_uri=raw_uri))
    assert status == 400 and json.loads(out)["error"]["status"] == 400


def test_raw_uri_is_preferred_over_the_decoded_path_info(adapter):
    # "%2F" must stay data, not become a separator: only RAW_URI still says so.
    status, _, _ = call(adapter, make_environ(path="/json", raw_uri="/js%6Fn"))
    assert status == 200
    status, _, out = call(adapter, make_environ(path="/a/b", raw_uri="/a%2Fb"))
    assert status == 404 and json.loads(out)["error"]["details"]["path"] == "/a/b"


def test_without_raw_uri_path_info_is_requoted_not_decoded_twice(adapter):
    # PATH_INFO "/%41" is what a client sent as "/%2541": it must not turn into "/A".
    _, _, out = call(adapter, make_environ(path="/%41"))
    assert json.loads(out)["error"]["details"]["path"] == "/%41"
    # Non-UTF-8 bytes in PATH_INFO (latin-1 characters of the raw bytes) are a 400.
    assert call(adapter, make_environ(path="/\xff"))[0] == 400
    # UTF-8 bytes come through as text.
    _, _, out = call(adapter, make_environ(path="/caf\xc3\xa9"))
    assert json.loads(out)["error"]["details"]["path"] == "/café"


def test_query_arguments_reach_the_app(adapter):
    _, _, out = call(adapter, make_environ(path="/sleep", query="ms=0&ms=1"))
    assert json.loads(out) == {"slept_ms": 1}


def test_request_id_from_the_client_is_kept(adapter):
    _, headers, _ = call(adapter, make_environ(headers={"X-Request-Id": "abc-123"}))
    assert header(headers, "X-Request-Id") == "abc-123"


def test_request_headers_and_cookies_reach_the_app():
    seen = {}
    app = App(hub_name="test", front_door="wsgi")

    @app.route("/peek")
    class Peek(Endpoint):
        def get(self):
            seen["cookies"], seen["agent"] = self.request.cookies, self.request.header("User-Agent")
            seen["type"] = self.request.header("content-type")
            response = self.json({})
            response.set_cookie("a", "1")
            response.set_cookie("b", "2")
            return response

    status, headers, _ = call(wsgi.WSGIAdapter(app, BLOCKING, max_body=100), make_environ(
        path="/peek", headers={"Cookie": "x=1; y=2", "User-Agent": "t/1", "Content-Type": "text/x"}))
    assert seen == {"cookies": {"x": "1", "y": "2"}, "agent": "t/1", "type": "text/x"}
    assert [v.split(";")[0] for n, v in headers if n == "Set-Cookie"] == ["a=1", "b=2"]


def test_no_hop_by_hop_headers_reach_a_real_wsgi_server():
    app = App(hub_name="test", front_door="wsgi")

    @app.route("/close")
    class Close(Endpoint):
        def get(self):
            response = self.text("bye")
            response.set_header("Connection", "close")
            return response

    out = io.BytesIO()
    environ = make_environ(path="/close")
    handler = SimpleHandler(environ["wsgi.input"], out, sys.stderr, environ)
    handler.run(wsgi.WSGIAdapter(app, BLOCKING, max_body=100))  # wsgiref asserts on hop-by-hop headers
    response = out.getvalue()
    assert response.startswith(b"Status: 200 OK") or response.startswith(b"HTTP/1.0 200 OK")
    assert b"Connection" not in response and response.endswith(b"bye")


def test_an_unpatched_process_runs_on_the_blocking_hub():
    # The unit tests never monkey-patch: Gunicorn's worker class would.
    assert hubs.detect().NAME == "blocking"


def test_module_level_application_serves_the_demo_app(monkeypatch):
    run_wsgi._adapter.cache_clear()
    monkeypatch.setenv("MAX_REQUEST_BODY_BYTES", "5")
    try:
        status, headers, _ = call(run_wsgi.application, make_environ())
        assert status == 200 and header(headers, "X-Front-Door") == "wsgi"
        assert header(headers, "X-Hub") == "blocking"
        environ = make_environ("POST", "/echo", body=b"123456", headers={"Content-Type": "application/json"})
        assert call(run_wsgi.application, environ)[0] == 413
    finally:
        run_wsgi._adapter.cache_clear()


def test_request_timeout_is_504_json_like_behind_mongrel2():
    gevent = require_module("gevent", "the 504 needs a hub whose Timeout fires")
    app = App(hub_name="gevent", front_door="wsgi")

    @app.route("/slow")
    class Slow(Endpoint):
        def get(self):
            gevent.sleep(5)  # cooperative: what a patched time.sleep does under the worker
            return self.text("late")

    adapter = wsgi.WSGIAdapter(app, hubs.load("gevent"), max_body=100, request_timeout=0.05)
    status, headers, body = call(adapter, make_environ(path="/slow"))
    error = json.loads(body)["error"]
    assert status == 504 and error["message"] == "the handler did not finish in time"
    assert error["details"] == {"timeout_seconds": 0.05} and header(headers, "X-Front-Door") == "wsgi"
