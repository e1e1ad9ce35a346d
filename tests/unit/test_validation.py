"""`request.decode(Model)` (app/validation.py) on models of a team's own: the rules hold
for any msgspec Struct, not only the demo's item (tests/unit/test_items_validation.py)."""

from __future__ import annotations

import json
from typing import Annotated

import msgspec
import pytest

from m2stack.app import App, Endpoint, HTTPError, Request, decode_json
from m2stack.app.validation import field_errors


class Address(msgspec.Struct, forbid_unknown_fields=True):
    city: Annotated[str, msgspec.Meta(min_length=1)]
    zip_code: Annotated[str, msgspec.Meta(pattern=r"^\d{5}$")]


class Order(msgspec.Struct, forbid_unknown_fields=True, rename="camel"):
    order_id: Annotated[int, msgspec.Meta(ge=1)]
    ship_to: Address
    quantities: list[Annotated[int, msgspec.Meta(ge=1)]] = []


class Lenient(msgspec.Struct):
    name: str


app = App(hub_name="test", front_door="unit")


@app.route("/orders")
class Orders(Endpoint):
    def post(self):
        order = self.request.decode(Order, what="order")
        return self.json({"order_id": order.order_id, "city": order.ship_to.city}, 201)


def post(body: bytes, content_type: str = "application/json"):
    request = Request.from_raw("POST", b"/orders", b"", {"content-type": content_type}, body)
    response = app.handle(request)
    return response.status, json.loads(response.body)


GOOD = {"orderId": 7, "shipTo": {"city": "Lyon", "zip_code": "69001"}}


def test_a_valid_body_is_the_model():
    assert post(json.dumps(GOOD).encode()) == (201, {"order_id": 7, "city": "Lyon"})
    assert post(json.dumps(GOOD).encode(), "Application/JSON; charset=utf-8")[0] == 201


@pytest.mark.parametrize("content_type", ["text/plain", "", "application/jsonx", "multipart/form-data"])
def test_another_content_type_is_415(content_type):
    status, body = post(json.dumps(GOOD).encode(), content_type)
    assert status == 415 and body["error"]["message"] == "expected Content-Type: application/json"


@pytest.mark.parametrize("raw", [b"", b"{", b"\xff", b'{"orderId": NaN}', b'{"orderId": 1, "orderId": 2}'])
def test_malformed_json_or_a_repeated_key_is_400(raw):
    status, body = post(raw)
    assert status == 400, body


def test_every_invalid_field_is_listed_with_its_path_nested_and_renamed():
    bad = {"orderId": 0, "shipTo": {"city": "", "zip_code": "x", "planet": "Mars"},
           "quantities": [1, 0, "2"], "colour": "red"}
    status, body = post(json.dumps(bad).encode())
    assert status == 422 and body["error"]["message"] == "invalid order"
    errors = {e["path"]: e["reason"] for e in body["error"]["details"]["errors"]}
    assert errors == {  # one reason per top-level field: the first found inside it
        "$.orderId": "Expected `int` >= 1",
        "$.shipTo.city": "Expected `str` of length >= 1",
        "$.quantities[1]": "Expected `int` >= 1",
        "$.colour": "unknown field",
    }


def test_unknown_fields_are_fine_when_the_model_allows_them():
    assert decode_json(b'{"name": "x", "extra": 1}', Lenient) == Lenient(name="x")
    assert field_errors({"name": 3, "extra": 1}, Lenient) == [{"path": "$.name", "reason": "Expected `str`, got `int`"}]


def test_a_model_that_is_not_a_struct_still_gets_one_error_with_its_path():
    with pytest.raises(HTTPError) as caught:
        decode_json(b'[{"name": "a"}, {"name": 2}]', list[Lenient])
    assert caught.value.status == 422
    assert caught.value.details == {"errors": [{"path": "$[1].name", "reason": "Expected `str`, got `int`"}]}
