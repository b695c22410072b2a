"""The edge's validation layer (schemas/validation.py): strict decoding, bounded free-form objects,
valid Unicode, and the pydantic types' bounds."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ValidationError

from schemas.validation import (
    BODY_LIMITS,
    BoundedObject,
    Context,
    Id,
    InvalidValue,
    Money,
    Quantity,
    check_json,
    strict_loads,
)


@pytest.mark.parametrize("raw", [b"NaN", b"[Infinity]", b'{"a": -Infinity}', b"1e400", b"-1e400", b'"\\ud800"',
                                 b'{"k": "x\\udfff"}', b"\xff\xfe", b"[" * 2000 + b"]" * 2000, b"{"])
def test_strict_loads_refuses_what_the_system_cannot_hold(raw):
    with pytest.raises(InvalidValue) as exc:
        strict_loads(raw)
    detail = exc.value.detail()
    assert detail[0]["loc"][0] == "body" and detail[0]["type"] == "json_invalid"


def test_strict_loads_keeps_valid_json_including_surrogate_pairs():
    assert strict_loads(b'{"e": "\\ud83d\\ude00", "n": 1e308, "i": 123456789012345678901}')["e"] == "\U0001f600"


@pytest.mark.parametrize("value,kind,where", [
    ({"a": {"b": "\ud800"}}, "string_unicode", ("a", "b")),
    ({"a": float("nan")}, "finite_number", ("a",)),
    ({"a": 1e16}, "finite_number", ("a",)),
    ({"x": "y" * 5000}, "string_too_long", ("x",)),
    ({"d": [[[[[[[[[[0]]]]]]]]]]}, "too_deep", ("d", 0, 0, 0, 0, 0, 0, 0)),
    ({f"k{i}": i for i in range(3000)}, "too_large", None),
    ({"\udc00": 1}, "string_unicode", ()),
    ({"b": b"bytes"}, "type_error", ("b",)),
])
def test_check_json_names_the_path_of_what_it_refuses(value, kind, where):
    with pytest.raises(InvalidValue) as exc:
        check_json(value)
    assert exc.value.kind == kind
    if where is not None:
        assert exc.value.loc == where


def test_a_large_but_legal_object_passes_and_body_limits_are_wider():
    doc = {"content": {"banner": "x" * 4000, "n": [1, 2.5, None, True]}, "w": 1e15}
    assert check_json(doc) == doc
    assert check_json({"a": 1e300}, BODY_LIMITS)


class Model(BaseModel):
    id: Id
    price: Money
    qty: Quantity
    doc: BoundedObject = {}
    context: Context = {}


def test_the_types_refuse_out_of_bounds_values_naming_the_field():
    ok = Model(id="a", price=10.5, qty=2, doc={"a": [1]}, context={"visits": 3, "device": "ios", "vip": True})
    assert ok.context == {"visits": 3, "device": "ios", "vip": True}
    for bad, field in [({"id": "x\ud800"}, "id"), ({"price": 1e10}, "price"), ({"price": float("inf")}, "price"),
                       ({"qty": 0}, "qty"), ({"qty": 10**7}, "qty"), ({"doc": {"a": {"b": "\udfff"}}}, "doc"),
                       ({"context": {"x": 1e300}}, "context"),
                       ({"context": {f"k{i}": 1 for i in range(65)}}, "context")]:
        with pytest.raises(ValidationError) as exc:
            Model(**{"id": "a", "price": 1, "qty": 1, **bad})
        assert exc.value.errors()[0]["loc"][0] == field, (bad, exc.value.errors())
    with pytest.raises(ValidationError) as exc:
        Model(id="a", price=1, qty=1, doc={"a": {"b": {"c": "\ud800"}}})
    assert "a.b.c" in exc.value.errors()[0]["msg"]
