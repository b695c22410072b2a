"""The Python producer helper for clients: validates, encodes (Avro single-object), keys by user
(or by item for catalog events), batches through confluent-kafka, and reports delivery errors.

One ``EventProducer`` sends every event kind to its topic:

==================== ================== ==================
schema               topic              key
==================== ================== ==================
behavior_event       events.behavior    user id (else anonymous id)
identity_event       events.identity    user id
catalog_item         catalog.items      item id
experiment_exposure  decisions          user id (else anonymous id)
campaign_delivery    decisions          user id
==================== ================== ==================

Owns no state beyond its delivery counters (``stats``). Invalid events raise ``InvalidEvent`` (or
``DecodeError`` for a record the schema rejects) before anything is queued.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aura import layout
from aura.settings import Settings
from schemas.codec import codec
from schemas.events import partition_key, validate, validate_behavior

TOPIC_OF_SCHEMA: dict[str, layout.TopicSpec] = {
    "behavior_event": layout.BEHAVIOR,
    "identity_event": layout.IDENTITY,
    "catalog_item": layout.CATALOG,
    "experiment_exposure": layout.DECISIONS,
    "campaign_delivery": layout.DECISIONS,
}


@dataclass
class DeliveryStats:
    queued: int = 0
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)  # the first 100 delivery errors, "topic key: error"


class EventProducer:
    """Produce events of every kind; call ``flush`` before exit. Invalid events raise before queueing.

    ``on_error(err, msg)`` (optional) is called for every failed delivery, from ``poll``/``flush``.
    """

    def __init__(self, settings: Settings, producer: Any,
                 on_error: Callable[[Any, Any], None] | None = None) -> None:
        self.producer = producer
        self.topic = layout.topic(settings, layout.BEHAVIOR)
        self.topics = {name: layout.topic(settings, spec) for name, spec in TOPIC_OF_SCHEMA.items()}
        self.codec = codec("behavior_event")
        self.stats = DeliveryStats()
        self.on_error = on_error

    def _on_delivery(self, err: Any, msg: Any) -> None:
        if err is None:
            self.stats.delivered += 1
            return
        self.stats.failed += 1
        if len(self.stats.errors) < 100:
            where = f"{msg.topic()} {msg.key()!r}" if msg is not None else "?"
            self.stats.errors.append(f"{where}: {err}")
        if self.on_error is not None:
            self.on_error(err, msg)

    def encode(self, event: dict[str, Any], now_ms: int | None = None) -> tuple[bytes, bytes]:
        """Validate and frame one behavior event; returns (key, value)."""
        now_ms = now_ms or int(time.time() * 1000)
        event.setdefault("receive_time", now_ms)
        self.codec.validate(event)  # strict types first: the semantic checks below rely on them
        checked = validate_behavior(event, now_ms)
        return checked.user_id.encode(), self.codec.encode(event)

    def encode_as(self, schema: str, event: dict[str, Any], now_ms: int | None = None, *,
                  typed: bool = False) -> tuple[str, bytes, bytes]:
        """Validate and frame one event of ``schema``; returns (topic, key, value).

        ``typed``: the caller built every field with the schema's types itself (the import's row
        mapping, jobs/importer.py), so the strict type pass (about 40 % of the cost) is skipped; the
        semantic checks and the encoder's own type errors still apply."""
        if schema not in TOPIC_OF_SCHEMA:
            raise ValueError(f"not an event schema: {schema!r}")
        now_ms = now_ms or int(time.time() * 1000)
        event.setdefault("receive_time", now_ms)
        c = codec(schema)
        if not typed:
            c.validate(event)  # strict types first: the semantic checks below rely on them
        validate(schema, event, now_ms)
        return self.topics[schema], partition_key(schema, event), c.encode(event)

    def send(self, event: dict[str, Any]) -> None:
        """Send one behavior event."""
        key, value = self.encode(event)
        self.send_raw(key, value)

    def send_as(self, schema: str, event: dict[str, Any]) -> None:
        """Send one event of any kind (``schema``: a key of ``TOPIC_OF_SCHEMA``)."""
        topic, key, value = self.encode_as(schema, event)
        self.send_raw(key, value, topic)

    def send_identity(self, event: dict[str, Any]) -> None:
        self.send_as("identity_event", event)

    def send_catalog(self, event: dict[str, Any]) -> None:
        self.send_as("catalog_item", event)

    def send_exposure(self, event: dict[str, Any]) -> None:
        self.send_as("experiment_exposure", event)

    def send_delivery(self, event: dict[str, Any]) -> None:
        self.send_as("campaign_delivery", event)

    def send_raw(self, key: bytes, value: bytes, topic: str | None = None) -> None:
        """Queue an already framed record (default topic: behavior)."""
        while True:
            try:
                self.producer.produce(topic or self.topic, value=value, key=key, on_delivery=self._on_delivery)
                break
            except BufferError:
                self.producer.poll(0.05)  # local queue full: let deliveries drain
        self.stats.queued += 1
        self.producer.poll(0)

    def flush(self, timeout: float = 30.0) -> DeliveryStats:
        remaining = self.producer.flush(timeout)
        if remaining:
            self.stats.failed += remaining
            self.stats.errors.append(f"{remaining} events still queued after {timeout}s")
        return self.stats
