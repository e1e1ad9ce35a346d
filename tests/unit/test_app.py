"""The app layer on its own: no Mongrel2, no WSGI, no hub."""

from __future__ import annotations

import json

import pytest

from m2stack.app import App, Endpoint, HTTPError, Request, Response

app = App(hub_name="test", front_door="unit", handler_id="host:1")


@app.route("/items/{item_id:int}")
class Item(Endpoint):
    def get(self, item_id):
        return self.json({"id": item_id})

    def delete(self, item_id):
        return Response(b"", 204, content_type=None)


@app.route("/files/{name:path}")
class Files(Endpoint):
    def get(self, name):
        return self.text(name)


@app.route("/boom")
class Boom(Endpoint):
    def get(self):
        raise ZeroDivisionError("nope")


@app.route("/teapot")
class Teapot(Endpoint):
    def get(self):
        raise HTTPError(418, "short and stout", details={"why": "tea"})


@app.route("/numbers")
class Numbers(Endpoint):
    def get(self):
        return self.json({"n": self.request.int_argument("n", 1, minimum=1, maximum=10)})

    def post(self):
        return self.json(self.request.json(), 201)


@app.route("/cookie")
class Cookie(Endpoint):
    def get(self):
        response = self.json(self.request.cookies)
        response.set_cookie("session", 'a value; with "quotes"')
        return response


@app.route("/bad-return")
class BadReturn(Endpoint):
    def get(self):
        return "not a response"


def call(method, target, headers=None, body=b"", version="HTTP/1.1"):
    path, _, query = target.partition("?")
    request = Request.from_raw(method, path.encode(), query.encode(), headers or {}, body, version=version)
    response = app.handle(request)
    return response, dict(response.headers)


def error_of(response):
    document = json.loads(response.body)
    return document["error"], document["request_id"]


def test_route_with_typed_parameter():
    response, headers = call("GET", "/items/42")
    assert response.status == 200 and json.loads(response.body) == {"id": 42}
    assert headers["Content-Type"] == "application/json"
    assert headers["Content-Length"] == str(len(response.body))
    assert headers["X-Hub"] == "test" and headers["X-Handler-Id"] == "host:1"
    assert call("GET", "/items/abc")[0].status == 404


def test_path_parameter_takes_slashes_and_percent_decoding():
    response, _ = call("GET", "/files/a/b%20c.txt")
    assert response.body == b"a/b c.txt"


def test_unknown_route_is_404_json():
    response, headers = call("GET", "/nowhere")
    error, request_id = error_of(response)
    assert response.status == 404 and error["status"] == 404
    assert request_id == headers["X-Request-Id"]


def test_other_verbs_get_405_with_allow():
    response, headers = call("PATCH", "/items/1")
    assert response.status == 405
    assert headers["Allow"] == "GET, HEAD, DELETE"
    assert call("BREW", "/items/1")[0].status == 405


def test_head_has_headers_of_get_and_no_body():
    get, get_headers = call("GET", "/items/7")
    head, head_headers = call("HEAD", "/items/7")
    assert head.status == 200 and head.body == b""
    assert head_headers["Content-Length"] == get_headers["Content-Length"] == str(len(get.body))


def test_exception_becomes_500_with_request_id_and_is_logged(caplog):
    response, headers = call("GET", "/boom", headers={"x-request-id": "req-7"})
    error, request_id = error_of(response)
    assert response.status == 500 and error["message"] == "internal server error"
    assert request_id == "req-7" == headers["X-Request-Id"]
    assert "ZeroDivisionError" in caplog.text


def test_non_response_return_is_a_500_not_a_crash():
    assert call("GET", "/bad-return")[0].status == 500


def test_http_error_keeps_status_and_details():
    response, _ = call("GET", "/teapot")
    error, _ = error_of(response)
    assert response.status == 418 and error["details"] == {"why": "tea"}


@pytest.mark.parametrize("target", ["/items/%zz", "/items/%C3", "/numbers?n=%FF", "/numbers?n=%z1"])
def test_undecodable_path_or_query_is_400(target):
    response, _ = call("GET", target)
    assert response.status == 400
    assert error_of(response)[0]["status"] == 400


@pytest.mark.parametrize("value, status", [("5", 200), ("", 200), ("0", 400), ("11", 400),
                                           ("-1", 400), ("x", 400), ("9" * 50, 400), ("1.5", 400)])
def test_int_argument_is_validated(value, status):
    assert call("GET", f"/numbers?n={value}")[0].status == status


@pytest.mark.parametrize("content_type, body, status", [
    ("application/json", b'{"a": 1}', 201),
    ("application/json; charset=utf-8", b"[1, 2]", 201),
    ("text/plain", b'{"a": 1}', 415),
    ("", b'{"a": 1}', 415),
    ("application/json", b'{"a":', 400),
    ("application/json", b'{"a":"\xff"}', 400),
    ("application/json", b"", 400),
])
def test_json_body(content_type, body, status):
    response, _ = call("POST", "/numbers", headers={"content-type": content_type}, body=body)
    assert response.status == status, response.body


def test_cookies_in_and_safely_quoted_out():
    response, _ = call("GET", "/cookie", headers={"cookie": "a=1; b=two"})
    assert json.loads(response.body) == {"a": "1", "b": "two"}
    set_cookie = [v for n, v in response.headers if n == "Set-Cookie"][0]
    assert set_cookie.startswith('session="a value\\073 with \\"quotes\\""')
    assert "HttpOnly" in set_cookie and "\r" not in set_cookie and "\n" not in set_cookie


def test_garbled_cookie_header_is_no_cookies():
    response, _ = call("GET", "/cookie", headers={"cookie": '"\x00;;=='})
    assert response.status == 200


@pytest.mark.parametrize("name, value", [("X-A", "a\r\nSet-Cookie: x"), ("X-A", "a\nb"),
                                         ("X-A", "nul\0"), ("Bad Name", "v"), ("X:A", "v")])
def test_response_refuses_header_injection(name, value):
    with pytest.raises(ValueError):
        Response().set_header(name, value)


def test_client_request_id_kept_only_when_well_formed():
    assert call("GET", "/items/1", headers={"x-request-id": "abc-123"})[1]["X-Request-Id"] == "abc-123"
    minted = call("GET", "/items/1", headers={"x-request-id": "bad id\r\n"})[1]["X-Request-Id"]
    assert minted != "bad id\r\n" and len(minted) == 16


@pytest.mark.parametrize("version, connection, close", [
    ("HTTP/1.1", "", False), ("HTTP/1.1", "close", True), ("HTTP/1.1", "Close", True),
    ("HTTP/1.0", "", True), ("HTTP/1.0", "keep-alive", False), ("HTTP/1.0", "Keep-Alive", False),
])
def test_wants_close(version, connection, close):
    headers = {"connection": connection} if connection else {}
    assert Request("GET", "/", {}, headers, b"", version=version).wants_close is close


def test_query_arguments_repeat_and_blank():
    request = Request.from_raw("GET", b"/", b"a=1&a=2&b=&c=%C3%A9", {}, b"")
    assert request.query == {"a": ["1", "2"], "b": [""], "c": ["é"]}
    assert request.argument("a") == "2" and request.argument("missing", "d") == "d"


def test_hsts_only_over_tls():
    plain = app.handle(Request.from_raw("GET", b"/items/1", b"", {}, b""))
    secure = app.handle(Request.from_raw("GET", b"/items/1", b"", {}, b"", scheme="https"))
    assert "Strict-Transport-Security" not in dict(plain.headers)
    assert dict(secure.headers)["Strict-Transport-Security"] == "max-age=63072000"
