"""Intake (pure half): bad records become dead letters with reason and source; duplicates drop."""

from __future__ import annotations

import random
import time

from schemas.codec import MAGIC, codec
from schemas.events import Behavior, validate_catalog
from streams.intake import MAX_DEAD_BYTES, Accepted, RawRecord, first_sightings, split

NOW = int(time.time() * 1000)
TOPIC = "aura.events.behavior"


def frame(**over) -> bytes:
    return codec("behavior_event").encode({"event_id": "e1", "event_type": "view", "user_id": "u1",
                                           "item_id": "i1", "event_time": NOW, **over})


def raw(value, offset=0, key=b"u1") -> RawRecord:
    return RawRecord(TOPIC, 3, offset, key, value)


def test_split_sorts_good_from_bad_with_reasons_and_keeps_the_raw_record():
    rng = random.Random(7)
    bad = {
        "truncated": frame()[:-3],
        "random": bytes(rng.getrandbits(8) for _ in range(64)),
        "unknown_fp": MAGIC + b"\xaa" * 8 + frame()[10:],
        "unknown_type": frame(event_type="teleport"),
        "no_user": frame(user_id=None),
        "no_id": frame(event_id=""),
        "future": frame(event_time=NOW + 86400_000),
        "past": frame(event_time=NOW - 3 * 365 * 86400_000),
        "non_utf8": MAGIC + codec("behavior_event").fingerprint + b"\x04\xff\xfe" + frame()[12:],
        "oversized": frame(properties={"x": "y" * 1_100_000}),
        "empty": None,
    }
    records = [raw(frame(), 0)] + [raw(v, i + 1) for i, v in enumerate(bad.values())]
    accepted, dead = split(records, codec("behavior_event"), NOW)
    assert [a.offset for a in accepted] == [0]
    assert isinstance(accepted[0].event, Behavior)
    reasons = {list(bad)[d.record.offset - 1]: d.reason for d in dead}
    assert reasons == {
        "truncated": "undecodable", "random": "bad_frame", "unknown_fp": "unknown_schema",
        "unknown_type": "unknown_event_type", "no_user": "missing_user", "no_id": "bad_event_id",
        "future": "event_time_in_future", "past": "event_time_too_old", "non_utf8": "undecodable",
        "oversized": "oversized", "empty": "empty",
    }
    letter = dead[0].to_avro(NOW)
    assert letter["source_topic"] == TOPIC and letter["source_partition"] == 3 and letter["source_offset"] == 1
    assert letter["value"] == bad["truncated"] and letter["key"] == b"u1" and letter["dead_at"] == NOW
    # an oversized record's raw bytes are cut so the dead letter itself fits in a Kafka request
    big = next(d for d in dead if d.reason == "oversized").to_avro(NOW)
    assert big["value"] == bad["oversized"][:MAX_DEAD_BYTES] and "truncated to 262144 of" in big["detail"]
    # a dead letter is itself a valid record of its schema
    dl = codec("dead_letter")
    assert dl.decode(dl.encode(letter))["value"] == bad["truncated"]


def test_split_with_another_kinds_validator():
    c = codec("catalog_item")
    good = c.encode({"event_id": "c", "event_type": "delete", "item_id": "i", "event_time": NOW})
    bad = c.encode({"event_id": "c", "event_type": "upsert", "item_id": "i", "event_time": NOW})
    accepted, dead = split([raw(good, 0), raw(bad, 1)], c, NOW, validator=validate_catalog)
    assert accepted[0].event.item_id == "i" and [d.reason for d in dead] == ["missing_item_state"]


def test_first_sightings_drops_duplicates_but_keeps_replays_of_the_same_record():
    def acc(eid, offset):
        return Accepted(Behavior(eid, "view", "u1", "i1", NOW), 0, offset)

    batch = [acc("a", 10), acc("b", 11), acc("a", 12), acc("c", 13), acc("d", 14)]
    # "a" is new here (None), "b" was stored by this very record before a crash (replay: keep),
    # "c" was first carried by another record (duplicate), "d" is new
    kept, dupes = first_sightings(batch, [None, "0:11", "0:10", "0:5", None])
    assert [(a.event.event_id, a.offset) for a in kept] == [("a", 10), ("b", 11), ("d", 14)]
    assert dupes == 2
