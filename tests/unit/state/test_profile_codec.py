"""The stored forms of a profile: the compact Redis string (one per user) and the Cassandra document.

Contract tests: every slot of the Redis array survives a round trip, the bytes written today stay
readable (literal fixtures), and the Cassandra document reads back to the same profile."""

from __future__ import annotations

import dataclasses
import struct

import msgpack
import pytest

from aura.keys import RedisKeys
from aura.state import profile_codec, profiles
from aura.state.profile_codec import pack, unpack
from aura.state.profiles import ItemAttrs, Profile, ProfileConfig
from schemas.events import Behavior
from streams.intake import Accepted
from streams.profiles import fold_user, lua_args

DAY = 24 * 3600 * 1000
T0 = 1_790_000_000_000
CFG = ProfileConfig(rules={"buyer": [["orders", ">=", 1]], "engaged": [["engagement", ">=", 60]],
                           "gone": [["stage", "==", "churned"]]})
ITEMS = {f"item-{i}": ItemAttrs(f"category-{i % 3}", f"brand-{i % 4}", 10.0 + 40 * i) for i in range(8)}

# A profile with every field set to a value other than its default (one slot of the array each).
FULL = Profile(
    counts={"view": 3, "purchase": 1, "a-new-action": 2}, first_seen=T0 - DAY, last_seen=T0 + 400_000,
    recent=["i2", "i1"], fences={0: 17, 11: 5}, version=41, sessions=2, session_id="s-7",
    session_start=T0 + 300_000, path=["homepage", "product"], orders=1, ltv=59.97, eng=12.5, eng_t=T0 + 390_000,
    aff={"category:books": 1.5, "brand:acme": -0.5, "price:0-25": 2.0, "~odd": 0.25}, aff_t=T0 + 350_000,
    stage="reactivated", stage_at=T0 + 200_000, last_rec=f"{T0 + 390_000}|rec-1|exp|B|homepage",
    segments=["buyer", "vip"], idle="at-risk")
# ``FULL`` and ``SMALL`` as stored by the format's first writer: these bytes must stay readable.
FULL_STORED = (
    b'\x00\x00\x00)\xdc\x00\x15\x01\x94\x00\x11\x0b\x05\x96\x00\x03\x04\x01\xaca-n'
    b'ew-action\x02\xcf\x00\x00\x01\xa0\xc4V\x86\x80\xce\x05,'
    b'v\x80\x92\xa2i2\xa2i1\x02\xa3s-7\xce\x00\x01\x86\xa0\x92\xa8h'
    b'omepage\xa7product\x01\xce\x03\x93\x11\xd0\xcd'
    b"'\x10\xcd\xc3P\x94\xa6cbooks\xa5bacme\xa5p0"
    b'-25\xa5~~odd\xc4\x14\x00\x00HA\x00\x00\xc0?\x00\x00\x00'
    b"\xbf\x00\x00\x00@\x00\x00\x80>\x03\xce\x00\x03\r@\x95\xcd'\x10\xa5re"
    b'c-1\xa3exp\xa1B\xa8homepage\x92\xa5bu'
    b'yer\xa3vip\x04'
)
SMALL = Profile(counts={"view": 1}, first_seen=T0, last_seen=T0, recent=["i1"], fences={3: 9}, version=1,
                sessions=1, session_id=f"g{T0}", session_start=T0, stage="new", stage_at=T0, eng=1.0, eng_t=T0)
SMALL_STORED = (  # trailing default slots dropped: 18 of 21
    b'\x00\x00\x00\x01\xdc\x00\x12\x01\x92\x03\t\x92\x00\x01\xcf\x00\x00\x01\xa0\xc4Pl'
    b'\x00\x00\x91\xa2i1\x01\xc0\x00\x90\x00\x00\x00\xc0\x90\xc4\x04\x00\x00\x80?\x01'
    b'\x00'
)
FULL_DOC = {
    "sessions": "2", "sid": "s-7", "sst": "1790000300000", "path": "homepage>product", "orders": "1",
    "ltv": "59.97", "eng": "12.5", "eng_t": "1790000390000", "aff_t": "1790000350000", "stage": "reactivated",
    "stage_at": "1790000200000", "lrec": "1790000390000|rec-1|exp|B|homepage", "seg": "buyer,vip",
    "idle": "at-risk", "a:category:books": "1.5", "a:brand:acme": "-0.5", "a:price:0-25": "2.0", "a:~odd": "0.25",
}
FIELDS = [f.name for f in dataclasses.fields(Profile)]


def test_every_field_of_the_full_fixture_is_set():
    empty = Profile()
    assert [f for f in FIELDS if getattr(FULL, f) == getattr(empty, f)] == []


def test_round_trip_keeps_every_slot():
    raw = pack(FULL)
    body = msgpack.unpackb(raw[4:])
    assert len(body) == profile_codec.FIELDS == 21
    defaults = profile_codec._DEFAULTS
    assert [i for i in range(21) if profile_codec._is_default(body[i], defaults[i])] == [0]  # only the format
    q = unpack(raw)
    for f in FIELDS:
        assert getattr(q, f) == getattr(FULL, f), f
    assert pack(q) == raw


@pytest.mark.parametrize("name", [f for f in FIELDS if f != "last_seen"])
def test_each_field_alone_survives(name):
    """One field set (and last_seen, the base of the relative times): the trailing-default trimming
    keeps it, and nothing else appears."""
    p = Profile(last_seen=FULL.last_seen, **{name: getattr(FULL, name)})
    q = unpack(pack(p))
    assert q == p, name


def test_bytes_written_by_the_first_format_still_read():
    assert unpack(FULL_STORED) == FULL
    assert unpack(SMALL_STORED) == SMALL
    assert pack(FULL) == FULL_STORED and pack(SMALL) == SMALL_STORED  # and are written the same


def test_durable_document_round_trip_and_format():
    doc = profile_codec.durable_doc(FULL)
    assert doc == FULL_DOC
    q = profile_codec.from_durable(FULL.counts, FULL.first_seen, FULL.last_seen, FULL.recent, doc)
    q.fences, q.version = FULL.fences, FULL.version  # the fences and version live in Redis only
    assert q == FULL
    assert profile_codec.from_durable({}, None, None, [], {}) == Profile()


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
    assert raw[:4] == profile_codec.version_head(41) == struct.pack(">I", 41)
    assert profile_codec.version_head(None) == b"" and profile_codec.version_head(0) == b""
    assert profile_codec.next_version(0) == 1 and profile_codec.next_version(2**32 - 1) == 1
    assert lua_args(None, p) == [b"", raw]


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
    doc = profile_codec.durable_doc(p)
    q = profile_codec.from_durable(p.counts, p.first_seen, p.last_seen, p.recent, doc)
    q.fences, q.version = p.fences, p.version
    assert q == p
    fields = profile_codec.rule_fields(p)
    assert fields["count.view"] == "3" and fields["orders"] == "1" and fields["ltv"] == repr(p.ltv)
    assert fields["first_seen"] == str(T0 - DAY) and fields["a:category:category-2"]


class _Redis:
    """A synchronous client or pipeline, as far as the read/write helpers use one."""

    def __init__(self) -> None:
        self.data: dict[str, bytes] = {}
        self.calls: list[tuple] = []

    def set(self, key: str, value: bytes) -> None:
        self.data[key] = value

    def execute_command(self, *args, **options):
        self.calls.append((args, options))
        return self.data.get(args[1])


def test_read_helpers_use_raw_bytes():
    keys, r = RedisKeys("t"), _Redis()
    assert profile_codec.read_sync(r, keys, "u") is None
    profile_codec.write_sync(r, keys, "u", FULL)
    assert r.data[keys.user_state("u")] == FULL_STORED
    assert profile_codec.read_sync(r, keys, "u") == FULL
    profile_codec.queue_read(r, keys, "u")
    assert r.calls[-1] == (("GET", keys.user_state("u")), {"NEVER_DECODE": True})
