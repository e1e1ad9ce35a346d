"""POST /items and GET /items/{id}: validation the DictShield way, with msgspec.

DictShield's ideas, kept: a typed document class over plain JSON, database agnostic;
field constraints declared on the class; `make_json_ownersafe` / `make_json_publicsafe`
become separate view Structs (`ItemPublic` has no owner-only field, so it cannot leak one).

The endpoint only declares `ItemIn` and calls `self.request.decode(ItemIn)`: the app layer
(app/validation.py) answers 415, 400 (malformed JSON, a key named twice) or 422 listing
every invalid field. Unknown fields are rejected (`forbid_unknown_fields`), as DictShield's
strict validation did: a typo in an optional field name would otherwise be silently dropped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from m2stack.app import HTTPError, Response, Router
from m2stack.demo.world import DatabaseEndpoint

routes = Router()

NO_CONTROL = r"^[^\x00-\x1f\x7f]*$"
Name = Annotated[str, Meta(min_length=1, max_length=100, pattern=NO_CONTROL)]
Tag = Annotated[str, Meta(min_length=1, max_length=30, pattern=r"^[a-z0-9][a-z0-9-]*$")]
Email = Annotated[str, Meta(max_length=254, pattern=r"^[^@\s\x00]+@[^@\s\x00]+\.[^@\s\x00]+$")]
Note = Annotated[str, Meta(max_length=1000, pattern=r"^[^\x00]*$")]  # PostgreSQL text has no NUL
PriceCents = Annotated[int, Meta(ge=0, le=100_000_000)]


class ItemIn(msgspec.Struct, forbid_unknown_fields=True):
    """What a client may send. owner_email and note are owner-only: stored, never shown."""

    name: Name
    price_cents: PriceCents
    owner_email: Email
    tags: Annotated[list[Tag], Meta(max_length=10)] = []
    note: Note = ""


class ItemPublic(msgspec.Struct):
    """The public-safe view: what GET /items/{id} and POST /items answer."""

    id: int
    name: str
    price_cents: int
    tags: list[str]
    created_at: datetime


OWNER_ONLY = frozenset({"owner_email", "note"})

SELECT_ITEM = "SELECT id, name, price_cents, tags, created_at FROM items WHERE id = %s"
INSERT_ITEM = ("INSERT INTO items (name, price_cents, tags, owner_email, note)"
               " VALUES (%s, %s, %s, %s, %s) RETURNING id, created_at")


@routes.route("/items")
class Items(DatabaseEndpoint):
    def post(self) -> Response:
        item = self.request.decode(ItemIn, what="item")
        with self.db.transaction() as cursor:  # one INSERT; any error rolls it back
            cursor.execute(INSERT_ITEM, (item.name, item.price_cents, item.tags,
                                         item.owner_email, item.note))
            id_, created_at = cursor.fetchone()
        response = self.json(ItemPublic(id=id_, name=item.name, price_cents=item.price_cents,
                                        tags=item.tags, created_at=created_at), 201)
        response.set_header("Location", f"/items/{id_}")
        return response


@routes.route("/items/{item_id:int}")
class Item(DatabaseEndpoint):
    def get(self, item_id: int) -> Response:
        with self.db.cursor() as cursor:
            cursor.execute(SELECT_ITEM, (item_id,))
            row = cursor.fetchone()
        if row is None:
            raise HTTPError(404, "no such item", details={"id": item_id})
        return self.json(ItemPublic(*row))
