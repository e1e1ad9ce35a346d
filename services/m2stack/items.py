"""POST /items and GET /items/{id}: validation the DictShield way, with msgspec.

DictShield's ideas, kept: a typed document class over plain JSON, database agnostic;
field constraints declared on the class; `make_json_ownersafe` / `make_json_publicsafe`
become separate view Structs (`ItemPublic` has no owner-only field, so it cannot leak one).

Decoding: the request body is decoded and validated in ONE pass, in C, straight into an
`ItemIn` (`msgspec.json.Decoder(ItemIn)`). msgspec stops at the first error, which is
right for the fast path but not for a client that wants to fix its request at once, so
only when that pass fails, `item_errors` decodes the body to plain JSON and checks each
field on its own against the same annotations (`msgspec.convert`), collecting every error
with its path. Both passes read the same declarations, so they cannot disagree.

Unknown fields are rejected (422, "unknown field"), as DictShield's strict validation did:
a typo in an optional field name would otherwise be silently dropped.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from .app import App, HTTPError, Response
from .world import DatabaseHandler

routes = App()

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
_decode_item = msgspec.json.Decoder(ItemIn).decode
_decode_any = msgspec.json.Decoder().decode


def _error(path: str, exc: msgspec.ValidationError) -> dict[str, str]:
    """msgspec says "Expected `str`, got `int` - at `$[2]`": re-root the path at the field."""
    reason, _, where = str(exc).partition(" - at `")
    return {"path": path + where.rstrip("`")[1:], "reason": reason}


def item_errors(data: Any) -> list[dict[str, str]]:
    """Every problem of an already-decoded JSON value as an ItemIn, by field path."""
    if not isinstance(data, dict):
        return [{"path": "$", "reason": f"Expected `object`, got `{type(data).__name__}`"}]
    errors = []
    fields = msgspec.structs.fields(ItemIn)
    for field in fields:
        path = f"$.{field.encode_name}"
        if field.encode_name not in data:
            if field.required:
                errors.append({"path": path, "reason": "required field missing"})
            continue
        try:
            msgspec.convert(data[field.encode_name], field.type, strict=True)
        except msgspec.ValidationError as exc:
            errors.append(_error(path, exc))
    known = {field.encode_name for field in fields}
    errors.extend({"path": f"$.{key[:100]}", "reason": "unknown field"}
                  for key in data if key not in known)
    return errors


def decode_item(body: bytes) -> ItemIn:
    """ItemIn from a JSON body; 400 if not JSON, 422 listing every invalid field."""
    try:
        return _decode_item(body)
    except msgspec.ValidationError:
        pass
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec raises the latter for bad UTF-8
        raise HTTPError(400, "malformed JSON body", details=str(exc)) from None
    try:  # the slow path, for the error report only
        data = _decode_any(body)
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # the first pass stopped earlier
        raise HTTPError(400, "malformed JSON body", details=str(exc)) from None
    errors = item_errors(data)
    if not errors:  # cannot happen while both passes read the same Struct; never a 500
        raise HTTPError(422, "invalid item", details={"errors": [{"path": "$", "reason": "invalid"}]})
    raise HTTPError(422, "invalid item", details={"errors": errors})


def _is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


SELECT_ITEM = "SELECT id, name, price_cents, tags, created_at FROM items WHERE id = %s"
INSERT_ITEM = ("INSERT INTO items (name, price_cents, tags, owner_email, note)"
               " VALUES (%s, %s, %s, %s, %s) RETURNING id, created_at")


@routes.route("/items")
class Items(DatabaseHandler):
    def post(self) -> Response:
        content_type = self.request.header("content-type", "")
        if not _is_json(content_type):
            raise HTTPError(415, "expected Content-Type: application/json",
                            details={"content_type": content_type[:100]})
        item = decode_item(self.request.body)
        with self.db.transaction() as cursor:  # one INSERT; any error rolls it back
            cursor.execute(INSERT_ITEM, (item.name, item.price_cents, item.tags,
                                         item.owner_email, item.note))
            id_, created_at = cursor.fetchone()
        response = self.json(ItemPublic(id=id_, name=item.name, price_cents=item.price_cents,
                                        tags=item.tags, created_at=created_at), 201)
        response.set_header("Location", f"/items/{id_}")
        return response


@routes.route("/items/{item_id:int}")
class Item(DatabaseHandler):
    def get(self, item_id: int) -> Response:
        with self.db.cursor() as cursor:
            cursor.execute(SELECT_ITEM, (item_id,))
            row = cursor.fetchone()
        if row is None:
            raise HTTPError(404, "no such item", details={"id": item_id})
        return self.json(ItemPublic(*row))
