"""Behavior events as the stream sees them: the accepted types and the semantic checks that follow
Avro decoding (ids present, known type, plausible event time, sane sizes).

Pure functions over plain data; the stream and the HTTP ingest both call ``validate_behavior``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

BEHAVIOR_TYPES = frozenset({
    "view", "click", "add_to_cart", "remove_from_cart", "purchase", "rating", "search",
    "impression", "recommendation_click", "message_open", "message_click", "custom",
})
ITEM_REQUIRED = frozenset({"view", "click", "add_to_cart", "remove_from_cart", "rating", "recommendation_click"})

MAX_ID_LEN = 256
MAX_IMPRESSION_ITEMS = 500
MAX_FUTURE_MS = 5 * 60 * 1000            # client clocks may run a little ahead
MAX_PAST_MS = 400 * 24 * 3600 * 1000     # replays of history up to ~13 months are accepted


class InvalidEvent(ValueError):
    """A decoded record that violates the event contract; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Behavior:
    """The fields of a behavior event the state owners use, event time in epoch ms."""

    event_id: str
    event_type: str
    user_id: str
    item_id: str | None
    event_time: int
    value: float | None = None
    items: tuple[str, ...] = ()
    revenue: float = 0.0
    order_id: str | None = None
    placement: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def to_millis(value: datetime | int) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(value)


def validate_behavior(record: dict[str, Any], now_ms: int, *, max_past_ms: int = MAX_PAST_MS) -> Behavior:
    """Check a decoded record and return its ``Behavior``; raises InvalidEvent."""
    event_type = record.get("event_type")
    if event_type not in BEHAVIOR_TYPES:
        raise InvalidEvent("unknown_event_type", repr(event_type)[:80])
    event_id = record.get("event_id") or ""
    if not event_id or len(event_id) > MAX_ID_LEN:
        raise InvalidEvent("bad_event_id", "missing or longer than 256 characters")
    user_id = record.get("user_id") or record.get("anonymous_id")
    if not user_id:
        raise InvalidEvent("missing_user", "user_id or anonymous_id is required")
    if len(user_id) > MAX_ID_LEN:
        raise InvalidEvent("bad_user_id", "longer than 256 characters")
    item_id = record.get("item_id")
    if item_id is not None and (not item_id or len(item_id) > MAX_ID_LEN):
        raise InvalidEvent("bad_item_id", "empty or longer than 256 characters")
    if event_type in ITEM_REQUIRED and not item_id:
        raise InvalidEvent("missing_item", f"{event_type} needs item_id")
    ts = to_millis(record["event_time"])
    if ts > now_ms + MAX_FUTURE_MS:
        raise InvalidEvent("event_time_in_future", f"{ts - now_ms} ms ahead")
    if ts < now_ms - max_past_ms:
        raise InvalidEvent("event_time_too_old", f"{now_ms - ts} ms behind")
    items = tuple(record.get("items") or ())
    if len(items) > MAX_IMPRESSION_ITEMS:
        raise InvalidEvent("too_many_items", f"{len(items)} > {MAX_IMPRESSION_ITEMS}")
    revenue = 0.0
    order = record.get("order")
    order_id = None
    if event_type == "purchase":
        if not order or not order.get("lines"):
            raise InvalidEvent("missing_order", "purchase needs an order with line items")
        order_id = order["order_id"]
        for line in order["lines"]:
            if line["quantity"] <= 0 or line["unit_price"] < 0:
                raise InvalidEvent("bad_line_item", f"quantity {line['quantity']} price {line['unit_price']}")
            revenue += line["quantity"] * line["unit_price"]
    value = record.get("value")
    if event_type == "rating" and value is None:
        raise InvalidEvent("missing_value", "rating needs value")
    context = record.get("context") or {}
    return Behavior(
        event_id=event_id, event_type=event_type, user_id=user_id, item_id=item_id, event_time=ts,
        value=value, items=items, revenue=round(revenue, 6), order_id=order_id,
        placement=context.get("placement"), raw=record,
    )
