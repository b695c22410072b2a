"""The compiled Avro writer writes fastavro's bytes for every schema, takes nothing fastavro refuses,
and leaves the values it does not handle (datetimes, bools for numbers, out-of-range ints, wrong
types) to fastavro through ``Codec.encode``."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest

from schemas.avrowrite import Unsupported, compile_writer
from schemas.codec import DecodeError, codec, schema_names

ODD = [True, 1.5, "x", b"b", 2**70, -(2**40), datetime(2026, 1, 2, tzinfo=UTC), [1], {"k": 1}, ("string", "t"),
       "\ud800", None]


def sample(schema: Any, named: dict[str, Any], rnd: random.Random, depth: int = 0) -> Any:
    """A random value of ``schema``; now and then a value of another type (the mutations)."""
    if rnd.random() < 0.03:
        return rnd.choice(ODD)
    if isinstance(schema, list):
        return sample(rnd.choice(schema), named, rnd, depth)
    if isinstance(schema, str) and schema in named:
        schema = named[schema]
    kind = schema if isinstance(schema, str) else schema["type"]
    if kind == "null":
        return None
    if kind == "boolean":
        return rnd.random() < 0.5
    if kind in ("int", "long"):
        return rnd.choice([0, 1, -1, 63, 64, -65, 2**31 - 1, -(2**31), 2**40, 1_780_000_000_000])
    if kind in ("float", "double"):
        return rnd.choice([0.0, -1.25, 3, 1e300, float("inf")])
    if kind == "string":
        return rnd.choice(["", "a", "é ✓ 漢字", "x" * 70, "u" * 200])
    if kind == "bytes":
        return b"\x00\xff" * rnd.randint(0, 40)
    if kind == "record":
        return {f["name"]: sample(f["type"], named, rnd, depth + 1) for f in schema["fields"]
                if "default" not in f or rnd.random() < 0.7}
    if kind == "array":
        return [sample(schema["items"], named, rnd, depth + 1) for _ in range(rnd.randint(0, 3 if depth < 3 else 0))]
    if kind == "map":
        return {f"k{i}": sample(schema["values"], named, rnd, depth + 1) for i in range(rnd.randint(0, 3))}
    if kind == "enum":
        return rnd.choice(schema["symbols"])
    if kind == "fixed":
        return b"\x01" * schema["size"]
    raise AssertionError(kind)


def fastavro_bytes(schema: Any, record: Any) -> bytes | None:
    buf = io.BytesIO()
    try:
        fastavro.schemaless_writer(buf, schema, record, strict_allow_default=True)
    except Exception:  # noqa: BLE001 - any refusal: the fast path must refuse too
        return None
    return buf.getvalue()


@pytest.mark.parametrize("name", schema_names())
def test_same_bytes_as_fastavro_or_fallback(name: str) -> None:
    c = codec(name)
    try:
        write = compile_writer(c.schema)
    except Unsupported:
        pytest.skip(f"{name}: outside the fast path, fastavro writes every record")
    named = dict(c.schema.get("__named_schemas", {}))
    rnd = random.Random(name)
    fast = 0
    for _ in range(600):
        record = sample(c.schema, named, rnd)
        out = bytearray()
        try:
            write(out, record)
        except (Unsupported, OverflowError):
            continue
        expected = fastavro_bytes(c.schema, record)
        assert expected is not None, (name, record)  # never accepts what fastavro refuses
        assert bytes(out) == expected, (name, record)
        fast += 1
    assert fast > 100  # most plain records take the fast path


def test_codec_falls_back_for_values_outside_the_fast_path() -> None:
    c = codec("behavior_event")
    ev = {"event_id": "e", "event_type": "view", "user_id": "u", "event_time": 1_780_000_000_000}
    assert c.decode(c.encode(ev))["event_time"].timestamp() == 1_780_000_000  # the fast path
    when = datetime(2026, 5, 28, tzinfo=UTC)
    assert c.decode(c.encode(dict(ev, event_time=when)))["event_time"] == when  # a datetime: fastavro
    with pytest.raises(DecodeError, match="invalid_record"):
        c.encode(dict(ev, event_time="yesterday"))
    with pytest.raises(DecodeError, match="invalid_record"):
        c.encode({"event_type": "view"})
