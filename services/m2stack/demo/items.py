"""POST /items and GET /items/{id}: validation the DictShield way, with msgspec.

DictShield's ideas, kept: a typed document class over plain JSON, database agnostic;
field constraints declared on the class; `make_json_ownersafe` / `make_json_publicsafe`
become separate view Structs (`ItemPublic` has no owner-only field, so it cannot leak one).

Decoding: the request body is decoded and validated in ONE pass, in C, straight into an
`ItemIn` (`msgspec.json.Decoder(ItemIn)`). msgspec stops at the first error, which is
right for the fast path but not for a client that wants to fix its request at once, so
only when that pass fails, `item_errors` checks each field of the plain JSON on its own
against the same annotations (`msgspec.convert`), collecting every error with its path.
Both passes read the same declarations; a property test holds them to agreeing.

Duplicate keys are refused (400): msgspec would keep the last value without a word, and
other parsers keep the first. The plain-JSON parse that finds them runs on every body.

Unknown fields are rejected (422, "unknown field"), as DictShield's strict validation did:
a typo in an optional field name would otherwise be silently dropped.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from m2stack.app import HTTPError, Response, Router
from m2stack.app.request import malformed_json
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
_decode_item = msgspec.json.Decoder(ItemIn).decode


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


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise HTTPError(400, "duplicate key in JSON object", details={"key": duplicate[:100]})
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # json.loads would accept NaN and Infinity


def parse_unique(body: bytes) -> Any:
    """The body as plain JSON, refusing an object that names a key twice (400).

    RFC 8259 leaves duplicate names to the receiver, and receivers differ (first wins,
    last wins, error): a body that means one thing here and another to the next parser
    is refused rather than guessed at. msgspec keeps the last value silently, so this
    check runs on every body, valid or not.
    """
    try:
        return json.loads(body, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise malformed_json(exc) from None


def decode_item(body: bytes) -> ItemIn:
    """ItemIn from a JSON body; 400 if not JSON or a key repeats, 422 listing every
    invalid field."""
    try:
        item: ItemIn | None = _decode_item(body)
    except msgspec.ValidationError:
        item = None
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec raises the latter for bad UTF-8
        raise malformed_json(exc) from None
    data = parse_unique(body)  # after a ValidationError, also the rest of the body
    if item is not None:
        return item
    errors = item_errors(data)
    if not errors:  # both passes read the same Struct (a property test holds them to it)
        errors = [{"path": "$", "reason": "invalid"}]
    raise HTTPError(422, "invalid item", details={"errors": errors})


SELECT_ITEM = "SELECT id, name, price_cents, tags, created_at FROM items WHERE id = %s"
INSERT_ITEM = ("INSERT INTO items (name, price_cents, tags, owner_email, note)"
               " VALUES (%s, %s, %s, %s, %s) RETURNING id, created_at")


@routes.route("/items")
class Items(DatabaseEndpoint):
    def post(self) -> Response:
        self.request.expect_json()
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
class Item(DatabaseEndpoint):
    def get(self, item_id: int) -> Response:
        with self.db.cursor() as cursor:
            cursor.execute(SELECT_ITEM, (item_id,))
            row = cursor.fetchone()
        if row is None:
            raise HTTPError(404, "no such item", details={"id": item_id})
        return self.json(ItemPublic(*row))
