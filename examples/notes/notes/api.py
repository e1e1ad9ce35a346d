"""The routes of the notes service: what a request may carry, and what it gets back.

Bodies are decoded straight into `NoteIn` by `request.decode`, which answers 415 for
another content type, 400 for malformed JSON or a key named twice, and 422 listing every
invalid field with its path; the service declares its rules and nothing more.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

import msgspec
from msgspec import Meta, field

from m2stack.app import Endpoint, HTTPError, Response, Router, StreamingResponse
from notes.store import Note, NoteStore

routes = Router()

NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
Title = Annotated[str, Meta(min_length=1, max_length=200, pattern=NO_CONTROL)]
Body = Annotated[str, Meta(max_length=10_000, pattern=r"^[^\x00]*$")]  # PostgreSQL text has no NUL
Tag = Annotated[str, Meta(min_length=1, max_length=30, pattern=r"^[a-z0-9][a-z0-9-]*$")]


class NotesSettings(msgspec.Struct, frozen=True):
    """The service's own settings, read from the environment like m2stack's."""

    # The most notes one GET /notes returns (and the page size of /notes/export).
    max_list: Annotated[int, Meta(ge=1, le=1000)] = field(default=100, name="NOTES_MAX_LIST")


class NoteIn(msgspec.Struct, forbid_unknown_fields=True):
    """What a client may send: unknown fields are refused, not dropped."""

    title: Title
    body: Body = ""
    tags: Annotated[list[Tag], Meta(max_length=10)] = []


class NotesEndpoint(Endpoint):
    @property
    def store(self) -> NoteStore:
        store: NoteStore = self.app.state.notes  # put there by create_app
        return store

    @property
    def settings(self) -> NotesSettings:
        settings: NotesSettings = self.app.state.settings
        return settings


@routes.route("/healthz")
class Health(Endpoint):
    """Liveness, without the database: the WSGI image's healthcheck GETs it."""

    def get(self) -> Response:
        return self.json({"status": "ok"})


@routes.route("/notes")
class Notes(NotesEndpoint):
    def get(self) -> Response:
        limit = self.request.int_argument("limit", 20, minimum=1, maximum=self.settings.max_list)
        return self.json(self.store.newest(limit, tag=self.request.argument("tag")))

    def post(self) -> Response:
        note = self.request.decode(NoteIn)
        stored = self.store.add(note.title, note.body, note.tags)
        response = self.json(stored, 201)
        response.set_header("Location", f"/notes/{stored.id}")
        return response


@routes.route("/notes/export")
class Export(NotesEndpoint):
    """Every note, newest first, one JSON object a line; a page per query, so neither the
    body nor a database connection is held for the whole stream."""

    def get(self) -> Response:
        return StreamingResponse(self.pages(), content_type="application/x-ndjson")

    def pages(self) -> Iterator[bytes]:
        encode = msgspec.json.Encoder().encode
        before: int | None = None
        while True:
            page = self.store.newest(self.settings.max_list, before=before)
            if not page:
                return
            yield b"".join(encode(note) + b"\n" for note in page)
            before = page[-1].id


@routes.route("/notes/{note_id:int}")
class OneNote(NotesEndpoint):
    def get(self, note_id: int) -> Response:
        return self.json(self.found(self.store.get(note_id), note_id))

    def delete(self, note_id: int) -> Response:
        if not self.store.delete(note_id):
            raise HTTPError(404, "no such note", details={"id": note_id})
        return Response(b"", 204, content_type=None)

    @staticmethod
    def found(note: Note | None, note_id: int) -> Note:
        if note is None:
            raise HTTPError(404, "no such note", details={"id": note_id})
        return note
