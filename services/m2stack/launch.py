"""What every entry point does once its hub has patched the process: read the settings,
set up logging and metrics, pick the app, and hand both to a front door."""

from __future__ import annotations

import logging
import sys

from m2stack import apps, logs, metrics
from m2stack.doors import wsgi
from m2stack.doors.mongrel2 import driver
from m2stack.hubs import Hub, detect
from m2stack.scheduling import batch_scheduling
from m2stack.settings import HandlerSettings, WSGISettings, load

log = logging.getLogger("m2stack.launch")


def mongrel2_handler(hub: Hub) -> int:
    """A Mongrel2 handler process on `hub`, until SIGTERM; the exit status."""
    settings = load(HandlerSettings)
    logs.setup(settings.log_level)
    if settings.batch_scheduling:
        batch_scheduling()  # before the ZeroMQ context starts its I/O thread, which inherits it
    app = apps.load_app(hub, front_door="mongrel2")
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    metrics.HUB.labels(hub.NAME, "mongrel2", hub.versions()[hub.NAME]).set(1)
    log.info("handler starting", extra={"hub": hub.NAME, "versions": hub.versions(),
                                        "python": sys.version.split()[0],
                                        "handler_id": app.handler_id,
                                        "max_in_flight": settings.max_in_flight,
                                        "receive_hwm": settings.receive_hwm})
    return driver.serve(hub, app, settings)  # the Mongrel2 door


def wsgi_application() -> wsgi.WSGIAdapter:
    """The WSGI callable of one Gunicorn worker, on whatever hub its worker class patched."""
    settings = load(WSGISettings)
    logs.setup(settings.log_level)  # the app's JSON lines; Gunicorn keeps its own
    hub = detect()
    if hub.NAME != "blocking":
        metrics.HUB.labels(hub.NAME, "wsgi", hub.versions()[hub.NAME]).set(1)
    app = apps.load_app(hub, front_door="wsgi")
    return wsgi.WSGIAdapter(app, hub, max_body=settings.max_body,
                            request_timeout=settings.request_timeout)
