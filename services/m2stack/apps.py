"""The one place that picks the app a process serves: the demo, or `APP=module:callable`.

`APP` names any WSGI application (Flask, Django, ...); it is served through
`HostedWSGIApp`, so every front door drives it like the demo.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

from m2stack.app import App
from m2stack.app.hosted_wsgi import HostedWSGIApp
from m2stack.hubs import AppHub


def load_callable(spec: str) -> Any:
    """`package.module:attribute` (dots allowed in the attribute) to the object."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise SystemExit(f"APP must look like package.module:callable, got {spec!r}")
    target: Any = importlib.import_module(module_name)
    for part in attribute.split("."):
        target = getattr(target, part)
    return target


def load_app(hub: AppHub, *, front_door: str) -> App:
    spec = os.environ.get("APP", "")
    if spec:
        return HostedWSGIApp(load_callable(spec), hub_name=hub.NAME, front_door=front_door)
    from m2stack.demo import create_app  # only when serving the demo: APP apps need no psycopg2
    return create_app(hub, front_door=front_door)
