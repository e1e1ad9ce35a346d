"""Any WSGI app behind Mongrel2: the Flask example, served by the gevent handler image.

compose/example-flask.yml sets APP=examples.flask_app:app on the handler; mongrel2 and
everything else is the default stack. One stack, two handlers (to show ZeroMQ spreads
a plain WSGI app over processes like the demo app).
"""

from __future__ import annotations

import pytest

from stack import Stack


@pytest.fixture(scope="module")
def flask_stack(docker_available):
    stack = Stack("example-flask", ["docker-compose.yml", "compose/example-flask.yml"])
    try:
        stack.up(handlers=2)
        yield stack
    finally:
        stack.down()


def served_by_mongrel2(response) -> None:
    assert response.headers["X-Front-Door"] == "mongrel2" and response.headers["X-Hub"] == "gevent"
    assert response.headers["X-Request-Id"] and response.headers["X-Handler-Id"]


def test_flask_routes_answer_through_mongrel2(flask_stack):
    response = flask_stack.get("/")
    assert response.status_code == 200 and response.text == "Hello from Flask behind Mongrel2!\n"
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"  # Flask's default
    served_by_mongrel2(response)
    item = flask_stack.get("/items/2")
    assert item.status_code == 200 and item.json() == {"id": 2, "name": "gunicorn"}
    served_by_mongrel2(item)


def test_flask_sees_a_proper_wsgi_environ(flask_stack):
    response = flask_stack.get("/whoami?tag=a&tag=b&x=caf%C3%A9", headers={"User-Agent": "parity/1"},
                               cookies={"flavour": "oat"})
    assert response.json() == {"path": "/whoami", "args": {"tag": ["a", "b"], "x": ["caf\u00e9"]},
                               "cookies": {"flavour": "oat"}, "hub": "gevent", "user_agent": "parity/1"}


def test_flask_post_json_and_its_own_errors(flask_stack):
    created = flask_stack.request("POST", "/items", json={"name": "flask"})
    assert created.status_code == 201 and created.json() == {"id": 3, "name": "flask"}
    assert flask_stack.request("POST", "/items", json=[1]).status_code == 400
    missing = flask_stack.get("/items/99")
    assert missing.status_code == 404 and "Not Found" in missing.text  # Flask's page, not ours
    served_by_mongrel2(missing)
    assert flask_stack.request("DELETE", "/items/1").status_code == 405  # Flask's routing


def test_two_cookies_stay_two_headers(flask_stack):
    response = flask_stack.get("/login")
    assert response.json() == {"logged_in": True}
    assert set(response.cookies.keys()) == {"session", "theme"}
    assert response.raw.headers.getlist("Set-Cookie")[0].startswith("session=abc123")


def test_head_keeps_flasks_content_length(flask_stack):
    get = flask_stack.get("/items/1")
    head = flask_stack.request("HEAD", "/items/1")
    assert head.status_code == 200 and head.content == b""
    assert head.headers["Content-Length"] == get.headers["Content-Length"]


def test_mongrel2_still_serves_static_and_spreads_over_both_handlers(flask_stack):
    assert flask_stack.get("/static/health.txt").status_code == 200
    ids = {flask_stack.get("/").headers["X-Handler-Id"] for _ in range(20)}
    assert len(ids) == 2, ids
