"""Intake of raw Kafka records: decode, validate, de-duplicate, and dead-letter what is bad.

``split`` is pure: it turns a batch of raw records into accepted events and dead letters (any
event kind: pass the kind's validator). Records are decoded with their times as epoch ms (the
validators want ints; no ``datetime`` round trip). The de-duplication step needs Redis and runs once per
batch (one script of SET NX, streams/behavior.py); ``first_sightings`` is its pure half.
Owns no state; the dead-letter record layout is ``Dead.to_avro`` (schemas/avro/dead_letter.avsc).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from schemas.codec import Codec, DecodeError
from schemas.events import Behavior, InvalidEvent, validate_behavior

MAX_DEAD_BYTES = 262_144      # raw value bytes kept in a dead letter
MAX_DEAD_KEY_BYTES = 4096     # raw key bytes kept in a dead letter


@dataclass(frozen=True, slots=True)
class RawRecord:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None

    @classmethod
    def of(cls, message: Any) -> RawRecord:
        """The raw record of a Faust/aiokafka message (``event.message``)."""
        return cls(message.topic, message.partition, message.offset, message.key, message.value)


@dataclass(frozen=True, slots=True)
class Accepted:
    event: Behavior  # or, with another ``validator`` passed to ``split``, what that validator returns
    partition: int
    offset: int


@dataclass(frozen=True, slots=True)
class Dead:
    record: RawRecord
    reason: str
    detail: str

    def to_avro(self, now_ms: int) -> dict[str, Any]:
        """The dead-letter record. Raw bytes beyond ``MAX_DEAD_BYTES`` are cut (the worker's producer
        refuses requests over 1 MB) and the cut is stated in ``detail``."""
        r = self.record
        detail = self.detail[:2000]
        key, value = r.key, r.value
        if key is not None and len(key) > MAX_DEAD_KEY_BYTES:
            detail += f" [key truncated to {MAX_DEAD_KEY_BYTES} of {len(key)} bytes]"
            key = key[:MAX_DEAD_KEY_BYTES]
        if value is not None and len(value) > MAX_DEAD_BYTES:
            detail += f" [value truncated to {MAX_DEAD_BYTES} of {len(value)} bytes]"
            value = value[:MAX_DEAD_BYTES]
        return {
            "reason": self.reason, "detail": detail, "source_topic": r.topic,
            "source_partition": r.partition, "source_offset": r.offset, "key": key,
            "value": value, "dead_at": now_ms,
        }


def split(records: list[RawRecord], codec: Codec, now_ms: int,
          validator: Callable[[dict[str, Any], int], Any] = validate_behavior) -> tuple[list[Accepted], list[Dead]]:
    """Decode and validate each record; bad ones become ``Dead`` with their reason.

    ``validator`` is the semantic check of the topic's event kind (schemas.events.validate_*).
    """
    accepted: list[Accepted] = []
    dead: list[Dead] = []
    for rec in records:
        try:
            event = validator(codec.decode(rec.value, epoch_ms=True), now_ms)  # type: ignore[arg-type]
        except (DecodeError, InvalidEvent) as exc:
            dead.append(Dead(rec, exc.reason, exc.detail))
            continue
        except Exception as exc:  # noqa: BLE001 - anything else in a record is still its fault
            dead.append(Dead(rec, "invalid_event", f"{type(exc).__name__}: {exc}"))
            continue
        accepted.append(Accepted(event, rec.partition, rec.offset))
    return accepted, dead


def first_sightings(accepted: list[Accepted], seen: list[str | None]) -> tuple[list[Accepted], int]:
    """Keep events whose event_id was first seen at this very record (or not seen before).

    ``seen[i]`` is the "partition:offset" already stored for ``accepted[i].event.event_id`` by
    SET NX (None when this call stored it). A replay of the same record after a crash matches its
    own position and is kept (the state owners fence it); another record with the same id is a
    duplicate and dropped. Duplicates within one batch keep the first.
    """
    kept: list[Accepted] = []
    in_batch: set[str] = set()
    dupes = 0
    for acc, prior in zip(accepted, seen, strict=True):
        eid = acc.event.event_id
        own = f"{acc.partition}:{acc.offset}"
        if (prior is not None and prior != own) or eid in in_batch:
            dupes += 1
            continue
        in_batch.add(eid)
        kept.append(acc)
    return kept, dupes
