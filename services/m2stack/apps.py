"""The one place that picks the app a process serves: `APP=package.module:attr`.

`attr` (dots allowed: `module:factories.create`) is one of three kinds, told apart so:

- an `m2stack.app.App` instance: served as it is;
- a callable with exactly ONE parameter without a default: a factory, called once with a
  `m2stack.startup.Startup` (hub, front door, settings, shared state); it returns an App,
  or a WSGI callable;
- a callable with exactly TWO parameters without a default, `(environ, start_response)`:
  a WSGI application (Flask, Django, ...), served through `HostedWSGIApp`.

`APP` defaults to the demo's factory, `m2stack.demo:create_app`. Anything else (no such
module or attribute, another kind of object, a factory that raises or returns something
else) stops the process at start-up with one line saying what was expected.
"""

from __future__ import annotations

import importlib
import inspect
import traceback
from typing import Any

from m2stack import db
from m2stack.app import App
from m2stack.app.forwarded import TrustedProxies
from m2stack.app.hosted_wsgi import HostedWSGIApp
from m2stack.hubs import AppHub
from m2stack.settings import AppSettings, SettingsError, load
from m2stack.startup import Startup

EXPECTED = ("an m2stack.app.App, a factory taking one argument (startup: m2stack.startup.Startup),"
            " or a WSGI callable (environ, start_response)")


class AppError(SystemExit):
    """A bad APP: one line on stderr and exit status 1, no traceback."""

    def __init__(self, spec: str, problem: str):
        super().__init__(f"APP={spec}: {problem}")


def load_object(spec: str) -> Any:
    """`package.module:attribute` (dots allowed in the attribute) to the object."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise AppError(spec, "expected package.module:attribute")
    try:
        target: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise AppError(spec, f"no module named {exc.name!r} (is its folder on PYTHONPATH?)") from None
        raise AppError(spec, f"importing {module_name} failed: {_one_line(exc)}") from None
    except Exception as exc:
        raise AppError(spec, f"importing {module_name} failed: {_one_line(exc)}") from None
    for depth, part in enumerate(attribute.split(".")):
        try:
            target = getattr(target, part)
        except AttributeError:
            owner = ".".join([module_name, *attribute.split(".")[:depth]])
            raise AppError(spec, f"{owner} has no attribute {part!r}") from None
    return target


def required_parameters(target: Any) -> int | None:
    """How many parameters of `target` take no default (None: not a callable, or its
    signature cannot be read, or it takes `*args`)."""
    if not callable(target):
        return None
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return None
    return sum(1 for p in parameters if p.default is inspect.Parameter.empty
               and p.kind is not inspect.Parameter.VAR_KEYWORD)


def build_app(target: Any, startup: Startup, spec: str) -> App:
    """An App from what APP names (see the module's rule), or AppError."""
    if isinstance(target, App):
        app = target
    else:
        wanted = required_parameters(target)
        if wanted == 2:
            app = HostedWSGIApp(target)
        elif wanted == 1:
            try:
                made = target(startup)
            except Exception as exc:
                raise AppError(spec, f"the factory raised {_one_line(exc)}") from None
            if isinstance(made, App):
                app = made
            elif required_parameters(made) == 2:
                app = HostedWSGIApp(made)
            else:
                raise AppError(spec, f"the factory returned {_kind(made)}; expected an m2stack.app.App"
                                     " or a WSGI callable (environ, start_response)")
        else:
            raise AppError(spec, f"is {_kind(target)}; expected {EXPECTED}")
    # The app's own state, if it filled one, joins what the factory put on startup.state.
    for name, value in vars(app.state).items():
        setattr(startup.state, name, value)
    app.state = startup.state
    app.hub_name = startup.hub.NAME
    app.front_door = startup.front_door
    # The pool is m2stack's, so is its failure's answer: 503, not a 500, unless the app said.
    if app.answer_for(db.DatabaseUnavailable) is None:
        app.answer_error(db.DatabaseUnavailable, db.answer_unavailable)
    return app


def load_app(hub: AppHub, *, front_door: str) -> App:
    """The app this process serves (`APP`), with what the deployment decides set on it."""
    settings = load(AppSettings)
    try:
        trusted = TrustedProxies.parse(settings.forwarded_allow_ips)
    except ValueError as exc:
        raise SettingsError(f"setting FORWARDED_ALLOW_IPS: {exc}") from None
    spec = settings.app
    app = build_app(load_object(spec), Startup(hub=hub, front_door=front_door), spec)
    app.handler_id_header = settings.handler_id_header
    app.trusted_proxies = trusted
    # A WSGI server writes its own Date (Gunicorn always does): one is enough.
    app.date_header = front_door != "wsgi"
    return app


def _kind(value: Any) -> str:
    if callable(value):
        wanted = required_parameters(value)
        taking = "parameters it cannot tell" if wanted is None else f"{wanted} required parameter(s)"
        return f"a callable taking {taking} ({type(value).__name__})"
    return f"a {type(value).__name__}"


def _one_line(exc: BaseException) -> str:
    """`ValueError: message (at file.py:12)`: the innermost frame, on one line."""
    where = ""
    frames = traceback.extract_tb(exc.__traceback__)
    if frames:
        where = f" (at {frames[-1].filename}:{frames[-1].lineno})"
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message[:300]}{where}"
