"""Dead letters made usable: read them back (``aura deadletter tail``) and re-drive chosen ones through
the normal intake after a fix (``aura deadletter replay``), each exactly once.

A dead letter (``schemas/avro/dead_letter.avsc``) keeps the reason, the source topic, partition and
offset, the key and the raw bytes. ``tail`` decodes them with a preview of the raw record (its
decoded fields when it is a known Avro frame, else printable text or hex). ``replay`` produces the
raw bytes again, with the original key, to the original topic, where the worker's intake validates,
de-duplicates and folds them like any record:

- exactly once per dead letter: a marker per dead letter (``deadletter_replayed``, keyed by its own
  partition and offset in the dead-letter topic) is set before producing (``pending``) and marked
  ``done`` once Kafka acknowledged; a second replay skips ``done`` letters, and a ``pending`` one (a
  crash in between) is produced again, which the intake's event-id de-duplication absorbs;
- an event the intake accepted and the fold then refused (``fold_failed``) is remembered by the
  event-id de-duplication: its ``event_seen`` mark is removed before the replay, so the replayed copy
  is folded instead of being dropped as a duplicate.

Counts per reason are on the API (``GET /v1/stats``, ``/metrics``: ``aura_deadletters``).
"""

from __future__ import annotations

import string
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from aura import layout
from aura.errors import AuraError
from aura.keys import RedisKeys
from aura.settings import Settings
from schemas.codec import DecodeError, codec, decode_any

PREVIEW_CHARS = 160


class ReplayError(AuraError):
    """A replay that could not be completed (Kafka did not acknowledge)."""


@dataclass(frozen=True, slots=True)
class Letter:
    partition: int  # in the dead-letter topic
    offset: int
    reason: str
    detail: str
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes | None
    dead_at_ms: int

    @property
    def ref(self) -> str:
        """``partition:offset`` of the letter in the dead-letter topic (what ``replay --letter`` takes)."""
        return f"{self.partition}:{self.offset}"

    def preview(self) -> str:
        return preview(self.value)


def preview(value: bytes | None) -> str:
    """A short human view of raw bytes: the decoded record, else printable text, else hex."""
    if value is None:
        return "<empty value>"
    try:
        name, rec = decode_any(value)
        text = f"{name} " + ", ".join(f"{k}={v!r}" for k, v in rec.items() if v not in (None, [], {}, ""))
    except DecodeError:
        head = value[:PREVIEW_CHARS].decode("utf-8", "replace")
        printable = sum(c in string.printable for c in head) >= 0.9 * max(len(head), 1)
        text = repr(head) if printable else value[:PREVIEW_CHARS // 2].hex()
    return text if len(text) <= PREVIEW_CHARS else text[:PREVIEW_CHARS - 3] + "..."


def _consumer(s: Settings) -> Consumer:
    return Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": f"aura-deadletter-{uuid.uuid4().hex}",
                     "enable.auto.commit": False, "auto.offset.reset": "earliest",
                     "fetch.message.max.bytes": 2_000_000})


def read(s: Settings, last: int | None = None, reason: str | None = None, timeout_s: float = 10.0
         ) -> Iterator[Letter]:
    """The dead letters now in the topic (the ``last`` per partition when given), oldest first per
    partition, optionally only those of ``reason``."""
    topic = layout.topic(s, layout.DEADLETTER)
    consumer = _consumer(s)
    dead_codec = codec("dead_letter")
    try:
        meta = consumer.list_topics(topic, timeout=timeout_s).topics[topic]
        assign, ends = [], {}
        for p in meta.partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout_s)
            if high > low:
                start = max(low, high - last) if last is not None else low
                assign.append(TopicPartition(topic, p, start))
                ends[p] = high
        if not assign:
            return
        consumer.assign(assign)
        done: set[int] = set()
        deadline = time.monotonic() + timeout_s
        while len(done) < len(ends) and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None or msg.error():
                continue
            if msg.offset() >= ends[msg.partition()] - 1:
                done.add(msg.partition())
            d = dead_codec.decode(msg.value())
            if reason is not None and d["reason"] != reason:
                continue
            dead_at = d["dead_at"]
            yield Letter(msg.partition(), msg.offset(), d["reason"], d.get("detail", ""), d["source_topic"],
                         d["source_partition"], d["source_offset"], d.get("key"), d.get("value"),
                         int(dead_at.timestamp() * 1000) if hasattr(dead_at, "timestamp") else int(dead_at))
    finally:
        consumer.close()


@dataclass
class ReplayReport:
    replayed: list[str]
    skipped: list[str]  # replayed before (exactly once)
    unreplayable: list[str]  # nothing to replay (no value)


def replay(s: Settings, redis: Any, letters: list[Letter], producer: Producer | None = None,
           dry_run: bool = False) -> ReplayReport:
    """Produce each letter's raw record again to its source topic, exactly once per letter."""
    keys = RedisKeys(s.redis.prefix)
    report = ReplayReport([], [], [])
    producer = producer or Producer({"bootstrap.servers": s.kafka.bootstrap, "enable.idempotence": True})
    behavior_codec = codec("behavior_event")
    for letter in letters:
        marker = keys.deadletter_replayed(letter.partition, letter.offset)
        if letter.value is None:
            report.unreplayable.append(letter.ref)
            continue
        if redis.get(marker) == "done":
            report.skipped.append(letter.ref)
            continue
        if dry_run:
            report.replayed.append(letter.ref)
            continue
        redis.set(marker, "pending")
        if letter.reason == "fold_failed":  # accepted once by the intake: forget that sighting
            try:
                event_id = behavior_codec.decode(letter.value).get("event_id")
            except DecodeError:
                event_id = None
            if event_id:
                redis.delete(keys.event_seen(event_id))
        errors: list[str] = []

        def delivered(err: Any, _msg: Any, errors: list[str] = errors) -> None:
            if err is not None:
                errors.append(str(err))

        producer.produce(letter.source_topic, key=letter.key, value=letter.value, on_delivery=delivered)
        if producer.flush(30) or errors:
            raise ReplayError(f"Kafka did not acknowledge the replay of {letter.ref}: {errors or 'timeout'}")
        redis.set(marker, "done", ex=int(layout.DEADLETTER.retention_ms or 0) // 1000 or None)
        report.replayed.append(letter.ref)
    return report
