"""The WSGI front door (app -> PEP 3333 callable) and the reverse adapter (any WSGI app -> App).

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

from m2stack import wsgi
from m2stack.app import App, Handler, Request
from m2stack.demo import create_app
from m2stack.server import build_request as build_mongrel2_request
from m2stack import protocol


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
    return wsgi.WSGIAdapter(create_app(hub="test", front_door="wsgi"), max_body=100)


# ---- the app as a WSGI callable -------------------------------------------------------

def test_json_endpoint_with_every_final_header(adapter):
    status, headers, body = call(adapter, make_environ())
    assert status == 200 and json.loads(body) == {"message": "Hello, World!"}
    assert header(headers, "Content-Type") == "application/json"
    assert header(headers, "Content-Length") == str(len(body))
    assert header(headers, "X-Front-Door") == "wsgi" and header(headers, "X-Hub") == "test"
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
    app = App(hub="test", front_door="wsgi")

    @app.route("/peek")
    class Peek(Handler):
        def get(self):
            seen["cookies"], seen["agent"] = self.request.cookies, self.request.header("User-Agent")
            seen["type"] = self.request.header("content-type")
            response = self.json({})
            response.set_cookie("a", "1")
            response.set_cookie("b", "2")
            return response

    status, headers, _ = call(wsgi.WSGIAdapter(app), make_environ(
        path="/peek", headers={"Cookie": "x=1; y=2", "User-Agent": "t/1", "Content-Type": "text/x"}))
    assert seen == {"cookies": {"x": "1", "y": "2"}, "agent": "t/1", "type": "text/x"}
    assert [v.split(";")[0] for n, v in headers if n == "Set-Cookie"] == ["a=1", "b=2"]


def test_no_hop_by_hop_headers_reach_a_real_wsgi_server():
    app = App(hub="test", front_door="wsgi")

    @app.route("/close")
    class Close(Handler):
        def get(self):
            response = self.text("bye")
            response.set_header("Connection", "close")
            return response

    out = io.BytesIO()
    environ = make_environ(path="/close")
    handler = SimpleHandler(environ["wsgi.input"], out, sys.stderr, environ)
    handler.run(wsgi.WSGIAdapter(app))  # wsgiref asserts on hop-by-hop headers
    response = out.getvalue()
    assert response.startswith(b"Status: 200 OK") or response.startswith(b"HTTP/1.0 200 OK")
    assert b"Connection" not in response and response.endswith(b"bye")


def test_running_hub_names_the_patching_library(monkeypatch):
    monkeypatch.setenv("HUB", "label")
    assert wsgi.running_hub() in ("label", "gevent", "eventlet")  # unpatched here: the label
    monkeypatch.delenv("HUB")
    if "gevent.monkey" not in sys.modules and "eventlet.patcher" not in sys.modules:
        assert wsgi.running_hub() == "sync"


def test_module_level_application_serves_the_demo_app(monkeypatch):
    wsgi._default_adapter.cache_clear()
    monkeypatch.setenv("MAX_CONTENT_LENGTH", "5")
    try:
        status, headers, _ = call(wsgi.application, make_environ())
        assert status == 200 and header(headers, "X-Front-Door") == "wsgi"
        environ = make_environ("POST", "/echo", body=b"123456", headers={"Content-Type": "application/json"})
        assert call(wsgi.application, environ)[0] == 413
    finally:
        wsgi._default_adapter.cache_clear()


# ---- any WSGI app behind the Mongrel2 front door --------------------------------------

def mongrel2_request(method="GET", path="/", query="", body=b"", headers=None) -> Request:
    meta = {"METHOD": method, "PATH": path, "VERSION": "HTTP/1.1", "REMOTE_ADDR": "10.0.0.9",
            "host": "example.test:6767", **(headers or {})}
    if query:
        meta["QUERY"] = query
    message = protocol.parse_request(protocol.encode_request(b"uuid", b"7", path, meta, body))
    return build_mongrel2_request(message)


def hello_wsgi(environ, start_response):
    body = json.dumps({
        "method": environ["REQUEST_METHOD"], "path": environ["PATH_INFO"],
        "query": environ["QUERY_STRING"], "body": environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"])).decode(),
        "type": environ.get("CONTENT_TYPE"), "length": environ.get("CONTENT_LENGTH"),
        "agent": environ.get("HTTP_USER_AGENT"), "server": [environ["SERVER_NAME"], environ["SERVER_PORT"]],
        "remote": environ["REMOTE_ADDR"], "hub": environ["m2stack.hub"],
    }).encode()
    start_response("201 Created", [("Content-Type", "application/json"), ("Content-Length", "999"),
                                   ("Connection", "keep-alive"), ("Set-Cookie", "a=1"),
                                   ("Set-Cookie", "b=2")])
    return [body[:10], b"", body[10:]]


def test_wsgi_app_behind_mongrel2_gets_a_pep3333_environ():
    app = wsgi.WSGIHandlerApp(validator(hello_wsgi), hub="gevent", front_door="mongrel2")
    response = app.handle(mongrel2_request(
        "POST", "/caf%C3%A9", "b=2&a=1&b=3", b"hello",
        {"content-type": "text/plain", "user-agent": "t/1", "x_evil": "dropped"}))
    assert response.status == 201
    data = json.loads(response.body)
    assert data == {"method": "POST", "path": "/caf\xc3\xa9", "query": "b=2&b=3&a=1", "body": "hello",
                    "type": "text/plain", "length": "5", "agent": "t/1",
                    "server": ["example.test", "6767"], "remote": "10.0.0.9", "hub": "gevent"}
    names = [n.lower() for n, _ in response.headers]
    assert "connection" not in names and names.count("content-length") == 1
    assert dict(response.headers)["Content-Length"] == str(len(response.body))
    assert [v for n, v in response.headers if n == "Set-Cookie"] == ["a=1", "b=2"]
    assert dict(response.headers)["X-Front-Door"] == "mongrel2"


def test_wsgi_app_head_keeps_the_declared_length():
    def app_(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "42")])
        return []
    response = wsgi.WSGIHandlerApp(app_).handle(mongrel2_request("HEAD", "/x"))
    assert response.body == b"" and dict(response.headers)["Content-Length"] == "42"


def test_wsgi_app_that_raises_is_a_500_json():
    def broken(environ, start_response):
        raise RuntimeError("boom")
    response = wsgi.WSGIHandlerApp(broken).handle(mongrel2_request(path="/x"))
    assert response.status == 500 and json.loads(response.body)["error"]["status"] == 500


def test_wsgi_app_error_after_start_response_with_exc_info():
    def app_(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("late")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"sorry"]
    response = wsgi.WSGIHandlerApp(app_).handle(mongrel2_request(path="/x"))
    assert response.status == 503 and response.body == b"sorry"


def test_bad_percent_encoding_never_reaches_the_wsgi_app():
    called = []
    def app_(environ, start_response):
        called.append(1)
        start_response("200 OK", [])
        return [b""]
    response = wsgi.WSGIHandlerApp(app_).handle(mongrel2_request(path="/%zz"))
    assert response.status == 400 and not called


def test_app_from_env(monkeypatch):
    monkeypatch.delenv("APP", raising=False)
    assert wsgi.app_from_env(hub="h", front_door="mongrel2").resolve("/json") is not None
    monkeypatch.setenv("APP", "m2stack.wsgi:application")
    app = wsgi.app_from_env(hub="h", front_door="mongrel2")
    assert isinstance(app, wsgi.WSGIHandlerApp) and app.wsgi_app is wsgi.application
    monkeypatch.setenv("APP", "m2stack.wsgi")
    with pytest.raises(SystemExit):
        wsgi.app_from_env(hub="h", front_door="mongrel2")


def test_flask_example_behind_the_mongrel2_adapter():
    flask_app = pytest.importorskip("examples.flask_app")
    app = wsgi.WSGIHandlerApp(flask_app.app, hub="gevent", front_door="mongrel2")
    response = app.handle(mongrel2_request(path="/items/1"))
    assert response.status == 200 and json.loads(response.body) == {"id": 1, "name": "mongrel"}
    response = app.handle(mongrel2_request(path="/login"))
    assert len([v for n, v in response.headers if n == "Set-Cookie"]) == 2


def test_request_timeout_is_504_json_like_behind_mongrel2():
    gevent = pytest.importorskip("gevent")
    app = App(hub="gevent", front_door="wsgi")

    @app.route("/slow")
    class Slow(Handler):
        def get(self):
            gevent.sleep(5)  # cooperative: what a patched time.sleep does under the worker
            return self.text("late")

    adapter = wsgi.WSGIAdapter(app, request_timeout=0.05)
    status, headers, body = call(adapter, make_environ(path="/slow"))
    error = json.loads(body)["error"]
    assert status == 504 and error["message"] == "the handler did not finish in time"
    assert error["details"] == {"timeout_seconds": 0.05} and header(headers, "X-Front-Door") == "wsgi"
