"""The compact stored form of a profile (one Redis string per user) and the idle sweep's pure step."""

from __future__ import annotations

import struct

import msgpack
import pytest

from schemas.events import Behavior
from streams import lifecycle, profiles
from streams.intake import Accepted
from streams.profiles import ItemAttrs, Profile, ProfileConfig, fold_user, pack, unpack

DAY = 24 * 3600 * 1000
T0 = 1_790_000_000_000
CFG = ProfileConfig(rules={"buyer": [["orders", ">=", 1]], "engaged": [["engagement", ">=", 60]],
                           "gone": [["stage", "==", "churned"]]})
ITEMS = {f"item-{i}": ItemAttrs(f"category-{i % 3}", f"brand-{i % 4}", 10.0 + 40 * i) for i in range(8)}


def ev(off: int, etype: str, t: int, item: str | None, part: int = 0, **raw) -> Accepted:
    revenue = 0.0
    if etype == "purchase":
        raw.setdefault("order", {"lines": [{"item_id": item, "quantity": 3, "unit_price": 19.99}]})
        revenue = sum(x["quantity"] * x["unit_price"] for x in raw["order"]["lines"])
    ctx = raw.pop("context", {})
    b = Behavior(event_id=f"e{off}", event_type=etype, user_id="u", item_id=item, event_time=t, value=raw.get("value"),
                 revenue=revenue, placement=ctx.get("placement"), raw={"context": ctx, **raw})
    return Accepted(b, part, off)


def busy_profile() -> Profile:
    p = Profile()
    long_sid = "0f8fad5b-d9cb-469f-a165-70867728950e"
    fold_user(p, [
        ev(7_000_000_000, "impression", T0, None, context={"placement": "homepage", "session_id": long_sid}),
        ev(7_000_000_001, "recommendation_click", T0 + 10, "item-1", context={"placement": "homepage",
           "session_id": long_sid}, recommendation_id="rec-123", experiment_id="exp", variant_id="B"),
        ev(7_000_000_002, "view", T0 + 20, "item-2", context={"page": "product", "session_id": long_sid}),
        ev(7_000_000_003, "purchase", T0 + 30, "item-2", context={"page": "checkout", "session_id": long_sid}),
        ev(5, "rating", T0 + 3 * DAY, "item-5", part=11, value=4.5),
        ev(6, "custom", T0 + 4 * DAY, None, part=11),
        ev(8, "view", T0 + 4 * DAY + 5, "item-7", part=11),  # a gap session (no session id)
        ev(9, "view", T0 - DAY, "item-3", part=11),  # out of order
    ], CFG, ITEMS.get)
    p.counts["a-new-action-type"] = 3  # an action unknown to the code table is stored by name
    p.aff["~odd:key"] = profiles.f32(0.25)
    p.version = 41
    return p


def test_round_trip_is_exact_for_a_folded_profile():
    p = busy_profile()
    assert p.session_id.startswith("g") and p.last_rec.startswith(str(T0 + 10))
    q = unpack(pack(p))
    assert q == p
    assert pack(q) == pack(p)


def test_round_trip_of_long_session_ids_idle_stage_and_an_empty_profile():
    p = busy_profile()
    p.session_id = profiles.session_key("x" * 40)
    p.idle = "churned"
    assert p.session_id.startswith("#") and len(p.session_id) == 17
    assert unpack(pack(p)) == p
    assert unpack(None) == Profile() and unpack(b"") == Profile()
    one = Profile()
    fold_user(one, [ev(0, "view", T0, "item-1")], CFG, ITEMS.get)
    assert unpack(pack(one)) == one


def test_version_head_and_wrap():
    p = busy_profile()
    raw = pack(p)
    assert raw[:4] == profiles.version_head(41) == struct.pack(">I", 41)
    assert profiles.version_head(None) == b"" and profiles.version_head(0) == b""
    assert profiles.next_version(0) == 1 and profiles.next_version(2**32 - 1) == 1
    assert profiles.lua_args(None, p) == [b"", raw]


def test_a_busy_profile_is_small():
    """The reason for the format: a user with 8 events over 4 sessions, 7 action types, 5 recent items,
    10 affinity keys, a recommendation click and two source partitions fits in ~320 bytes of value
    (the three hashes and the list of the first version took ~1 KB in Redis for less)."""
    p = busy_profile()
    assert len(p.aff) == 10 and len(p.recent) == 5
    assert len(pack(p)) < 340, len(pack(p))


def test_unknown_format_is_refused():
    raw = pack(busy_profile())
    with pytest.raises(ValueError, match="format"):
        unpack(raw[:4] + msgpack.packb([7, [], []]))


def test_durable_document_and_rule_fields():
    p = busy_profile()
    p.idle = "at-risk"
    doc = profiles.durable_doc(p)
    q = profiles.from_durable(p.counts, p.first_seen, p.last_seen, p.recent, doc)
    q.fences, q.version = p.fences, p.version
    assert q == p
    fields = profiles.rule_fields(p)
    assert fields["count.view"] == "3" and fields["orders"] == "1" and fields["ltv"] == repr(p.ltv)
    assert fields["first_seen"] == str(T0 - DAY) and fields["a:category:category-2"]


def test_sweep_step_marks_idle_users_and_reevaluates_segments_as_of_now():
    p = busy_profile()
    last = p.last_seen
    assert not lifecycle.sweep_user(p, last + DAY, CFG)  # not idle: nothing changes
    assert lifecycle.sweep_user(p, last + 15 * DAY, CFG)
    assert p.idle == "at-risk" and "buyer" in p.segments and "engaged" not in p.segments
    assert not lifecycle.sweep_user(p, last + 16 * DAY, CFG)  # idempotent
    assert lifecycle.sweep_user(p, last + 31 * DAY, CFG)
    assert p.idle == "churned" and "gone" in p.segments
    # an event clears the idle stage; the fold's own stage is reactivated after the churn gap
    fold_user(p, [ev(100, "view", last + 32 * DAY, "item-1", part=11)], CFG, ITEMS.get)
    assert p.idle == "" and p.stage == "reactivated" and "gone" not in p.segments


def test_sweep_engaged_user_leaves_engaged_when_idle():
    p = Profile()
    fold_user(p, [ev(i, "purchase", T0 + i, "item-1") for i in range(10)], CFG, ITEMS.get)
    assert "engaged" in p.segments
    assert not lifecycle.sweep_user(p, p.last_seen + 13 * DAY, CFG)  # not idle yet: event-time segments
    assert "engaged" in p.segments
    assert lifecycle.sweep_user(p, p.last_seen + 31 * DAY, CFG)  # engagement decayed to now: ~64 -> ~21
    assert "engaged" not in p.segments and p.idle == "churned"
