"""An app of every kind APP can name, and the bad ones, for test_your_app.py:
APP=kinds_of_app:native | :factory | :wsgi, and :number, :raising_factory, :wrong_return."""

from __future__ import annotations

import json

import msgspec

from m2stack.app import App, Endpoint, Response, Router
from m2stack.startup import Startup

routes = Router()


@routes.route("/who")
class Who(Endpoint):
    """What the app sees of the request and of its start-up."""

    def get(self) -> Response:
        request = self.request
        return self.json({"kind": self.app.state.kind, "client": request.remote_addr,
                          "peer": request.peer_addr, "scheme": request.scheme,
                          "front_door": self.app.front_door, "hub": self.app.hub_name})


@routes.route("/healthz")
class Healthz(Endpoint):
    def get(self) -> Response:
        return self.json({"status": "ok"})


class TeamSettings(msgspec.Struct, frozen=True):
    greeting: str = msgspec.field(default="hello", name="TEAM_GREETING")


native = App(routes)
native.state.kind = "native"


def factory(startup: Startup) -> App:
    startup.state.kind = f"factory:{startup.settings(TeamSettings).greeting}:{startup.front_door}"
    return App(routes)


def wsgi(environ, start_response):
    body = json.dumps({"kind": "wsgi", "client": environ["REMOTE_ADDR"],
                       "scheme": environ["wsgi.url_scheme"]}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


number = 42


def raising_factory(startup: Startup) -> App:
    raise RuntimeError("cannot reach the database")


def wrong_return(startup: Startup) -> str:
    return "not an app"
