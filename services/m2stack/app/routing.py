"""Routes: a path pattern to an `Endpoint` class, one method per HTTP verb (Brubeck's way).

    routes = Router()

    @routes.route("/items/{item_id:int}")
    class Item(Endpoint):
        def get(self, item_id: int) -> Response: ...

Patterns take `{name}` (one path segment), `{name:int}` and `{name:path}` (the rest).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, Protocol

from m2stack.app.request import Request
from m2stack.app.response import Response, json_response

SUPPORTED_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


class Serving(Protocol):
    """What an endpoint sees of the app serving it (`App` is one). Declared here, not
    imported, so that routes never import the app that imports them."""

    hub_name: str
    front_door: str
    handler_id: str
    state: SimpleNamespace


class Endpoint:
    """One instance per request; methods named after HTTP verbs take the route's
    parameters as keyword arguments and return a `Response` (or raise `HTTPError`).
    HEAD runs `get` and drops the body."""

    def __init__(self, app: Serving, request: Request):
        self.app = app
        self.request = request

    @classmethod
    def allowed_methods(cls) -> list[str]:
        allowed = [m for m in SUPPORTED_METHODS if callable(getattr(cls, m.lower(), None))]
        if "GET" in allowed and "HEAD" not in allowed:
            allowed.insert(allowed.index("GET") + 1, "HEAD")
        return allowed

    def text(self, text: str, status: int = 200) -> Response:
        return Response(text.encode("utf-8"), status)

    def json(self, data: Any, status: int = 200) -> Response:
        return json_response(data, status)

    def html(self, html: str, status: int = 200) -> Response:
        return Response(html.encode("utf-8"), status, "text/html; charset=utf-8")


_PARAM = re.compile(r"\{(\w+)(?::(int|str|path))?\}")
_CONVERTERS: dict[str, tuple[str, Callable[[str], Any]]] = {
    "str": (r"[^/]+", str),
    "int": (r"[0-9]{1,18}", int),
    "path": (r".+", str),
}


class Route:
    """A pattern and its endpoint. The pattern (never the raw path) labels metrics, so
    their cardinality stays bounded."""

    __slots__ = ("pattern", "regex", "converters", "endpoint")

    def __init__(self, pattern: str, endpoint: type[Endpoint]):
        self.pattern = pattern
        self.endpoint = endpoint
        self.converters: dict[str, Callable[[str], Any]] = {}
        regex, last = "", 0
        for match in _PARAM.finditer(pattern):
            name, kind = match.group(1), match.group(2) or "str"
            part, convert = _CONVERTERS[kind]
            regex += re.escape(pattern[last:match.start()]) + f"(?P<{name}>{part})"
            self.converters[name] = convert
            last = match.end()
        self.regex = re.compile(regex + re.escape(pattern[last:]) + r"\Z")

    @property
    def is_static(self) -> bool:
        return not self.converters

    def match(self, path: str) -> dict[str, Any] | None:
        found = self.regex.match(path)
        if found is None:
            return None
        return {name: self.converters[name](value) for name, value in found.groupdict().items()}


class Router:
    """An ordered set of routes; static paths are found by one dict lookup."""

    def __init__(self) -> None:
        self._static: dict[str, Route] = {}
        self._dynamic: list[Route] = []

    def route(self, pattern: str) -> Callable[[type[Endpoint]], type[Endpoint]]:
        """Class decorator: `@routes.route("/items/{item_id:int}")`."""
        def register(endpoint: type[Endpoint]) -> type[Endpoint]:
            self.add(Route(pattern, endpoint))
            return endpoint
        return register

    def add(self, route: Route) -> None:
        if route.is_static:
            self._static[route.pattern] = route
        else:
            self._dynamic.append(route)

    @property
    def routes(self) -> list[Route]:
        return [*self._static.values(), *self._dynamic]

    def include(self, other: Router) -> None:
        """Every route of another router (one set of endpoints can serve many apps)."""
        for route in other.routes:
            self.add(route)

    def resolve(self, path: str) -> tuple[Route, dict[str, Any]] | None:
        route = self._static.get(path)
        if route is not None:
            return route, {}
        for route in self._dynamic:
            params = route.match(path)
            if params is not None:
                return route, params
        return None
