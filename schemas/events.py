"""Events as the stream sees them: the accepted types of every event kind, the semantic checks
that follow Avro decoding (ids present, known type, plausible event time, sane sizes), the
partition key of each kind, and the event-time lateness rules shared by every windowed state.

Pure functions over plain data; the stream, the producer helper and the HTTP ingest all call the
``validate_*`` functions (``validate(name, record, now_ms)`` dispatches by schema name).
Owns no state.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from aura.errors import AuraError
from schemas.validation import MAX_MONEY, MAX_NUMBER, MAX_QUANTITY, MAX_RATING

BEHAVIOR_TYPES = frozenset({
    "view", "click", "add_to_cart", "remove_from_cart", "purchase", "rating", "search",
    "impression", "recommendation_click", "message_open", "message_click", "custom",
})
ITEM_REQUIRED = frozenset({"view", "click", "add_to_cart", "remove_from_cart", "rating", "recommendation_click"})

MAX_ID_LEN = 256
MAX_IMPRESSION_ITEMS = 500
MAX_FUTURE_MS = 5 * 60 * 1000            # client clocks may run a little ahead
MAX_PAST_MS = 400 * 24 * 3600 * 1000     # replays of history up to ~13 months are accepted


class InvalidEvent(AuraError, ValueError):
    """A decoded record that violates the event contract; ``reason`` is a short code."""

    def __init__(self, reason: str, detail: str = "", field: str | None = None) -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail
        self.field = field  # the offending field (dotted path), for HTTP 422 answers


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


def check_event_time(value: datetime | int, now_ms: int, max_past_ms: int | None = MAX_PAST_MS) -> int:
    """``value`` as epoch ms if it is plausible (not too far ahead of ``now_ms`` nor behind it)."""
    ts = to_millis(value)
    if ts > now_ms + MAX_FUTURE_MS:
        raise InvalidEvent("event_time_in_future", f"{ts - now_ms} ms ahead", "event_time")
    if max_past_ms is not None and ts < now_ms - max_past_ms:
        raise InvalidEvent("event_time_too_old", f"{now_ms - ts} ms behind", "event_time")
    return ts


def validate_behavior(record: dict[str, Any], now_ms: int, *, max_past_ms: int = MAX_PAST_MS) -> Behavior:
    """Check a decoded record and return its ``Behavior``; raises InvalidEvent."""
    event_type = record.get("event_type")
    if event_type not in BEHAVIOR_TYPES:
        raise InvalidEvent("unknown_event_type", repr(event_type)[:80], "event_type")
    event_id = record.get("event_id") or ""
    if not event_id or len(event_id) > MAX_ID_LEN:
        raise InvalidEvent("bad_event_id", "missing or longer than 256 characters", "event_id")
    user_id = record.get("user_id") or record.get("anonymous_id")
    if not user_id:
        raise InvalidEvent("missing_user", "user_id or anonymous_id is required", "user_id")
    if len(user_id) > MAX_ID_LEN:
        raise InvalidEvent("bad_user_id", "longer than 256 characters", "user_id")
    item_id = record.get("item_id")
    if item_id is not None and (not item_id or len(item_id) > MAX_ID_LEN):
        raise InvalidEvent("bad_item_id", "empty or longer than 256 characters", "item_id")
    if event_type in ITEM_REQUIRED and not item_id:
        raise InvalidEvent("missing_item", f"{event_type} needs item_id", "item_id")
    ts = check_event_time(record["event_time"], now_ms, max_past_ms)
    items = tuple(record.get("items") or ())
    if len(items) > MAX_IMPRESSION_ITEMS:
        raise InvalidEvent("too_many_items", f"{len(items)} > {MAX_IMPRESSION_ITEMS}", "items")
    revenue = 0.0
    order = record.get("order")
    order_id = None
    if event_type == "purchase":
        if not order or not order.get("lines"):
            raise InvalidEvent("missing_order", "purchase needs an order with line items", "order")
        order_id = order["order_id"]
        for line in order["lines"]:
            if not 0 < line["quantity"] <= MAX_QUANTITY or not 0 <= line["unit_price"] <= MAX_MONEY:
                raise InvalidEvent("bad_line_item", f"quantity {line['quantity']} (1 to {MAX_QUANTITY}) price "
                                   f"{line['unit_price']} (0 to {MAX_MONEY:g})", "order.lines")
            revenue += line["quantity"] * line["unit_price"]
    value = record.get("value")
    if event_type == "rating" and value is None:
        raise InvalidEvent("missing_value", "rating needs value", "value")
    if value is not None and not (math.isfinite(value) and abs(value) <= MAX_RATING):
        raise InvalidEvent("bad_value", f"{value} is not a finite number within +-{MAX_RATING:g}", "value")
    context = record.get("context") or {}
    return Behavior(
        event_id=event_id, event_type=event_type, user_id=user_id, item_id=item_id, event_time=ts,
        value=value, items=items, revenue=round(revenue, 6), order_id=order_id,
        placement=context.get("placement"), raw=record,
    )


# ---------------------------------------------------------------------------------------------
# Identity and profile events (events.identity, keyed by user_id)

IDENTITY_TYPES = frozenset({"create", "update", "preferences", "merge", "erase"})
MAX_ATTRIBUTES = 200
MAX_ATTRIBUTE_KEY = 128
MAX_TEXT = 65_536          # free text (attribute values, item text) in characters
MAX_LIST = 200             # categories, tags, blocked items, channels
# the sections of a preferences event (each merged into the stored ones unless ``replace`` names it)
PREFERENCE_SECTIONS = frozenset({"channels", "categories", "blocked_items", "locale", "brands", "price_range"})


@dataclass(frozen=True, slots=True)
class Identity:
    """A profile change: ``user_id`` is the known user (for merge, the target of ``anonymous_id``)."""

    event_id: str
    event_type: str
    user_id: str
    event_time: int
    anonymous_id: str | None = None
    attributes: dict[str, Any] = field(default_factory=dict)
    preferences: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def _check_id(record: dict[str, Any], name: str, reason: str, required: bool = True) -> str | None:
    value = record.get(name)
    if value is None or value == "":
        if required:
            raise InvalidEvent(reason, f"{name} is required", name)
        return None
    if not isinstance(value, str) or len(value) > MAX_ID_LEN:
        raise InvalidEvent(reason, f"{name} must be a string of at most {MAX_ID_LEN} characters", name)
    return value


def _check_list(values: Any, name: str, limit: int = MAX_LIST) -> list[Any]:
    values = list(values or ())
    if len(values) > limit:
        raise InvalidEvent("too_many_values", f"{len(values)} > {limit}", name)
    return values


def validate_identity(record: dict[str, Any], now_ms: int, *, max_past_ms: int | None = MAX_PAST_MS) -> Identity:
    """Check a decoded identity event and return its ``Identity``; raises InvalidEvent."""
    event_type = record.get("event_type")
    if event_type not in IDENTITY_TYPES:
        raise InvalidEvent("unknown_event_type", repr(event_type)[:80], "event_type")
    event_id = _check_id(record, "event_id", "bad_event_id")
    user_id = _check_id(record, "user_id", "missing_user")
    anonymous_id = _check_id(record, "anonymous_id", "bad_anonymous_id", required=event_type == "merge")
    if event_type == "merge" and anonymous_id == user_id:
        raise InvalidEvent("bad_merge", "anonymous_id equals user_id", "anonymous_id")
    ts = check_event_time(record["event_time"], now_ms, max_past_ms)
    attributes = dict(record.get("attributes") or {})
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidEvent("too_many_values", f"{len(attributes)} attributes > {MAX_ATTRIBUTES}", "attributes")
    for key, value in attributes.items():
        if not key or len(key) > MAX_ATTRIBUTE_KEY:
            raise InvalidEvent("bad_attribute", f"key {key[:40]!r} empty or longer than {MAX_ATTRIBUTE_KEY}",
                               "attributes")
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise InvalidEvent("bad_attribute", f"{key}: longer than {MAX_TEXT} characters", f"attributes.{key}")
        if isinstance(value, int | float) and not isinstance(value, bool) and not (
                math.isfinite(value) and abs(value) <= MAX_NUMBER):
            raise InvalidEvent("bad_attribute", f"{key}: {value} is not finite within +-{MAX_NUMBER:g}",
                               f"attributes.{key}")
    if event_type == "update" and not attributes:
        raise InvalidEvent("missing_attributes", "update needs attributes", "attributes")
    preferences = record.get("preferences")
    if event_type == "preferences":
        if not preferences:
            raise InvalidEvent("missing_preferences", "preferences event needs preferences", "preferences")
        _check_list(preferences.get("channels"), "preferences.channels")
        _check_list(preferences.get("blocked_items"), "preferences.blocked_items", MAX_IMPRESSION_ITEMS)
        for what in ("categories", "brands"):
            for name, affinity in _check_list((preferences.get(what) or {}).items(), f"preferences.{what}"):
                if not (isinstance(affinity, int | float) and math.isfinite(affinity) and -1.0 <= affinity <= 1.0):
                    raise InvalidEvent("bad_preference", f"{what} {name!r} affinity {affinity} not in [-1, 1]",
                                       f"preferences.{what}")
        band = preferences.get("price_range") or {}
        lo, hi = band.get("min"), band.get("max")
        for end, v in (("min", lo), ("max", hi)):
            if v is not None and not (math.isfinite(v) and v >= 0):
                raise InvalidEvent("bad_preference", f"price_range.{end} {v} is not a finite price >= 0",
                                   f"preferences.price_range.{end}")
        if lo is not None and hi is not None and lo > hi:
            raise InvalidEvent("bad_preference", f"price_range.min {lo} > max {hi}", "preferences.price_range")
        unknown = set(preferences.get("replace") or ()) - PREFERENCE_SECTIONS
        if unknown:
            raise InvalidEvent("bad_preference", f"replace names unknown sections {sorted(unknown)[:5]}",
                               "preferences.replace")
    return Identity(event_id=event_id, event_type=event_type, user_id=user_id, event_time=ts,  # type: ignore[arg-type]
                    anonymous_id=anonymous_id, attributes=attributes, preferences=preferences, raw=record)


# ---------------------------------------------------------------------------------------------
# Catalog events (catalog.items, compacted, keyed by item_id)

CATALOG_TYPES = frozenset({"upsert", "delete"})


@dataclass(frozen=True, slots=True)
class CatalogChange:
    """An item upsert (``item`` is its full state) or delete (``item`` is None)."""

    event_id: str
    event_type: str
    item_id: str
    event_time: int
    item: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def validate_catalog(record: dict[str, Any], now_ms: int, *, max_past_ms: int | None = None) -> CatalogChange:
    """Check a decoded catalog event; old event times are accepted (catalog backfills)."""
    event_type = record.get("event_type")
    if event_type not in CATALOG_TYPES:
        raise InvalidEvent("unknown_event_type", repr(event_type)[:80], "event_type")
    event_id = _check_id(record, "event_id", "bad_event_id")
    item_id = _check_id(record, "item_id", "missing_item")
    ts = check_event_time(record["event_time"], now_ms, max_past_ms)
    item = record.get("item")
    if event_type == "delete":
        item = None
    else:
        if not item:
            raise InvalidEvent("missing_item_state", "upsert needs item", "item")
        if not (item.get("title") or "").strip() or len(item["title"]) > 1024:
            raise InvalidEvent("bad_title", "title is empty or longer than 1024 characters", "item.title")
        price = item.get("price")
        if price is not None and not 0 <= price <= MAX_MONEY:  # NaN and infinities fail this too
            raise InvalidEvent("bad_price", f"price {price}", "item.price")
        stock = item.get("stock")
        if stock is not None and stock < 0:
            raise InvalidEvent("bad_stock", f"stock {stock}", "item.stock")
        _check_list(item.get("categories"), "item.categories", 50)
        _check_list(item.get("tags"), "item.tags")
        if len(item.get("text") or "") > MAX_TEXT:
            raise InvalidEvent("text_too_long", f"longer than {MAX_TEXT} characters", "item.text")
    return CatalogChange(event_id=event_id, event_type=event_type, item_id=item_id, event_time=ts,  # type: ignore[arg-type]
                         item=item, raw=record)


# ---------------------------------------------------------------------------------------------
# Decisions: experiment exposures and campaign deliveries (decisions topic, keyed by user id)

CHANNELS = frozenset({"email", "push", "sms", "in_app"})
DELIVERY_STATUSES = frozenset({"sent", "delivered", "bounced", "failed", "suppressed"})


@dataclass(frozen=True, slots=True)
class Exposure:
    event_id: str
    user_id: str  # user_id, else anonymous_id
    experiment_id: str
    variant_id: str
    event_time: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Delivery:
    event_id: str
    user_id: str
    campaign_id: str
    message_id: str
    channel: str
    status: str
    event_time: int
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


def validate_exposure(record: dict[str, Any], now_ms: int, *, max_past_ms: int | None = MAX_PAST_MS) -> Exposure:
    event_id = _check_id(record, "event_id", "bad_event_id")
    user_id = _check_id(record, "user_id", "missing_user", required=False) or _check_id(
        record, "anonymous_id", "missing_user")
    experiment_id = _check_id(record, "experiment_id", "missing_experiment")
    variant_id = _check_id(record, "variant_id", "missing_variant")
    ts = check_event_time(record["event_time"], now_ms, max_past_ms)
    return Exposure(event_id, user_id, experiment_id, variant_id, ts, raw=record)  # type: ignore[arg-type]


def validate_delivery(record: dict[str, Any], now_ms: int, *, max_past_ms: int | None = MAX_PAST_MS) -> Delivery:
    event_id = _check_id(record, "event_id", "bad_event_id")
    user_id = _check_id(record, "user_id", "missing_user")
    campaign_id = _check_id(record, "campaign_id", "missing_campaign")
    message_id = _check_id(record, "message_id", "missing_message")
    if record.get("channel") not in CHANNELS:
        raise InvalidEvent("unknown_channel", repr(record.get("channel"))[:80], "channel")
    if record.get("status") not in DELIVERY_STATUSES:
        raise InvalidEvent("unknown_status", repr(record.get("status"))[:80], "status")
    _check_list(record.get("items"), "items", MAX_IMPRESSION_ITEMS)
    ts = check_event_time(record["event_time"], now_ms, max_past_ms)
    return Delivery(event_id, user_id, campaign_id, message_id, record["channel"], record["status"],  # type: ignore[arg-type]
                    ts, raw=record)


# ---------------------------------------------------------------------------------------------
# Dispatch by schema name, and partition keys

VALIDATORS: dict[str, Callable[..., Any]] = {
    "behavior_event": validate_behavior,
    "identity_event": validate_identity,
    "catalog_item": validate_catalog,
    "experiment_exposure": validate_exposure,
    "campaign_delivery": validate_delivery,
}


def validate(schema: str, record: dict[str, Any], now_ms: int) -> Any:
    """Validate a decoded record of schema ``schema``; raises InvalidEvent (KeyError: not an event)."""
    return VALIDATORS[schema](record, now_ms)


def partition_key(schema: str, record: dict[str, Any]) -> bytes:
    """The Kafka key of an event: the item id for catalog events, the user id (else the anonymous id)
    for everything else, so that one user's (or item's) events stay in order in one partition."""
    if schema == "catalog_item":
        return str(record["item_id"]).encode()
    return str(record.get("user_id") or record.get("anonymous_id") or "").encode()


# ---------------------------------------------------------------------------------------------
# Event time: watermark and allowed lateness

ALLOWED_LATENESS_MS = 10 * 60 * 1000  # default; must stay >= MAX_FUTURE_MS (see docs/events.md)


class Lateness(StrEnum):
    ON_TIME = "on_time"    # at or after the watermark
    LATE = "late"          # behind the watermark, but its window is still open: applied, window re-emitted
    TOO_LATE = "too_late"  # its window is final: not applied to windowed state; durable totals only


def advance_watermark(watermark: int | None, event_time: int, now_ms: int | None = None) -> int:
    """The watermark after seeing ``event_time``: the largest event time seen, never ahead of ``now_ms``
    (a client clock running fast must not close windows early)."""
    t = event_time if now_ms is None else min(event_time, now_ms)
    return t if watermark is None else max(watermark, t)


def window_start(event_time: int, window_ms: int) -> int:
    """Start of the tumbling window of size ``window_ms`` (epoch-aligned) holding ``event_time``."""
    return event_time - event_time % window_ms


def window_closed(window_end: int, watermark: int | None, allowed_lateness_ms: int = ALLOWED_LATENESS_MS) -> bool:
    """A window [start, end) is final once the watermark passed its end by the allowed lateness."""
    return watermark is not None and watermark >= window_end + allowed_lateness_ms


def lateness(event_time: int, watermark: int | None, window_ms: int = 60_000,
             allowed_lateness_ms: int = ALLOWED_LATENESS_MS) -> Lateness:
    """Classify one event against the watermark for tumbling windows of ``window_ms``."""
    if watermark is None or event_time >= watermark:
        return Lateness.ON_TIME
    end = window_start(event_time, window_ms) + window_ms
    return Lateness.TOO_LATE if window_closed(end, watermark, allowed_lateness_ms) else Lateness.LATE


@dataclass
class LatenessSplit:
    """A batch sorted by lateness, and the watermark after it."""

    on_time: list[Any] = field(default_factory=list)
    late: list[Any] = field(default_factory=list)
    too_late: list[Any] = field(default_factory=list)
    watermark: int | None = None


def split_by_lateness(events: Iterable[Any], watermark: int | None, now_ms: int, window_ms: int = 60_000,
                      allowed_lateness_ms: int = ALLOWED_LATENESS_MS,
                      time_of: Callable[[Any], int] = lambda e: e.event_time) -> LatenessSplit:
    """Classify a batch in arrival order (each event against the watermark left by those before it).

    Keep one watermark per source partition (events are keyed, so a partition is one ordered
    stream); the watermark of the state is the minimum over its partitions.
    """
    out = LatenessSplit(watermark=watermark)
    for ev in events:
        t = time_of(ev)
        kind = lateness(t, out.watermark, window_ms, allowed_lateness_ms)
        (out.on_time if kind is Lateness.ON_TIME else out.late if kind is Lateness.LATE else out.too_late).append(ev)
        out.watermark = advance_watermark(out.watermark, t, now_ms)
    return out
