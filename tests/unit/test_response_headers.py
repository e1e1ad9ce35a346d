"""Production headers from App.finish: Date, the X-Handler-Id switch, and the client's
address and scheme taken from a trusted proxy."""

from __future__ import annotations

import email.utils
import re
import time

import pytest

from m2stack.app import App, Endpoint, Request, StreamingResponse, application
from m2stack.app.application import http_date
from m2stack.app.forwarded import TrustedProxies

IMF_FIXDATE = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
                         r" \d{4} \d\d:\d\d:\d\d GMT\Z")


def make_app() -> App:
    app = App(hub_name="test", front_door="unit", handler_id="host:1")

    @app.route("/who")
    class Who(Endpoint):
        def get(self):
            request = self.request
            return self.json({"client": request.remote_addr, "peer": request.peer_addr, "scheme": request.scheme})

    @app.route("/stream")
    class Stream(Endpoint):
        def get(self):
            return StreamingResponse(iter([b"a", b"b"]))

    return app


def call(app: App, path: str = "/who", headers: dict | None = None, peer: str = "10.0.0.5",
         scheme: str = "http", method: str = "GET"):
    request = Request.from_raw(method, path.encode(), b"", headers or {}, b"", remote_addr=peer, scheme=scheme)
    response = app.handle(request)
    return response, {name: [v for n, v in response.headers if n == name] for name, _ in response.headers}


def test_http_date_is_rfc_9110_imf_fixdate():
    assert http_date(0) == "Thu, 01 Jan 1970 00:00:00 GMT"
    assert http_date(1_796_401_890.9) == "Fri, 04 Dec 2026 16:31:30 GMT"
    now = http_date()
    assert IMF_FIXDATE.match(now), now
    assert abs(email.utils.parsedate_to_datetime(now).timestamp() - time.time()) < 2


def test_every_response_carries_one_date():
    app = make_app()
    for path, method in (("/who", "GET"), ("/nowhere", "GET"), ("/who", "DELETE"), ("/stream", "GET"),
                         ("/who", "HEAD")):
        _, headers = call(app, path, method=method)
        assert len(headers["Date"]) == 1 and IMF_FIXDATE.match(headers["Date"][0]), (path, headers)


def test_date_is_formatted_once_a_second_and_follows_the_clock(monkeypatch):
    app = make_app()
    now = [1_796_401_890.0]
    app.clock = lambda: now[0]
    formatted = []
    monkeypatch.setattr(application, "http_date", lambda second: formatted.append(second) or http_date(second))

    def date() -> str:
        return call(app)[1]["Date"][0]

    assert date() == "Fri, 04 Dec 2026 16:31:30 GMT"
    now[0] = 1_796_401_890.999
    assert date() == "Fri, 04 Dec 2026 16:31:30 GMT"
    assert formatted == [1_796_401_890], "within one second: formatted once"
    now[0] = 1_796_401_891.0  # the next second, to the instant
    assert date() == "Fri, 04 Dec 2026 16:31:31 GMT"
    now[0] = 1_796_401_889.5  # the clock stepped back: the cached second is not this one
    assert date() == "Fri, 04 Dec 2026 16:31:29 GMT"
    assert formatted == [1_796_401_890, 1_796_401_891, 1_796_401_889]


def test_date_off_for_a_wsgi_server_that_writes_its_own():
    app = make_app()
    app.date_header = False
    assert "Date" not in call(app)[1]


def test_the_handler_id_header_is_a_switch():
    app = make_app()
    assert call(app)[1]["X-Handler-Id"] == ["host:1"]
    app.handler_id_header = False
    headers = call(app)[1]
    assert "X-Handler-Id" not in headers and headers["X-Hub"] == ["test"]  # the rest stays


def who(app: App, **kwargs) -> dict:
    import json
    return json.loads(call(app, **kwargs)[0].body)


def test_forwarding_headers_ignored_by_default():
    spoof = {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"}
    assert who(make_app(), headers=spoof) == {"client": "10.0.0.5", "peer": "10.0.0.5", "scheme": "http"}


def test_a_trusted_proxy_names_the_client_and_the_scheme():
    app = make_app()
    app.trusted_proxies = TrustedProxies.parse("10.0.0.0/24")
    headers = {"x-forwarded-for": "203.0.113.7", "x-forwarded-proto": "https"}
    assert who(app, headers=headers) == {"client": "203.0.113.7", "peer": "10.0.0.5", "scheme": "https"}
    response, seen = call(app, headers=headers)
    assert seen["Strict-Transport-Security"], "the client came over TLS to the proxy"
    # Anyone else sending the same headers is taken for what the connection says.
    assert who(app, headers=headers, peer="198.51.100.9") == {
        "client": "198.51.100.9", "peer": "198.51.100.9", "scheme": "http"}
    assert "Strict-Transport-Security" not in call(app, headers=headers, peer="198.51.100.9")[1]


def test_trusted_proxies_replaced_after_start_take_effect():
    app = make_app()
    headers = {"x-forwarded-for": "203.0.113.7"}
    app.trusted_proxies = TrustedProxies.parse("10.0.0.0/24")
    assert who(app, headers=headers)["client"] == "203.0.113.7"
    app.trusted_proxies = TrustedProxies()  # none again: the peer is the client
    assert who(app, headers=headers)["client"] == "10.0.0.5"


@pytest.mark.parametrize("spec", ["", "*"])
def test_star_trusts_every_peer(spec):
    app = make_app()
    app.trusted_proxies = TrustedProxies.parse(spec)
    client = who(app, headers={"x-forwarded-for": "203.0.113.7"}, peer="198.51.100.9")["client"]
    assert client == ("203.0.113.7" if spec == "*" else "198.51.100.9")
