"""POST /items validation: one typed pass when valid, every error listed when not."""

from __future__ import annotations

import json

import msgspec
import pytest

from m2stack.app import HTTPError
from m2stack.demo.items import OWNER_ONLY, ItemIn, ItemPublic, decode_item, item_errors

VALID = {"name": "Tea", "price_cents": 450, "owner_email": "o@example.org"}


def errors_of(body) -> dict[str, str]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(HTTPError) as caught:
        decode_item(raw)
    assert caught.value.status == 422
    return {e["path"]: e["reason"] for e in caught.value.details["errors"]}


def test_valid_body_decodes_with_defaults():
    item = decode_item(json.dumps(VALID).encode())
    assert item == ItemIn(name="Tea", price_cents=450, owner_email="o@example.org", tags=[], note="")


def test_public_view_has_no_owner_only_field():
    public = {f.name for f in msgspec.structs.fields(ItemPublic)}
    assert {f.name for f in msgspec.structs.fields(ItemIn)} >= OWNER_ONLY
    assert not public & OWNER_ONLY


def test_every_invalid_field_is_listed_with_its_path():
    errors = errors_of({"name": "", "price_cents": 1.5, "tags": ["ok", "UPPER"], "note": 3,
                        "extra": True, "more": None})
    assert errors == {
        "$.name": "Expected `str` of length >= 1",
        "$.price_cents": "Expected `int`, got `float`",
        "$.owner_email": "required field missing",
        "$.tags[1]": "Expected `str` matching regex '^[a-z0-9][a-z0-9-]*$'",
        "$.note": "Expected `str`, got `int`",
        "$.extra": "unknown field",
        "$.more": "unknown field",
    }


@pytest.mark.parametrize("field, value, reason", [
    ("price_cents", -1, "Expected `int` >= 0"),
    ("price_cents", 100_000_001, "Expected `int` <= 100000000"),
    ("price_cents", "5", "Expected `int`, got `str`"),   # strict: no coercion
    ("price_cents", True, "Expected `int`, got `bool`"),
    ("name", "x" * 101, "Expected `str` of length <= 100"),
    ("name", "tab\there", None),                        # control characters refused
    ("note", "nul\x00", None),                          # PostgreSQL text cannot hold NUL
    ("owner_email", "not-an-email", None),
    ("tags", ["a"] * 11, "Expected `array` of length <= 10"),
    ("tags", "tea", "Expected `array`, got `str`"),
])
def test_field_constraints(field, value, reason):
    errors = errors_of(dict(VALID, **{field: value}))
    assert list(errors) == [f"$.{field}"]
    if reason:
        assert errors[f"$.{field}"] == reason


def test_not_an_object_is_one_error_at_the_root():
    assert errors_of([VALID]) == {"$": "Expected `object`, got `list`"}
    assert errors_of(b"null") == {"$": "Expected `object`, got `NoneType`"}


@pytest.mark.parametrize("body", [b"", b"{", b'{"name": "x",', b"\xff", b'{"price_cents": -1, "name": }'])
def test_malformed_json_is_400_even_after_a_type_error(body):
    with pytest.raises(HTTPError) as caught:
        decode_item(body)
    assert caught.value.status == 400


def test_both_passes_agree_on_valid_input():
    assert item_errors(VALID) == []
    assert item_errors(dict(VALID, tags=["a-1", "b"], note="")) == []
