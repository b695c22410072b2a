"""HTTP ingest parsing (serving/ingest.py, pure): request bodies -> framed records, or 422/413 with
field-level errors; the request models (serving/routes/events.py) carry exactly the Avro records' fields."""

from __future__ import annotations

import json
import time
from typing import Any

import orjson
import pytest

from schemas.codec import AVRO_DIR, codec
from serving.ingest import IngestError, parse_events
from serving.routes import events as models
from serving.routes.events import BehaviorEventIn, CatalogItemIn, IdentityEventIn

NOW = int(time.time() * 1000)


def ev(**over):
    return {"event_id": "e1", "event_type": "view", "user_id": "u1", "item_id": "i1", "event_time": NOW, **over}


def parse(doc, model=BehaviorEventIn, schema="behavior_event", many=None, max_batch=10, raw=None):
    body = raw if raw is not None else orjson.dumps(doc)
    return parse_events(body, model, many=many, max_batch=max_batch, schema=schema, now_ms=NOW)


def error(doc, **kw) -> IngestError:
    with pytest.raises(IngestError) as exc:
        parse(doc, **kw)
    return exc.value


def test_a_valid_event_becomes_a_keyed_frame_with_receive_time():
    [(key, value)] = parse(ev(), many=False)
    rec = codec("behavior_event").decode(value)
    assert key == b"u1" and rec["event_id"] == "e1" and rec["receive_time"] is not None


def test_iso_event_time_is_converted_to_epoch_ms():
    iso = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(NOW // 1000))
    [(_, value)] = parse(ev(event_time=iso), many=False)
    assert int(codec("behavior_event").decode(value)["event_time"].timestamp()) == NOW // 1000


def test_batch_keys_by_user_or_anonymous_id():
    out = parse([ev(), ev(event_id="e2", user_id=None, anonymous_id="anon")], many=True)
    assert [k for k, _ in out] == [b"u1", b"anon"]


def test_field_errors_of_a_batch_are_all_reported_with_their_position():
    exc = error([ev(), ev(event_id=""), ev(user_id=5), ev(event_type="teleport"), ev(extra_field=1),
                 ev(user_id=None), ev(event_time=NOW + 86400_000), ev(event_type="rating")], many=True)
    assert exc.status == 422
    locs = {(tuple(d["loc"]), d["type"]) for d in exc.detail}
    assert (("body", 1, "event_id"), "string_too_short") in locs
    assert (("body", 2, "user_id"), "string_type") in locs
    assert (("body", 3, "event_type"), "literal_error") in locs
    assert (("body", 4, "extra_field"), "extra_forbidden") in locs
    assert (("body", 5, "user_id"), "missing_user") in locs            # semantic checks, same shape
    assert (("body", 6, "event_time"), "event_time_in_future") in locs
    assert (("body", 7, "value"), "missing_value") in locs
    assert not any(d["loc"][1] == 0 for d in exc.detail)


@pytest.mark.parametrize("body", [b"{not json", b'{"event_id": "\xff\xfe"}', b'"\\ud800"'])
def test_invalid_json_and_non_utf8_are_422(body):
    exc = error(None, raw=body)
    assert exc.status == 422 and exc.detail[0]["type"] == "json_invalid"


def test_lone_surrogate_inside_a_valid_event_is_refused():
    exc = error(None, raw=b'{"event_id": "a\\ud800", "event_type": "view", "user_id": "u", "item_id": "i", '
                          b'"event_time": ' + str(NOW).encode() + b"}")
    assert exc.status == 422


def test_shape_and_size_limits():
    assert error(ev(), many=True).detail[0]["type"] == "list_type"
    assert error([ev()], many=False).detail[0]["type"] == "model_type"
    assert error([], many=True).status == 422
    big = error([ev(event_id=f"e{i}") for i in range(11)], many=True)
    assert big.status == 413 and big.outcome == "too_large"
    assert error(ev(properties={"x": "y" * 70_000}), many=False).status == 422  # per-field limit


def test_wrong_types_nan_and_negative_prices():
    order = {"order_id": "o", "lines": [{"item_id": "a", "quantity": 1, "unit_price": -2}]}
    exc = error(ev(event_type="purchase", order=order), many=False)
    assert exc.detail[0]["loc"] == ["body", "order", "lines", 0, "unit_price"]
    assert error(ev(event_time="yesterday"), many=False).status == 422
    assert error(ev(items="i1"), many=False).detail[0]["loc"] == ["body", "items"]


def test_identity_and_catalog_models():
    ident = {"event_id": "x", "event_type": "update", "user_id": "u1", "event_time": NOW,
             "attributes": {"age": 41, "vip": True, "plan": "gold", "ltv": 10.5, "gone": None}}
    [(key, value)] = parse(ident, model=IdentityEventIn, schema="identity_event")
    assert key == b"u1"
    assert codec("identity_event").decode(value)["attributes"] == ident["attributes"]
    merge = {"event_id": "m", "event_type": "merge", "user_id": "u1", "event_time": NOW}
    assert error(merge, model=IdentityEventIn, schema="identity_event").detail[0]["loc"] == ["body", "anonymous_id"]
    item = {"event_id": "c", "event_type": "upsert", "item_id": "sku-1", "event_time": NOW,
            "item": {"title": "Knife", "price": 9.5, "categories": ["home"], "published_at": NOW}}
    [(key, value)] = parse([item], model=CatalogItemIn, schema="catalog_item")
    assert key == b"sku-1" and codec("catalog_item").decode(value)["item"]["price"] == 9.5
    no_state = {**item, "item": None}
    assert error(no_state, model=CatalogItemIn, schema="catalog_item").detail[0]["loc"] == ["body", "item"]


def avro_records(node: Any, out: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every record of an Avro schema (nested ones too): name -> its field names, in order."""
    if isinstance(node, list):
        for branch in node:
            avro_records(branch, out)
    elif isinstance(node, dict):
        if node.get("type") == "record":
            out[node["name"]] = [f["name"] for f in node["fields"]]
            for f in node["fields"]:
                avro_records(f["type"], out)
        else:
            avro_records(node.get("items"), out)
            avro_records(node.get("values"), out)
    return out


@pytest.mark.parametrize("schema, pairs", [
    ("behavior_event", {"BehaviorEvent": models.BehaviorEventIn, "EventContext": models.Context,
                        "Order": models.Order, "LineItem": models.LineItem}),
    ("identity_event", {"IdentityEvent": models.IdentityEventIn, "Preferences": models.Preferences,
                        "PriceRange": models.PriceRange,
                        "EventContext": models.Context}),
    ("catalog_item", {"CatalogItemEvent": models.CatalogItemIn, "Item": models.ItemIn}),
])
def test_request_models_have_the_avro_records_fields(schema, pairs):
    """The Avro schema is the one definition of an event's fields; the HTTP models add types and limits
    (receive_time is set by the API, never sent by clients)."""
    records = avro_records(json.loads((AVRO_DIR / f"{schema}.avsc").read_text()), {})
    for record, model in pairs.items():
        want = [f for f in records[record] if f != "receive_time"]
        assert list(model.model_fields) == want, record
