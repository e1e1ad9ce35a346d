"""Entry point of the WSGI images: `gunicorn ... m2stack.run_wsgi:application`.

Gunicorn's worker class (gevent or eventlet) patches the worker itself, so nothing is
patched here; the app is built on the first request, in the worker, after the patching
(so X-Hub is right even with `preload_app`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable

from m2stack import launch

_adapter = functools.lru_cache(maxsize=None)(launch.wsgi_application)


def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
    return _adapter()(environ, start_response)
