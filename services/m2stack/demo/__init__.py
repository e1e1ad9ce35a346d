"""The demo app: every variant (Mongrel2 + gevent/eventlet, Gunicorn) serves these routes.

    basics.py   /plaintext /json /sleep /healthz /error /echo /redirect
    world.py    /db /queries /fortunes /updates /db/sleep (PostgreSQL, TechEmpower's rules)
    items.py    POST /items, GET /items/{id} (validation the DictShield way)
    fanout.py   /fanout (outbound HTTP)
    chat.py     /ws/echo /ws/chat (WebSocket; the chat fans out through PostgreSQL LISTEN/NOTIFY)
    streaming.py /stream /events /download (streamed bodies)
    uploads.py  POST /upload (length and SHA-256 of the body, read as a stream)

`create_app` is the one factory (the default `APP`, served like any team's own): the
database pool and the fan-out client are built here, once per process, on the hub that
`Startup` hands over, and shared through `app.state`.
"""

from __future__ import annotations

from m2stack import db
from m2stack.app import App, Router
from m2stack.demo import basics, chat, fanout, items, streaming, uploads, world
from m2stack.settings import DatabaseSettings, FanoutSettings
from m2stack.startup import Startup


def create_app(startup: Startup) -> App:
    routes = Router()
    for module in (basics, world, items, fanout, chat, streaming, uploads):
        routes.include(module.routes)
    state = startup.state
    # Built now, connected lazily: after any fork and any monkey-patching.
    state.db = db.Pool(startup.settings(DatabaseSettings), startup.hub)
    state.fanout = fanout.Client(startup.settings(FanoutSettings), startup.hub)
    state.chat = chat.Room(state.db, startup.hub)
    return App(routes)  # m2stack answers the pool's DatabaseUnavailable as 503 (apps.build_app)
