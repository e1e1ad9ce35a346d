"""What an app factory is handed at start-up: `APP=package.module:create_app`.

    from m2stack.app import App, Router
    from m2stack.startup import Startup

    def create_app(startup: Startup) -> App:
        settings = startup.settings(MySettings)        # a msgspec Struct read from the environment
        startup.state.pool = db.Pool(startup.settings(DatabaseSettings), startup.hub)
        return App(routes)                             # its app.state is startup.state

The factory runs once per process, after the hub has patched it and before any request,
so a client built here (a pool, an HTTP client) is built on the right hub and shared by
every request through `app.state`. The front door sets the app's hub and door names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TypeVar

import msgspec

from m2stack import settings as settings_module
from m2stack.hubs import AppHub

S = TypeVar("S", bound=msgspec.Struct)


@dataclass(frozen=True)
class Startup:
    """Handed to an app factory, once per process.

    `hub`: the concurrency hub's app-level part (`Timeout`, `resolve`, `make_semaphore`,
    `map_concurrently`, `wait_for_db`): build clients on it, never import a hub.
    `front_door`: "mongrel2" or "wsgi", the door that will serve the app.
    `state`: the place for what requests share (pools, clients); it becomes `app.state`.
    """

    hub: AppHub
    front_door: str
    state: SimpleNamespace = field(default_factory=SimpleNamespace)

    def settings(self, kind: type[S]) -> S:
        """`kind` read from the environment (`m2stack.settings.load`): a msgspec Struct whose
        field names (`field(name=...)`) are the variables; a bad value stops the process
        with a message naming the variable."""
        return settings_module.load(kind)
