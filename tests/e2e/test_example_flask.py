"""Any WSGI app behind Mongrel2: the Flask example, served by the gevent handler image.

compose/example-flask.yml sets APP=examples.flask_app:app on the handler; mongrel2, the
dispatcher and everything else is the default stack. One stack, two handlers (to show a
plain WSGI app is spread over processes like the demo app).
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

STACK = {"purpose": "flask", "processes": 2}
pytestmark = pytest.mark.parametrize("stack", ["example-flask"], indirect=True, scope="module")
FLASK_404 = (b"<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n"
             b"<p>The requested URL was not found on the server. If you entered the URL manually please "
             b"check your spelling and try again.</p>\n")


def served_by_mongrel2(stack, response) -> None:
    assert response.headers["X-Front-Door"] == "mongrel2" and response.headers["X-Hub"] == "gevent"
    assert re.fullmatch("[0-9a-f]{16}", response.headers["X-Request-Id"])
    assert response.headers["X-Handler-Id"] in {f"{cid[:12]}:1" for cid in stack.app_ids()}


def test_flask_routes_answer_through_mongrel2(stack):
    response = stack.get("/")
    assert response.status_code == 200 and response.text == "Hello from Flask behind Mongrel2!\n"
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"  # Flask's default
    served_by_mongrel2(stack, response)
    item = stack.get("/items/2")
    assert item.status_code == 200 and item.json() == {"id": 2, "name": "gunicorn"}
    served_by_mongrel2(stack, item)


def test_flask_sees_a_proper_wsgi_environ(stack):
    # Plain requests, not the stack's session: no cookie from another test rides along.
    response = requests.get(stack.url + "/whoami?tag=a&tag=b&x=caf%C3%A9", headers={"User-Agent": "parity/1"},
                            cookies={"flavour": "oat"}, timeout=10)
    assert response.json() == {"path": "/whoami", "args": {"tag": ["a", "b"], "x": ["caf\u00e9"]},
                               "cookies": {"flavour": "oat"}, "hub": "gevent", "user_agent": "parity/1"}
    bare = requests.get(stack.url + "/whoami", headers={"User-Agent": "bare/1"}, timeout=10)  # no query, no cookie
    assert bare.content == (b'{"args":{},"cookies":{},"hub":"gevent","path":"/whoami",'
                            b'"user_agent":"bare/1"}\n')


def test_flask_post_json_and_its_own_errors(stack):
    created = stack.request("POST", "/items", json={"name": "flask"})
    assert created.status_code == 201 and created.json() == {"id": 3, "name": "flask"}
    assert stack.request("POST", "/items", json=[1]).status_code == 400
    missing = stack.get("/items/99")
    assert missing.status_code == 404 and missing.content == FLASK_404  # Flask's page, not ours
    served_by_mongrel2(stack, missing)
    assert stack.request("DELETE", "/items/1").status_code == 405  # Flask's routing


def test_two_cookies_stay_two_headers(stack):
    response = stack.get("/login")
    assert response.json() == {"logged_in": True}
    assert response.raw.headers.getlist("Set-Cookie") == ["session=abc123; HttpOnly; Path=/; SameSite=Lax",
                                                          "theme=dark; Path=/"]


def test_head_keeps_flasks_content_length(stack):
    get = stack.get("/items/1")
    head = stack.request("HEAD", "/items/1")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"]


def test_mongrel2_still_serves_static_and_spreads_over_both_handlers(stack):
    assert stack.variant.dispatched   # the stack's default shape
    assert stack.get("/static/health.txt").status_code == 200
    # The dispatcher keeps a connection on the handler that answered it last and picks the
    # least loaded one for a new connection: new connections, several at once, reach both.
    def client(_: int) -> set[str]:
        return {requests.get(stack.url + "/", timeout=10).headers["X-Handler-Id"] for _ in range(10)}

    with ThreadPoolExecutor(4) as pool:
        ids = set().union(*pool.map(client, range(4)))
    assert ids == {f"{cid[:12]}:1" for cid in stack.app_ids()} and len(ids) == 2, ids
