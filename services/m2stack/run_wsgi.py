"""Entry point of the WSGI images: `gunicorn ... m2stack.run_wsgi:application`.

Gunicorn's worker class (gevent or eventlet) patches the worker itself, so nothing is
patched here; the app is built once per worker, after the patching (so X-Hub is right
even with `preload_app`): by `load()` as the worker boots (gunicorn.conf.py), else on the
first request.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from m2stack import launch

_adapter = functools.lru_cache(maxsize=None)(launch.wsgi_application)


def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
    return _adapter()(environ, start_response)


def load() -> None:
    """Build this worker's app now: a bad APP or setting stops it (SystemExit) before it serves."""
    _adapter()
