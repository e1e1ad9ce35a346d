"""The notes table, through m2stack's database pool: every query here, none in the routes.

The table is the service's own: made on first use (CREATE TABLE IF NOT EXISTS under a
transaction-scoped advisory lock, so processes starting together do not race), which
keeps the example free of a migration tool. A real service would run its migrations
before it starts.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from m2stack.db import Pool

SCHEMA_LOCK = 7_303_001  # any constant of this service's own: pg_advisory_xact_lock's key
SCHEMA = """
CREATE TABLE IF NOT EXISTS notes (
    id         bigserial   PRIMARY KEY,
    title      text        NOT NULL,
    body       text        NOT NULL DEFAULT '',
    tags       text[]      NOT NULL DEFAULT '{}',
    created_at timestamptz NOT NULL DEFAULT now()
)
"""
COLUMNS = "id, title, body, tags, created_at"


class Note(msgspec.Struct):
    """A note as stored and as every endpoint answers it."""

    id: int
    title: str
    body: str
    tags: list[str]
    created_at: datetime


class NoteStore:
    def __init__(self, pool: Pool):
        self.pool = pool
        self._schema_ready = False

    def _ready(self) -> None:
        if self._schema_ready:
            return
        with self.pool.transaction() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            cursor.execute(SCHEMA)
        self._schema_ready = True

    def add(self, title: str, body: str, tags: list[str]) -> Note:
        self._ready()
        with self.pool.transaction() as cursor:
            cursor.execute(f"INSERT INTO notes (title, body, tags) VALUES (%s, %s, %s) RETURNING {COLUMNS}",
                           (title, body, tags))
            return Note(*cursor.fetchone())

    def get(self, note_id: int) -> Note | None:
        self._ready()
        with self.pool.cursor() as cursor:
            cursor.execute(f"SELECT {COLUMNS} FROM notes WHERE id = %s", (note_id,))
            row = cursor.fetchone()
        return None if row is None else Note(*row)

    def delete(self, note_id: int) -> bool:
        self._ready()
        with self.pool.transaction() as cursor:
            cursor.execute("DELETE FROM notes WHERE id = %s", (note_id,))
            return bool(cursor.rowcount)

    def newest(self, limit: int, tag: str | None = None, before: int | None = None) -> list[Note]:
        """Newest first, at most `limit`; only those tagged `tag`; only ids below `before`."""
        self._ready()
        where: list[str] = []
        args: list[Any] = []
        if tag is not None:
            where.append("%s = ANY(tags)")
            args.append(tag)
        if before is not None:
            where.append("id < %s")
            args.append(before)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        with self.pool.cursor() as cursor:
            cursor.execute(f"SELECT {COLUMNS} FROM notes {clause} ORDER BY id DESC LIMIT %s", (*args, limit))
            return [Note(*row) for row in cursor.fetchall()]
