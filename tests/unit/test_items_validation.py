"""Validation in the app layer (app/validation.py), on the demo's model (POST /items):
one typed pass when valid, every error listed when not."""

from __future__ import annotations

import json

import msgspec
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from m2stack.app import HTTPError
from m2stack.app.validation import decode_json, field_errors, parse_unique
from m2stack.demo.items import OWNER_ONLY, ItemIn, ItemPublic


def decode_item(body: bytes) -> ItemIn:
    return decode_json(body, ItemIn, what="item")


def item_errors(data) -> list[dict[str, str]]:
    return field_errors(data, ItemIn)

VALID = {"name": "Tea", "price_cents": 450, "owner_email": "o@example.org"}


def errors_of(body) -> dict[str, str]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(HTTPError) as caught:
        decode_item(raw)
    assert (caught.value.status, caught.value.message) == (422, "invalid item")
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


# -- duplicate keys, and the two passes held to agreeing ------------------------------------

@pytest.mark.parametrize("body", [
    b'{"name": "", "name": "ok", "price_cents": 1, "owner_email": "o@example.org"}',   # invalid, then valid
    b'{"name": "ok", "name": "ok", "price_cents": 1, "owner_email": "o@example.org"}',  # both valid
    b'{"name": "ok", "price_cents": 1, "owner_email": "o@example.org", "tags": [], "tags": ["x"]}',
])
def test_a_repeated_key_is_400_whatever_its_values(body):
    with pytest.raises(HTTPError) as caught:
        decode_item(body)
    assert caught.value.status == 400
    assert caught.value.message == "duplicate key in JSON object"


def test_a_repeated_key_in_a_nested_object_is_400_too():
    with pytest.raises(HTTPError) as caught:
        parse_unique(b'[{"a": 1, "a": 2}]')
    assert caught.value.status == 400 and caught.value.details == {"key": "a"}


GOOD = {"name": ["Tea", "Green tea"], "price_cents": [0, 450], "owner_email": ["o@example.org"],
        "tags": [[], ["green", "a-1"]], "note": ["", "a note"], "colour": ["red"]}  # colour: unknown
odd_values = st.one_of(
    st.text(max_size=12), st.integers(-5, 10**9), st.booleans(), st.none(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.lists(st.sampled_from(["tea", "green", "UPPER", "", "a-1"]), max_size=12),
    st.sampled_from(["Tea", "o@example.org", "nobody", "x" * 101, "tab\there", "nul\x00"]),
)


@st.composite
def item_pairs(draw) -> list[tuple[str, object]]:
    """Mostly well-formed items with a few odd values, sometimes a key named twice."""
    data = dict(VALID)
    for key in draw(st.lists(st.sampled_from(sorted(GOOD)), max_size=4, unique=True)):
        odd = draw(st.integers(0, 3)) == 0
        data[key] = draw(odd_values) if odd else draw(st.sampled_from(GOOD[key]))
    for key in draw(st.lists(st.sampled_from(sorted(VALID)), max_size=2, unique=True)):
        if draw(st.integers(0, 2)) == 0:
            del data[key]
    pairs = list(data.items())
    if draw(st.integers(0, 4)) == 0:
        key = draw(st.sampled_from(sorted(GOOD)))
        pairs.append((key, draw(odd_values | st.sampled_from(GOOD[key]))))
    return pairs


def _raw_object(pairs: list[tuple[str, object]]) -> bytes:
    """JSON text of an object with these pairs in order, repeats kept (json.dumps cannot)."""
    return ("{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}").encode()


@settings(max_examples=400, deadline=None)
@given(item_pairs())
def test_typed_pass_accepts_exactly_when_the_detailed_pass_finds_nothing(pairs):
    body = _raw_object(pairs)
    names = [k for k, _ in pairs]
    try:
        data = parse_unique(body)
    except HTTPError as exc:
        assert exc.status == 400 and len(set(names)) < len(names)
        event("duplicate key")
        with pytest.raises(HTTPError) as caught:
            decode_item(body)
        assert caught.value.status == 400
        return
    detailed = item_errors(data)
    try:
        decode_item(body)
    except HTTPError as exc:
        assert exc.status == 422, exc.details
        assert detailed, "the typed pass refused what the detailed pass found valid"
        assert exc.details["errors"] == detailed
        event("invalid")
    else:
        assert detailed == [], "the typed pass accepted what the detailed pass refused"
        event("valid")
