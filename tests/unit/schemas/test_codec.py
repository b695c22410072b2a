"""The wire codec: single-object frames byte by byte, old versions, and hostile bytes."""

from __future__ import annotations

import io
import json
import random
import re
import struct
from datetime import UTC, datetime

import fastavro
import fastavro.utils
import pytest

from aura.errors import AuraError
from schemas.codec import AVRO_DIR, MAGIC, Codec, DecodeError, codec, decode_any, schema_fingerprint, schema_names

NOW = 1_790_000_000_000


def event(**over):
    base = {"event_id": "e1", "event_type": "view", "user_id": "u1", "item_id": "i1", "event_time": NOW}
    return {**base, **over}


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO exactly as the Avro specification writes it (independent of fastavro)."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for b in data:
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
    return fp


def zigzag_long(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while n & ~0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def avro_string(s: bytes) -> bytes:
    return zigzag_long(len(s)) + s


def test_frame_is_magic_then_little_endian_crc64_of_the_canonical_form_then_the_body():
    c = codec("behavior_event")
    frame = c.encode(event())
    assert frame[:2] == b"\xc3\x01"
    canonical = fastavro.schema.to_parsing_canonical_form(c.schema).encode()
    assert frame[2:10] == struct.pack("<Q", crc64_avro(canonical))
    body = io.BytesIO()
    fastavro.schemaless_writer(body, c.schema, event())
    assert frame[10:] == body.getvalue()
    # the body starts with event_id then event_type as Avro strings (zig-zag length + UTF-8)
    assert frame[10:].startswith(avro_string(b"e1") + avro_string(b"view"))


def test_roundtrip_fills_defaults():
    rec = codec("behavior_event").decode(codec("behavior_event").encode(event()))
    assert rec["event_id"] == "e1" and rec["items"] == [] and rec["properties"] == {}
    assert rec["campaign_id"] is None and rec["context"]["page"] is None


def test_every_schema_roundtrips_its_own_sample():
    for name in schema_names():
        c = codec(name)
        sample = fastavro.utils.generate_one(c.schema)
        assert isinstance(c.decode(c.encode(sample)), dict)


def test_records_written_with_v1_decode_into_the_current_schema():
    v1 = json.loads((AVRO_DIR / "history" / "behavior_event.v1.avsc").read_text())
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(v1), event(event_time=NOW + 123))
    frame = MAGIC + schema_fingerprint(fastavro.parse_schema(v1)) + body.getvalue()
    c = codec("behavior_event")
    assert schema_fingerprint(fastavro.parse_schema(v1)) != c.fingerprint
    rec = c.decode(frame)
    assert rec["event_id"] == "e1" and rec["campaign_id"] is None and rec["message_id"] is None
    plain = c.decode(frame, epoch_ms=True)
    assert plain["event_time"] == NOW + 123 and plain["campaign_id"] is None


def test_epoch_ms_decode_reads_the_wire_ints_and_otherwise_equals_the_datetime_decode():
    c = codec("behavior_event")
    frame = c.encode(event(event_time=NOW + 123, receive_time=NOW + 999, context={"page": "p"}))
    dated, plain = c.decode(frame), c.decode(frame, epoch_ms=True)
    assert dated["event_time"] == datetime.fromtimestamp((NOW + 123) / 1000, UTC)
    assert plain["event_time"] == NOW + 123 and plain["receive_time"] == NOW + 999
    assert type(plain["event_time"]) is int
    assert {k: v for k, v in dated.items() if k not in ("event_time", "receive_time")} == \
        {k: v for k, v in plain.items() if k not in ("event_time", "receive_time")}
    assert c.decode(c.encode(event(receive_time=None)), epoch_ms=True)["receive_time"] is None
    for name in schema_names():  # every schema's frames decode either way
        other = codec(name)
        sample = other.encode(fastavro.utils.generate_one(other.schema))
        assert other.decode(sample, epoch_ms=True).keys() == other.decode(sample).keys()


def reason(data) -> str:
    with pytest.raises(DecodeError) as exc:
        codec("behavior_event").decode(data)
    return exc.value.reason


def test_truncated_frames_are_rejected_at_every_length():
    frame = codec("behavior_event").encode(event(context={"page": "home"}, properties={"a": "b"}))
    for n in range(len(frame)):
        assert reason(frame[:n]) in {"bad_frame", "undecodable", "empty"}, n


def test_random_bytes_raise_decode_error_only():
    rng = random.Random(42)
    c = codec("behavior_event")
    fp = c.fingerprint
    for i in range(3000):
        junk = bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 200)))
        data = MAGIC + fp + junk if i % 2 else junk
        try:
            c.decode(data)
        except DecodeError as exc:
            assert exc.reason in {"bad_frame", "undecodable", "trailing_bytes", "unknown_schema"}


def test_unknown_fingerprint_and_other_schemas_are_refused():
    assert reason(MAGIC + b"\x01" * 8 + b"\x02a") == "unknown_schema"
    # a valid frame of another schema is not a behavior event
    other = codec("catalog_item").encode({"event_id": "e", "event_type": "delete", "item_id": "i", "event_time": 1})
    assert reason(other) == "unknown_schema"
    assert decode_any(other)[0] == "catalog_item"


def test_confluent_framing_and_json_are_bad_frames_with_a_useful_detail():
    with pytest.raises(DecodeError) as exc:
        codec("behavior_event").decode(b"\x00\x00\x00\x00\x2a" + b"\x02a")
    assert exc.value.reason == "bad_frame" and "registry schema id 42" in exc.value.detail
    assert reason(json.dumps(event()).encode()) == "bad_frame"
    assert reason(None) == "empty"


def test_oversized_payload_is_refused_before_decoding():
    c = Codec("behavior_event", max_bytes=1000)
    big = c.encode(event(properties={"blob": "x" * 2000}))
    with pytest.raises(DecodeError) as exc:
        c.decode(big)
    assert exc.value.reason == "oversized"


def test_non_utf8_strings_are_undecodable():
    fp = codec("behavior_event").fingerprint
    body = avro_string(b"\xff\xfe-bad") + avro_string(b"view") + b"\x02" + avro_string(b"u")
    assert reason(MAGIC + fp + body + b"\x00" * 40) == "undecodable"


def test_trailing_bytes_are_refused():
    assert reason(codec("behavior_event").encode(event()) + b"\x00") == "trailing_bytes"


def test_wrong_types_are_refused_at_encode():
    c = codec("behavior_event")
    for bad in (event(event_time="yesterday"), event(user_id=7), event(value="5"), {"event_type": "view"}):
        with pytest.raises(DecodeError) as exc:
            c.encode(bad)
        assert exc.value.reason == "invalid_record"


def test_strict_validate_catches_what_encode_lets_through():
    c = codec("behavior_event")
    # fastavro's writer iterates a string given for an array: encode "succeeds" with ['i', '1']
    assert c.decode(c.encode(event(items="i1")))["items"] == ["i", "1"]
    with pytest.raises(DecodeError) as exc:
        c.validate(event(items="i1"))
    assert exc.value.reason == "invalid_record" and "items" in exc.value.detail
    c.validate(event(items=["i1"]))


def test_validate_gives_the_raising_validator_verdict_on_demo_events_and_broken_copies():
    # the boolean pass decides, the raising pass words the error: same verdicts as the raising one alone
    from fastavro.validation import ValidationError
    from fastavro.validation import validate as fa_validate

    from aura.demo import Storefront

    c = codec("behavior_event")
    shop = Storefront(seed=5, n_users=50)
    rng = random.Random(3)
    evs = [ev for _ in range(40) for ev in shop.session(1_700_000_000_000)][:300]
    broken = []
    for ev in evs[:100]:
        bad = dict(ev)
        field = rng.choice(["user_id", "event_time", "items", "value", "item_id", "context"])
        bad[field] = rng.choice([7, "x", ["a", 1], {"k": object()}, 1.5])
        broken.append(bad)
    for rec in evs + broken:
        try:
            fa_validate(rec, c.schema, raise_errors=True, strict=True)
            expected = True
        except ValidationError:
            expected = False
        try:
            c.validate(rec)
            got = True
        except DecodeError as exc:
            assert exc.reason == "invalid_record" and exc.detail
            got = False
        assert got == expected, rec
    assert sum(1 for r in broken if not _valid(c, r)) > 50  # the broken copies are mostly refused


def _valid(c: Codec, rec: dict) -> bool:
    try:
        c.validate(rec)
        return True
    except DecodeError:
        return False


def test_the_documented_frame_and_fingerprints_are_what_the_codec_writes():
    doc = (AVRO_DIR.parent.parent / "docs" / "events.md").read_text()
    frame = codec("behavior_event").encode({"event_id": "e1", "event_type": "view", "user_id": "u1",
                                            "item_id": "i9", "event_time": 1790000000000})
    block = doc.split("A real `view` event", 1)[1].split("```", 2)[1]
    documented = bytes.fromhex("".join(re.findall(r"^((?:[0-9a-f]{2} )*[0-9a-f]{2})\s{2,}", block, re.M)))
    assert documented == frame and len(frame) == 51
    for name in ("behavior_event", "identity_event", "catalog_item", "experiment_exposure", "campaign_delivery",
                 "dead_letter"):
        row = next(line for line in doc.splitlines()
                   if line.startswith(f"| `{name}` | `") and re.search(r"`[0-9a-f]{16}`", line))
        current, *released = re.findall(r"`([0-9a-f]{16})`", row)
        assert bytes.fromhex(current) == codec(name).fingerprint, name
        assert {bytes.fromhex(r) for r in released} | {codec(name).fingerprint} == set(codec(name).writers), name


def test_decode_error_is_an_aura_error_and_still_a_value_error():
    assert issubclass(DecodeError, AuraError) and issubclass(DecodeError, ValueError)
