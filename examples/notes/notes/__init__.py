"""notes: a small service of its own on m2stack, written only against its public API.

    APP=notes:create_app     (the image sets it; `m2stack serve ... notes:create_app` too)

    POST   /notes            a note, validated (201; 415, 400, 422 with every error)
    GET    /notes            the newest notes, ?tag= to filter, ?limit= (1..NOTES_MAX_LIST)
    GET    /notes/{id}       one note (404 JSON when there is none)
    DELETE /notes/{id}       204
    GET    /notes/export     every note as NDJSON, streamed a page at a time
    GET    /healthz          200 while the process serves (the WSGI image's healthcheck GETs it)

`create_app` is the factory m2stack calls once per process, after the hub has patched
it: it gets the hub, the front door and the settings, and builds the database pool on
that hub, shared by every request through `app.state`.
"""

from __future__ import annotations

from m2stack.app import App
from m2stack.db import Pool
from m2stack.settings import DatabaseSettings
from m2stack.startup import Startup
from notes.api import NotesSettings, routes
from notes.store import NoteStore

__all__ = ["create_app"]


def create_app(startup: Startup) -> App:
    settings = startup.settings(NotesSettings)
    # Built now, connected on first use; the table is made then too (NoteStore).
    startup.state.notes = NoteStore(Pool(startup.settings(DatabaseSettings), startup.hub))
    startup.state.settings = settings
    return App(routes)  # m2stack sets its hub and door names, and startup.state becomes app.state
