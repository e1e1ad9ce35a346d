"""db.py raises its own errors; every app m2stack builds (apps.build_app: the demo, a
team's own factory) answers them as 503 JSON with Retry-After unless it registered its own
answer. A real psycopg2 and a port nothing listens on stand in for a database that is down."""

from __future__ import annotations

import json

import pytest

from m2stack import db
from m2stack.app import App, Endpoint, HTTPError, Request, Router
from m2stack.apps import build_app
from m2stack.demo import create_app
from m2stack.hubs import blocking_hub
from m2stack.settings import DatabaseSettings
from m2stack.startup import Startup

HUB = blocking_hub()
NOWHERE = DatabaseSettings(host="127.0.0.1", port=1, pool_size=1, pool_timeout=0.05, connect_timeout=2.0)


def get(app, target):
    path, _, query = target.partition("?")
    response = app.handle(Request.from_raw("GET", path.encode(), query.encode(), {}, b""))
    return response, json.loads(response.body), dict(response.headers)


@pytest.fixture
def app():
    app = build_app(create_app, Startup(hub=HUB, front_door="none"), "m2stack.demo:create_app")
    app.state.db = db.Pool(NOWHERE, HUB)
    return app


def test_the_pool_raises_its_own_error_when_the_server_cannot_be_reached():
    with pytest.raises(db.DatabaseUnavailable) as raised, db.Pool(NOWHERE, HUB).cursor():
        pass
    assert raised.value.message == "database unavailable" and raised.value.details["reason"]


def test_a_database_that_cannot_be_reached_is_503_json_with_retry_after(app):
    response, body, headers = get(app, "/db")
    assert response.status == 503 and headers["Retry-After"] == "1"
    assert body["error"]["message"] == "database unavailable"
    assert "OperationalError" in body["error"]["details"]["reason"]


def test_an_exhausted_pool_is_503_json_with_its_size_and_the_wait(app):
    app.state.db._slots.acquire()  # the one connection is busy elsewhere
    response, body, headers = get(app, "/queries?queries=2")
    assert response.status == 503 and headers["Retry-After"] == "1"
    assert body["error"]["message"] == "database pool exhausted"
    assert body["error"]["details"]["pool_size"] == 1 and body["error"]["details"]["waited_seconds"] >= 0.05


def test_an_error_no_answer_is_registered_for_stays_a_500():
    routes = Router()

    @routes.route("/down")
    class Down(Endpoint):
        def get(self):
            raise db.PoolExhausted({"pool_size": 1})

    bare = App(routes)
    response, body, _ = get(bare, "/down")
    assert response.status == 500 and body["error"]["message"] == "internal server error"
    bare.answer_error(db.DatabaseUnavailable, lambda exc: HTTPError(418, exc.message))
    response, body, _ = get(bare, "/down")
    assert response.status == 418 and body["error"]["message"] == "database pool exhausted"  # a subclass matches


def down_routes() -> Router:
    routes = Router()

    @routes.route("/down")
    class Down(Endpoint):
        def get(self):
            with db.Pool(NOWHERE, HUB).cursor():
                pass

    return routes


def test_a_teams_own_factory_gets_503_too_without_saying_anything():
    def create_app(startup):  # what a service of its own writes (examples/notes)
        return App(down_routes())

    app = build_app(create_app, Startup(hub=HUB, front_door="none"), "mine:create_app")
    response, body, headers = get(app, "/down")
    assert response.status == 503 and headers["Retry-After"] == "1"
    assert body["error"]["message"] == "database unavailable"


def test_an_apps_own_answer_is_kept_even_one_for_a_base_class():
    def create_app(startup):
        app = App(down_routes())
        app.answer_error(Exception, lambda exc: HTTPError(502, "ours"))
        return app

    app = build_app(create_app, Startup(hub=HUB, front_door="none"), "mine:create_app")
    response, body, _ = get(app, "/down")
    assert response.status == 502 and body["error"]["message"] == "ours"
