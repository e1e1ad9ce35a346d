"""A JSON body decoded straight into a typed model (a msgspec `Struct`), with every error listed.

    class ItemIn(msgspec.Struct, forbid_unknown_fields=True):
        name: Annotated[str, Meta(min_length=1)]
        price_cents: Annotated[int, Meta(ge=0)]

    item = self.request.decode(ItemIn)      # in an endpoint: 415, 400 or 422, else an ItemIn

The rules: another content type is 415 (`Request.decode`); malformed JSON, or an object
that names a key twice, 400; a body that does not fit the model, 422 listing every invalid
field with its path (`{"path": "$.tags[1]", "reason": "..."}`).

The body is decoded and validated in ONE pass, in C (`msgspec.json.Decoder(model)`).
msgspec stops at the first error, which is right for the fast path but not for a client
that wants to fix its request at once: only when that pass fails, the body is decoded as
plain JSON and each field of the model is checked on its own against the same annotations
(`msgspec.convert`), collecting every error. Both passes read the same declarations.

A key named twice is refused on every body: msgspec keeps the last value silently, other
parsers the first, so a body that means one thing here and another to the next parser is
refused rather than guessed at.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Hashable
from typing import Any, TypeVar, cast

import msgspec

from m2stack.app.response import HTTPError

T = TypeVar("T")
FieldError = dict[str, str]  # {"path": "$.name", "reason": "..."}


def malformed_json(exc: Exception) -> HTTPError:
    return HTTPError(400, "malformed JSON body", details=str(exc))


@functools.cache  # one decoder per model, built on first use
def _decoder(model: Hashable) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(model)


def decode_json(body: bytes, model: type[T], *, what: str = "body") -> T:
    """`body` as a `model`: 400 if it is not JSON or an object names a key twice, 422
    (`invalid <what>`, details `{"errors": [...]}`) listing every invalid field."""
    try:
        value: T = _decoder(cast(Hashable, model)).decode(body)
        parse_unique(body)  # a key named twice is refused even when the rest is valid
        return value
    except msgspec.ValidationError as exc:
        first = exc
    except (msgspec.DecodeError, UnicodeDecodeError) as exc:  # msgspec raises the latter for bad UTF-8
        raise malformed_json(exc) from None
    data = parse_unique(body)  # after a ValidationError, also the rest of the body
    errors = field_errors(data, model) or [_error("$", first)]
    raise HTTPError(422, f"invalid {what}", details={"errors": errors})


def field_errors(data: Any, model: Any) -> list[FieldError]:
    """Every problem of an already-decoded JSON value as a `model` Struct, field by field.
    Empty when each field is valid on its own (or `model` is not a Struct of named fields:
    then only the typed pass can say what is wrong)."""
    if not (isinstance(model, type) and issubclass(model, msgspec.Struct)) or model.__struct_config__.array_like:
        return []
    if not isinstance(data, dict):
        return [{"path": "$", "reason": f"Expected `object`, got `{type(data).__name__}`"}]
    errors = []
    fields = msgspec.structs.fields(model)
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
    if model.__struct_config__.forbid_unknown_fields:
        known = {field.encode_name for field in fields}
        errors.extend({"path": f"$.{key[:100]}", "reason": "unknown field"}
                      for key in data if key not in known)
    return errors


def _error(path: str, exc: msgspec.ValidationError) -> FieldError:
    """msgspec says "Expected `str`, got `int` - at `$[2]`": re-root the path at the field."""
    reason, _, where = str(exc).partition(" - at `")
    return {"path": path + where.rstrip("`")[1:], "reason": reason}


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise HTTPError(400, "duplicate key in JSON object", details={"key": key[:100]})
            seen.add(key)
    return data


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # json.loads would accept NaN and Infinity


def parse_unique(body: bytes) -> Any:
    """The body as plain JSON, refusing an object that names a key twice (400).

    RFC 8259 leaves duplicate names to the receiver, and receivers differ (first wins,
    last wins, error)."""
    try:
        return json.loads(body, object_pairs_hook=_unique_keys, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError
        raise malformed_json(exc) from None
