"""APP=package.module:attr (m2stack.apps): an App, a factory taking a Startup, or a WSGI
callable; anything else stops the process with one line."""

from __future__ import annotations

import sys
import types

import msgspec
import pytest

from m2stack import apps, hubs
from m2stack.app import App, Endpoint, Router
from m2stack.app.hosted_wsgi import HostedWSGIApp
from m2stack.settings import SettingsError
from m2stack.startup import Startup

BLOCKING = hubs.blocking_hub()
routes = Router()


@routes.route("/hello")
class Hello(Endpoint):
    def get(self):
        return self.json({"hello": self.app.state.greeting})


class Greeting(msgspec.Struct, frozen=True):
    greeting: str = msgspec.field(default="world", name="TEST_GREETING")


def factory(startup: Startup) -> App:
    startup.state.greeting = startup.settings(Greeting).greeting
    startup.state.front_door_seen = startup.front_door
    return App(routes)


def wsgi_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"wsgi"]


class WSGIObject:
    def __call__(self, environ, start_response):
        return wsgi_app(environ, start_response)


native = App(routes)
native.state.greeting = "native"


def raising_factory(startup):
    raise RuntimeError("no database\nat all")


def factory_of_wsgi(startup):
    return WSGIObject()


@pytest.fixture
def module(monkeypatch):
    """A module named `kinds`, holding one object of every kind."""
    kinds = types.ModuleType("kinds")
    kinds.__dict__.update(native=native, factory=factory, wsgi_app=wsgi_app, wsgi_object=WSGIObject(),
                          raising_factory=raising_factory, factory_of_wsgi=factory_of_wsgi,
                          wrong_return=lambda startup: 42, number=42, three=lambda a, b, c: None,
                          star=lambda *args: None, nested=types.SimpleNamespace(factory=factory))
    monkeypatch.setitem(sys.modules, "kinds", kinds)
    return kinds


def load(monkeypatch, spec: str, front_door: str = "mongrel2", **env: str) -> App:
    monkeypatch.setenv("APP", spec)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return apps.load_app(BLOCKING, front_door=front_door)


def get(app: App, path: str = "/hello"):
    from m2stack.app import Request
    return app.handle(Request.from_raw("GET", path.encode(), b"", {}, b""))


def test_a_native_app_is_served_as_it_is(module, monkeypatch):
    app = load(monkeypatch, "kinds:native")
    assert app is native and (app.hub_name, app.front_door) == ("blocking", "mongrel2")
    assert get(app).body == b'{"hello":"native"}'


def test_a_factory_gets_the_hub_the_door_settings_and_a_shared_state(module, monkeypatch):
    app = load(monkeypatch, "kinds:factory", front_door="wsgi", TEST_GREETING="team")
    assert type(app) is App and app.front_door == "wsgi" and app.hub_name == "blocking"
    assert app.state.front_door_seen == "wsgi"
    assert get(app).body == b'{"hello":"team"}'
    assert load(monkeypatch, "kinds:nested.factory").state.greeting == "team"  # dots in the attribute


def test_a_factory_of_the_demo_is_the_default(monkeypatch):
    monkeypatch.delenv("APP", raising=False)
    app = apps.load_app(BLOCKING, front_door="mongrel2")
    assert app.resolve("/json") is not None and app.state.db is not None and app.state.fanout is not None


def test_the_apps_own_state_joins_the_startup_state():
    startup = Startup(hub=BLOCKING, front_door="mongrel2")
    startup.state.pool = "pool"
    app = apps.build_app(native, startup, "kinds:native")
    assert app.state is startup.state and (app.state.pool, app.state.greeting) == ("pool", "native")


@pytest.mark.parametrize("spec", ["kinds:wsgi_app", "kinds:wsgi_object", "kinds:factory_of_wsgi"])
def test_a_wsgi_callable_is_hosted(module, monkeypatch, spec):
    app = load(monkeypatch, spec)
    assert isinstance(app, HostedWSGIApp) and app.hub_name == "blocking"
    assert get(app, "/anything").body == b"wsgi"


def test_how_kinds_are_told_apart():
    assert apps.required_parameters(factory) == 1
    assert apps.required_parameters(wsgi_app) == 2 and apps.required_parameters(WSGIObject()) == 2
    assert apps.required_parameters(lambda startup, extra=1, **kw: None) == 1
    assert apps.required_parameters(lambda *args: None) is None
    assert apps.required_parameters(42) is None


@pytest.mark.parametrize("spec, line", [
    ("kinds", "APP=kinds: expected package.module:attribute"),
    (":factory", "APP=:factory: expected package.module:attribute"),
    ("no_such_module_here:app", "APP=no_such_module_here:app: no module named 'no_such_module_here'"),
    ("kinds.sub:app", "APP=kinds.sub:app: no module named 'kinds.sub'"),
    ("kinds:missing", "APP=kinds:missing: kinds has no attribute 'missing'"),
    ("kinds:nested.missing", "APP=kinds:nested.missing: kinds.nested has no attribute 'missing'"),
    ("kinds:number", "APP=kinds:number: is a int; expected an m2stack.app.App, a factory"),
    ("kinds:three", "APP=kinds:three: is a callable taking 3 required parameter(s)"),
    ("kinds:star", "APP=kinds:star: is a callable taking parameters it cannot tell"),
    ("kinds:raising_factory", "APP=kinds:raising_factory: the factory raised RuntimeError: no database at all (at "),
    ("kinds:wrong_return", "APP=kinds:wrong_return: the factory returned a int; expected an m2stack.app.App"),
])
def test_a_bad_app_is_one_line_and_an_exit(module, monkeypatch, spec, line):
    with pytest.raises(SystemExit) as caught:
        load(monkeypatch, spec)
    message = str(caught.value.code)
    assert message.startswith(line) and "\n" not in message, message


def test_an_import_that_fails_inside_the_module_says_so(monkeypatch, tmp_path):
    (tmp_path / "broken_service.py").write_text("import not_installed_dependency\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(SystemExit) as caught:
        load(monkeypatch, "broken_service:app")
    assert str(caught.value.code).startswith(
        "APP=broken_service:app: importing broken_service failed: ModuleNotFoundError: "
        "No module named 'not_installed_dependency' (at ")


def test_deployment_settings_reach_the_app(module, monkeypatch):
    app = load(monkeypatch, "kinds:factory", HANDLER_ID_HEADER="false", FORWARDED_ALLOW_IPS="10.0.0.0/8")
    assert app.handler_id_header is False and app.date_header is True
    assert app.trusted_proxies and not app.trusted_proxies.everyone
    assert load(monkeypatch, "kinds:factory", front_door="wsgi").date_header is False  # the server's own
    monkeypatch.delenv("HANDLER_ID_HEADER")
    monkeypatch.delenv("FORWARDED_ALLOW_IPS")
    app = load(monkeypatch, "kinds:factory")
    assert app.handler_id_header is True and not app.trusted_proxies


def test_a_bad_trusted_proxy_entry_names_the_setting(module, monkeypatch):
    with pytest.raises(SettingsError, match="FORWARDED_ALLOW_IPS: 'ten' is neither"):
        load(monkeypatch, "kinds:factory", FORWARDED_ALLOW_IPS="10.0.0.1, ten")
