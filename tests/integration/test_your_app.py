"""A team's own app, as processes on loopback: APP names a native App, a factory or a WSGI
callable, served by real handlers behind the real mongrel2 on each hub (and by Gunicorn);
a bad APP stops the process at start with one line; the production headers (Date, the
X-Handler-Id switch, the client named by a trusted proxy only)."""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import re
import subprocess
import sys
import time
from urllib.parse import urlsplit

import pytest

from processes import HERE, ROOT, Gunicorn
from support import free_port, require_module

IMF_FIXDATE = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
                         r" \d{4} \d\d:\d\d:\d\d GMT\Z")
SPOOF = {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"}


def get(url: str, path: str = "/who", headers: dict | None = None):
    """(status, {lower-case name: [values]}, body)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        seen: dict[str, list[str]] = {}
        for name, value in response.getheaders():
            seen.setdefault(name.lower(), []).append(value)
        return response.status, seen, response.read()
    finally:
        conn.close()


def assert_one_good_date(headers: dict[str, list[str]]) -> None:
    dates = headers.get("date", [])
    assert len(dates) == 1 and IMF_FIXDATE.match(dates[0]), headers
    assert abs(email.utils.parsedate_to_datetime(dates[0]).timestamp() - time.time()) < 5, dates


# ---- each kind of APP behind mongrel2 ---------------------------------------------------------

@pytest.mark.parametrize("spec, kind", [
    ("kinds_of_app:native", "native"),
    ("kinds_of_app:factory", "factory:bonjour:mongrel2"),  # the factory read its own setting
])
def test_a_native_app_or_a_factory_behind_mongrel2(mongrel2, start_handler, hub, spec, kind):
    handler = start_handler(APP=spec, TEAM_GREETING="bonjour")
    status, headers, body = get(mongrel2.url)
    assert status == 200, body
    assert json.loads(body) == {"kind": kind, "client": "127.0.0.1", "peer": "127.0.0.1", "scheme": "http",
                                "front_door": "mongrel2", "hub": hub}
    assert headers["x-hub"] == [hub] and headers["x-handler-id"] == [handler.handler_id]
    assert_one_good_date(headers)
    status, headers, _ = get(mongrel2.url, "/json")  # the demo is not served: this app's routes only
    assert status == 404
    assert_one_good_date(headers)  # an error answer too


def test_a_wsgi_callable_behind_mongrel2(mongrel2, start_handler, hub):
    start_handler(APP="kinds_of_app:wsgi")
    status, headers, body = get(mongrel2.url, "/anything")
    assert status == 200 and json.loads(body) == {"kind": "wsgi", "client": "127.0.0.1", "scheme": "http"}
    assert headers["x-hub"] == [hub] and headers["x-front-door"] == ["mongrel2"]
    assert_one_good_date(headers)


# ---- a bad APP: one line, a non-zero exit -------------------------------------------------------

@pytest.mark.parametrize("spec, line", [
    ("no_such_service:app", "APP=no_such_service:app: no module named 'no_such_service'"),
    ("kinds_of_app:missing", "APP=kinds_of_app:missing: kinds_of_app has no attribute 'missing'"),
    ("kinds_of_app:number", "APP=kinds_of_app:number: is a int; expected an m2stack.app.App, a factory"
                            " taking one argument (startup: m2stack.startup.Startup), or a WSGI callable"),
    ("kinds_of_app:raising_factory", "APP=kinds_of_app:raising_factory: the factory raised RuntimeError:"
                                     " cannot reach the database (at "),
    ("kinds_of_app:wrong_return", "APP=kinds_of_app:wrong_return: the factory returned a str;"
                                  " expected an m2stack.app.App or a WSGI callable"),
    ("kinds_of_app", "APP=kinds_of_app: expected package.module:attribute"),
])
def test_a_bad_app_stops_the_handler_with_one_line(hub, spec, line):
    env = dict(os.environ, APP=spec, METRICS_PORT="0",
               PYTHONPATH=os.pathsep.join([str(ROOT / "services"), str(HERE)]))
    done = subprocess.run([sys.executable, "-m", f"m2stack.run_{hub}"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(line), done.stderr[-2000:]
    assert "Traceback" not in done.stderr and "handler starting" not in done.stdout


# ---- production headers ------------------------------------------------------------------------

def test_the_handler_id_header_is_a_switch(mongrel2, start_handler):
    handler = start_handler(APP="kinds_of_app:native", HANDLER_ID_HEADER="false")
    status, headers, _ = get(mongrel2.url)
    assert status == 200 and "x-handler-id" not in headers and headers["x-front-door"] == ["mongrel2"]
    handler.terminate()
    handler = start_handler(APP="kinds_of_app:native", HANDLER_ID_HEADER="true")
    assert get(mongrel2.url)[1]["x-handler-id"] == [handler.handler_id]


FORWARDED = {"Forwarded": "for=203.0.113.7;proto=https"}


def test_the_client_is_taken_from_a_trusted_proxy_only(mongrel2, start_handler):
    # mongrel2 sees these requests come from 127.0.0.1: trusted here, then not.
    handler = start_handler(APP="kinds_of_app:native", FORWARDED_ALLOW_IPS="127.0.0.0/8, 10.1.2.3")
    status, headers, body = get(mongrel2.url, headers=FORWARDED)
    assert status == 200 and json.loads(body) == {
        "kind": "native", "client": "203.0.113.7", "peer": "127.0.0.1", "scheme": "https",
        "front_door": "mongrel2", "hub": handler.hub}
    assert headers["strict-transport-security"], "the client reached the proxy over TLS"
    seen = json.loads(get(mongrel2.url, headers={"Forwarded": 'for="[2001:db8::7]:443";proto=https'})[2])
    assert (seen["client"], seen["scheme"]) == ("2001:db8::7", "https")
    # Mongrel2 replaces X-Forwarded-For with the address it saw; X-Forwarded-Proto goes through.
    seen = json.loads(get(mongrel2.url, headers=SPOOF)[2])
    assert (seen["client"], seen["scheme"]) == ("127.0.0.1", "https")
    handler.terminate()  # its access lines are written on the way out
    logged = [e for e in handler.log_entries() if "status" in e]
    assert logged and logged[0]["client"] == "203.0.113.7" and logged[0]["scheme"] == "https", logged[:1]

    start_handler(APP="kinds_of_app:native", FORWARDED_ALLOW_IPS="10.0.0.0/8")
    status, headers, body = get(mongrel2.url, headers={**FORWARDED, **SPOOF})
    assert status == 200 and json.loads(body)["client"] == "127.0.0.1" and json.loads(body)["scheme"] == "http"
    assert "strict-transport-security" not in headers


def test_a_bad_trusted_proxy_setting_stops_the_handler(hub):
    env = dict(os.environ, FORWARDED_ALLOW_IPS="10.0.0.0/8, proxy.internal", METRICS_PORT="0",
               PYTHONPATH=str(ROOT / "services"))
    done = subprocess.run([sys.executable, "-m", f"m2stack.run_{hub}"], env=env, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1] == (
        "setting FORWARDED_ALLOW_IPS: 'proxy.internal' is neither an IP address nor a network (CIDR)")


# ---- the same app under Gunicorn (the WSGI door) ---------------------------------------------------

@pytest.fixture
def gunicorn_factory(tmp_path):
    require_module("gunicorn", "the WSGI door runs under Gunicorn")
    require_module("gevent", "Gunicorn's gevent worker")
    servers = []

    def start(**env: str) -> Gunicorn:
        server = Gunicorn(tmp_path, workers=1, APP="kinds_of_app:factory", **env)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_under_gunicorn_one_date_and_the_trusted_proxy_rule(gunicorn_factory):
    server = gunicorn_factory()
    status, headers, body = get(server.url, headers=SPOOF)
    assert status == 200 and json.loads(body) == {
        "kind": "factory:hello:wsgi", "client": "127.0.0.1", "peer": "127.0.0.1", "scheme": "http",
        "front_door": "wsgi", "hub": "gevent"}  # Gunicorn trusts no one itself either
    assert_one_good_date(headers)  # Gunicorn's; the app adds none behind a WSGI server
    server.stop()

    server = gunicorn_factory(FORWARDED_ALLOW_IPS="127.0.0.1", HANDLER_ID_HEADER="false")
    status, headers, body = get(server.url, headers=SPOOF)
    seen = json.loads(body)
    assert (seen["client"], seen["scheme"], seen["peer"]) == ("203.0.113.7", "https", "127.0.0.1")
    assert "x-handler-id" not in headers
    assert_one_good_date(headers)


def test_a_bad_app_stops_gunicorn_at_start_with_one_line(tmp_path):
    require_module("gunicorn", "the WSGI door runs under Gunicorn")
    require_module("gevent", "Gunicorn's gevent worker")
    env = dict(os.environ, APP="kinds_of_app:raising_factory", PORT=str(free_port()), WEB_CONCURRENCY="1",
               GUNICORN_WORKER_CLASS="gevent", METRICS_PORT="0",
               PYTHONPATH=os.pathsep.join([str(ROOT / "services"), str(HERE)]))
    done = subprocess.run([sys.executable, "-m", "gunicorn", "--config", str(ROOT / "services" / "gunicorn.conf.py"),
                           "m2stack.run_wsgi:application"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode != 0, done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.startswith("APP=")]
    assert lines and lines[0].startswith("APP=kinds_of_app:raising_factory: the factory raised RuntimeError:"
                                         " cannot reach the database (at "), done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
