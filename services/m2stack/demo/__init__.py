"""The demo app: every variant (Mongrel2 + gevent/eventlet, Gunicorn) serves these routes.

    basics.py   /plaintext /json /sleep /healthz /error /echo /redirect
    world.py    /db /queries /fortunes /updates /db/sleep (PostgreSQL, TechEmpower's rules)
    items.py    POST /items, GET /items/{id} (validation the DictShield way)
    fanout.py   /fanout (outbound HTTP)
    chat.py     /ws/echo /ws/chat (WebSocket; the chat fans out through PostgreSQL LISTEN/NOTIFY)
    streaming.py /stream /events /download (streamed bodies)
    uploads.py  POST /upload (size and SHA-256 of the body; large ones via mongrel2's temp_store)

`create_app` is the one factory, so no endpoint is written twice. The hub is passed in:
the database pool and the fan-out client are built on it here, once, and shared through
`app.state`.
"""

from __future__ import annotations

from m2stack import db
from m2stack.app import App, Router
from m2stack.demo import basics, chat, fanout, items, streaming, uploads, world
from m2stack.hubs import AppHub
from m2stack.settings import DatabaseSettings, FanoutSettings, load


def create_app(hub: AppHub, *, front_door: str) -> App:
    routes = Router()
    for module in (basics, world, items, fanout, chat, streaming, uploads):
        routes.include(module.routes)
    app = App(routes, hub_name=hub.NAME, front_door=front_door)
    # Built now, connected lazily: after any fork and any monkey-patching.
    app.state.db = db.Pool(load(DatabaseSettings), hub)
    app.answer_error(db.DatabaseUnavailable, world.database_error)
    app.state.fanout = fanout.Client(load(FanoutSettings), hub)
    app.state.chat = chat.Room(app.state.db, hub)
    return app
