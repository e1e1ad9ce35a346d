"""Any WSGI app as an App (HostedWSGIApp), served by the Mongrel2 front door.

wsgiref.validate checks the PEP 3333 contract on every call.
"""

from __future__ import annotations

import json
import sys
from wsgiref.validate import validator

import pytest

from m2stack import apps, hubs, run_wsgi
from m2stack.app import Request
from m2stack.app.hosted_wsgi import HostedWSGIApp
from m2stack.doors.mongrel2.core import build_request as build_mongrel2_request
from m2stack.protocol import mongrel2 as protocol
from support import require_module

BLOCKING = hubs.blocking_hub()


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


def hosted_hello(request: Request, *, validated: bool):
    app = HostedWSGIApp(validator(hello_wsgi) if validated else hello_wsgi, hub_name="gevent",
                        front_door="mongrel2")
    return app.handle(request)


def post_hello() -> Request:
    return mongrel2_request("POST", "/caf%C3%A9", "b=2&a=1&b=3", b"hello",
                            {"content-type": "text/plain", "user-agent": "t/1", "x_evil": "dropped"})


HELLO = {"method": "POST", "path": "/caf\xc3\xa9", "query": "b=2&b=3&a=1", "body": "hello",
         "type": "text/plain", "length": "5", "agent": "t/1",
         "server": ["example.test", "6767"], "remote": "10.0.0.9", "hub": "gevent"}


def test_wsgi_app_behind_mongrel2_gets_a_pep3333_environ():
    response = hosted_hello(post_hello(), validated=False)  # a list: handed over whole, one message
    assert response.status == 201 and response.stream is None
    assert json.loads(response.body) == HELLO
    names = [n.lower() for n, _ in response.headers]
    assert "connection" not in names and names.count("content-length") == 1
    assert dict(response.headers)["Content-Length"] == str(len(response.body))  # what is really sent
    assert [v for n, v in response.headers if n == "Set-Cookie"] == ["a=1", "b=2"]
    assert dict(response.headers)["X-Front-Door"] == "mongrel2"


def test_any_other_iterable_is_streamed_with_the_headers_the_app_declared():
    response = hosted_hello(post_hello(), validated=True)  # wsgiref's wrapper: an iterator, not a list
    assert response.status == 201 and response.stream is not None
    assert json.loads(b"".join(response.stream)) == HELLO  # wsgiref.validate checks it was closed
    names = [n.lower() for n, _ in response.headers]
    assert "connection" not in names and dict(response.headers)["Content-Length"] == "999"  # the app's word


def test_a_body_produced_over_time_is_not_collected_whatever_its_declared_length():
    produced = []

    def slow(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "6")])
        for part in (b"ab", b"cd", b"ef"):
            produced.append(part)
            yield part

    response = HostedWSGIApp(slow).handle(mongrel2_request())
    chunks = iter(response.stream)
    assert next(chunks) == b"ab" and produced == [b"ab"]  # the rest is not produced yet
    assert list(chunks) == [b"cd", b"ef"] and dict(response.headers)["Content-Length"] == "6"


def test_a_tuple_and_write_calls_are_collected():
    def app_(environ, start_response):
        write = start_response("200 OK", [("Content-Type", "text/plain"), ("Date", "Thu, 01 Jan 1970 00:00:00 GMT")])
        write(b"written ")
        return (b"and ", b"returned")

    response = HostedWSGIApp(app_).handle(mongrel2_request())
    assert response.stream is None and response.body == b"written and returned"
    dates = [v for n, v in response.headers if n.lower() == "date"]
    assert len(dates) == 1 and dates[0] != "Thu, 01 Jan 1970 00:00:00 GMT"  # the server's own Date


def test_wsgi_app_head_keeps_the_declared_length():
    def app_(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "42")])
        return []
    response = HostedWSGIApp(app_).handle(mongrel2_request("HEAD", "/x"))
    assert response.body == b"" and dict(response.headers)["Content-Length"] == "42"


def test_wsgi_app_that_raises_is_a_500_json():
    def broken(environ, start_response):
        raise RuntimeError("boom")
    response = HostedWSGIApp(broken).handle(mongrel2_request(path="/x"))
    assert response.status == 500 and json.loads(response.body)["error"]["status"] == 500


def test_wsgi_app_error_after_start_response_with_exc_info():
    def app_(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("late")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"sorry"]
    response = HostedWSGIApp(app_).handle(mongrel2_request(path="/x"))
    assert response.status == 503 and response.body == b"sorry"


def test_bad_percent_encoding_never_reaches_the_wsgi_app():
    called = []
    def app_(environ, start_response):
        called.append(1)
        start_response("200 OK", [])
        return [b""]
    response = HostedWSGIApp(app_).handle(mongrel2_request(path="/%zz"))
    assert response.status == 400 and not called


def test_load_app(monkeypatch):
    monkeypatch.delenv("APP", raising=False)
    assert apps.load_app(BLOCKING, front_door="mongrel2").resolve("/json") is not None
    monkeypatch.setenv("APP", "m2stack.run_wsgi:application")
    app = apps.load_app(BLOCKING, front_door="mongrel2")
    assert isinstance(app, HostedWSGIApp) and app.wsgi_app is run_wsgi.application
    monkeypatch.setenv("APP", "m2stack.run_wsgi")
    with pytest.raises(SystemExit):
        apps.load_app(BLOCKING, front_door="mongrel2")


def test_flask_example_behind_the_mongrel2_adapter():
    flask_app = require_module("examples.flask_app", "the Flask example runs behind the hosted-WSGI adapter")
    app = HostedWSGIApp(flask_app.app, hub_name="gevent", front_door="mongrel2")
    response = app.handle(mongrel2_request(path="/items/1"))
    # Flask hands over an iterator (werkzeug's ClosingIterator): streamed, as Gunicorn would.
    assert response.status == 200 and json.loads(b"".join(response.stream)) == {"id": 1, "name": "mongrel"}
    response = app.handle(mongrel2_request(path="/login"))
    assert len([v for n, v in response.headers if n == "Set-Cookie"]) == 2




def test_content_length_only_when_there_is_a_body():
    seen = []

    def app_(environ, start_response):
        seen.append(environ.get("CONTENT_LENGTH"))
        start_response("204 No Content", [])
        return []

    hosted = HostedWSGIApp(validator(app_))
    hosted.handle(mongrel2_request("GET", "/x"))
    hosted.handle(mongrel2_request("POST", "/x", body=b"abc", headers={"content-length": "3"}))
    hosted.handle(mongrel2_request("POST", "/x", headers={"content-length": "0"}))
    assert seen == [None, "3", "0"]


def test_the_wsgi_app_sees_the_scheme_mongrel2_reports():
    seen = []

    def app_(environ, start_response):
        seen.append((environ["wsgi.url_scheme"], environ["SERVER_PORT"]))
        start_response("204 No Content", [])
        return []

    hosted = HostedWSGIApp(validator(app_))
    hosted.handle(mongrel2_request("GET", "/x", headers={"host": "example.test", "URL_SCHEME": "https"}))
    hosted.handle(mongrel2_request("GET", "/x", headers={"host": "example.test", "URL_SCHEME": "http"}))
    assert seen == [("https", "443"), ("http", "80")]
