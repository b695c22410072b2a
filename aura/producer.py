"""The Python producer helper for clients: validates, encodes (Avro single-object), keys by user,
batches through confluent-kafka, and reports delivery errors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from aura import layout
from aura.settings import Settings
from schemas.codec import codec
from schemas.events import validate_behavior


@dataclass
class DeliveryStats:
    queued: int = 0
    delivered: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)


class EventProducer:
    """Produce behavior events; call ``flush`` before exit. Invalid events raise before queueing."""

    def __init__(self, settings: Settings, producer: Any) -> None:
        self.producer = producer
        self.topic = layout.topic(settings, layout.BEHAVIOR)
        self.codec = codec("behavior_event")
        self.stats = DeliveryStats()

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is None:
            self.stats.delivered += 1
        else:
            self.stats.failed += 1
            if len(self.stats.errors) < 100:
                self.stats.errors.append(str(err))

    def encode(self, event: dict[str, Any], now_ms: int | None = None) -> tuple[bytes, bytes]:
        """Validate and frame one event; returns (key, value)."""
        now_ms = now_ms or int(time.time() * 1000)
        event.setdefault("receive_time", now_ms)
        value = self.codec.encode(event)
        checked = validate_behavior(self.codec.decode(value), now_ms)
        return checked.user_id.encode(), value

    def send(self, event: dict[str, Any]) -> None:
        key, value = self.encode(event)
        self.send_raw(key, value)

    def send_raw(self, key: bytes, value: bytes) -> None:
        while True:
            try:
                self.producer.produce(self.topic, value=value, key=key, on_delivery=self._on_delivery)
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
