"""The stored forms of a profile: the Redis string and the Cassandra document, and their read helpers.

Redis holds ONE string per user (``RedisKeys.user_state``): a 4-byte version, then the whole state
as a positional msgpack array (``pack``/``unpack``); the offset fences ``<partition> -> offset``
are in it. Cassandra holds a copy in ``user_activity`` (counts, seen times, recent items) and
``user_profile`` (``durable_doc``), read back by ``from_durable``. The worker writes both forms
(streams/profiles.py), the API, tests and benches read them: every reader goes through this module,
so the formats are spelled here only.
"""

from __future__ import annotations

import struct
from typing import Any

import msgpack

from aura.keys import RedisKeys
from aura.layout import FIRST_SEEN, LAST_SEEN
from aura.state.profiles import Profile

# ---------------------------------------------------------------------------------------------
# Redis encoding: ONE string per user (``RedisKeys.user_state``)
#
#   4 bytes   version, big-endian (the worker's compare-and-set reads only these)
#   msgpack   array, positional (no field names), trailing defaults dropped:
#     0 format (1)          1 fences [p, off, ...]      2 counts [action code or name, n, ...]
#     3 last_seen (ms)      4 first_seen                5 recent items, newest first
#     6 sessions            7 session id (nil: the gap session "g<start>"; 8 bytes: a digest)
#     8 session start       9 path                      10 orders
#     11 ltv (micro-units)  12 eng_t                    13 aff_t
#     14 affinity keys ("c"/"b"/"p" + value for category:/brand:/price:)
#     15 float32 little-endian: engagement points, then one weight per affinity key
#     16 stage code         17 stage_at                 18 last rec click [t, rec, exp, var, placement]
#     19 segments           20 idle stage code
#   Times other than last_seen are stored as last_seen - t (nil for 0): 5 bytes instead of 9.

FORMAT = 1
_HEAD = struct.Struct(">I")
# Append-only: the position is the stored code of an action (unknown actions are stored by name).
ACTION_CODES = ("view", "click", "add_to_cart", "remove_from_cart", "purchase", "rating", "search",
                "impression", "recommendation_click", "message_open", "message_click", "custom")
_ACTION_INDEX = {a: i for i, a in enumerate(ACTION_CODES)}
STAGE_CODES = ("", "new", "active", "reactivated", "at-risk", "churned")  # append-only
_STAGE_INDEX = {a: i for i, a in enumerate(STAGE_CODES)}
_AFF_PREFIX = {"category:": "c", "brand:": "b", "price:": "p"}
_AFF_NAME = {v: k for k, v in _AFF_PREFIX.items()}
FIELDS = 21  # slots of the msgpack array
_DEFAULTS: tuple[Any, ...] = (FORMAT, [], [], None, None, [], 0, None, None, [], 0, 0, None, None, [], b"", 0,
                              None, None, [], 0)


def next_version(v: int) -> int:
    """The version after ``v`` (1 .. 2**32 - 1: 0 means "no state yet")."""
    return v % 0xFFFFFFFF + 1


def version_head(version: int | None) -> bytes:
    """The 4 bytes a stored state of ``version`` starts with (b"" for none: the key must not exist)."""
    return _HEAD.pack(version) if version else b""


def _aff_key(k: str) -> str:
    for long, short in _AFF_PREFIX.items():
        if k.startswith(long):
            return short + k[len(long):]
    return "~" + k


def _is_default(value: Any, default: Any) -> bool:
    return value is None if default is None else (value is not None and value == default)


def pack(p: Profile) -> bytes:
    """Profile -> the stored string (version head + msgpack). Lossless for every state the fold makes."""
    ls = p.last_seen

    def rel(t: int | None) -> int | None:
        return None if not t or ls is None else ls - t

    sid: Any = p.session_id
    if sid == f"g{p.session_start}":
        sid = None
    elif sid.startswith("#") and len(sid) == 17:
        sid = bytes.fromhex(sid[1:])
    last_rec: Any = None
    if p.last_rec:
        rt, *rest = p.last_rec.split("|")
        last_rec = [rel(int(rt)), *rest]
    counts: list[Any] = []
    for a, n in p.counts.items():
        counts += [_ACTION_INDEX.get(a, a), n]
    body = [FORMAT, [x for kv in p.fences.items() for x in kv], counts, ls, rel(p.first_seen), p.recent,
            p.sessions, sid, rel(p.session_start), p.path, p.orders, round(p.ltv * 1e6), rel(p.eng_t),
            rel(p.aff_t), [_aff_key(k) for k in p.aff], struct.pack(f"<{1 + len(p.aff)}f", p.eng, *p.aff.values()),
            _STAGE_INDEX[p.stage], rel(p.stage_at), last_rec, p.segments, _STAGE_INDEX[p.idle]]
    while len(body) > 1 and _is_default(body[-1], _DEFAULTS[len(body) - 1]):
        body.pop()
    return _HEAD.pack(p.version) + msgpack.packb(body)


def unpack(raw: bytes | None) -> Profile:
    """The stored string -> Profile (an empty Profile, version 0, when there is none)."""
    if not raw:
        return Profile()
    body = msgpack.unpackb(raw[4:])
    if body[0] != FORMAT:
        raise ValueError(f"unknown profile format {body[0]!r}")
    body += [list(d) if isinstance(d, list) else d for d in _DEFAULTS[len(body):]]
    (_fmt, fences, counts, ls, first, recent, sessions, sid, sst, path, orders, ltv, eng_t, aff_t, aff_keys,
     floats, stage, stage_at, last_rec, segs, idle) = body

    def ab(d: int | None) -> int:
        return 0 if d is None else ls - d

    p = Profile(version=_HEAD.unpack_from(raw)[0], last_seen=ls, first_seen=None if first is None else ls - first,
                recent=list(recent), sessions=sessions, session_start=ab(sst), path=list(path), orders=orders,
                ltv=ltv / 1e6, eng_t=ab(eng_t), aff_t=ab(aff_t), stage=STAGE_CODES[stage], stage_at=ab(stage_at),
                segments=list(segs), idle=STAGE_CODES[idle])
    p.fences = dict(zip(fences[::2], fences[1::2], strict=True))
    p.counts = {(ACTION_CODES[a] if isinstance(a, int) else a): n for a, n in zip(counts[::2], counts[1::2],
                                                                                   strict=True)}
    p.session_id = (f"g{p.session_start}" if sid is None else "#" + sid.hex() if isinstance(sid, bytes) else sid)
    if last_rec:
        p.last_rec = "|".join([str(ab(last_rec[0])), *last_rec[1:]])
    vals = struct.unpack(f"<{len(floats) // 4}f", floats) if floats else (0.0,)
    p.eng = vals[0]
    p.aff = {(_AFF_NAME[k[0]] + k[1:] if k[0] in _AFF_NAME else k[1:]): v
             for k, v in zip(aff_keys, vals[1:], strict=True)}
    return p


def queue_read(pipe: Any, keys: RedisKeys, user_id: str) -> None:
    """Queue the read of ``user_id``'s stored state on ``pipe`` (raw bytes, whatever the client's
    ``decode_responses``); its result goes to ``unpack``."""
    pipe.execute_command("GET", keys.user_state(user_id), NEVER_DECODE=True)


def read_sync(redis: Any, keys: RedisKeys, user_id: str) -> Profile | None:
    """One user's state through a synchronous client (tests, benches, jobs); None when absent."""
    raw = redis.execute_command("GET", keys.user_state(user_id), NEVER_DECODE=True)
    return unpack(raw) if raw else None


def write_sync(client: Any, keys: RedisKeys, user_id: str, p: Profile) -> None:
    """Store ``p`` as ``user_id``'s state, unconditionally (tests and benches seeding a profile; the
    worker writes through its compare-and-set). ``client``: a synchronous client or pipeline."""
    client.set(keys.user_state(user_id), pack(p))


# ---------------------------------------------------------------------------------------------
# Cassandra: the ``user_activity`` row and the ``user_profile`` document


def durable_doc(p: Profile) -> dict[str, str]:
    """The derived profile as the JSON document of the Cassandra ``user_profile`` row (text fields,
    floats as exact reprs; the counts, seen times and recent items are in ``user_activity``)."""
    doc = {
        "sessions": str(p.sessions), "sid": p.session_id, "sst": str(p.session_start), "path": ">".join(p.path),
        "orders": str(p.orders), "ltv": repr(p.ltv), "eng": repr(p.eng), "eng_t": str(p.eng_t),
        "aff_t": str(p.aff_t), "stage": p.stage, "stage_at": str(p.stage_at), "lrec": p.last_rec,
        "seg": ",".join(p.segments),
    }
    if p.idle:
        doc["idle"] = p.idle
    for k, v in p.aff.items():
        doc[f"a:{k}"] = repr(v)
    return doc


def from_durable(counts: dict[str, int], first_seen: int | None, last_seen: int | None, recent: list[str],
                 doc: dict[str, str]) -> Profile:
    """The Cassandra copy (``user_activity`` row + ``user_profile`` document) -> Profile (no fences)."""
    p = Profile(counts=dict(counts), first_seen=first_seen, last_seen=last_seen, recent=list(recent))
    if doc:
        p.sessions = int(doc.get("sessions", 0))
        p.session_id = doc.get("sid", "")
        p.session_start = int(doc.get("sst", 0))
        p.path = [x for x in doc.get("path", "").split(">") if x]
        p.orders = int(doc.get("orders", 0))
        p.ltv = float(doc.get("ltv", 0.0))
        p.eng = float(doc.get("eng", 0.0))
        p.eng_t = int(doc.get("eng_t", 0))
        p.aff_t = int(doc.get("aff_t", 0))
        p.stage = doc.get("stage", "")
        p.stage_at = int(doc.get("stage_at", 0))
        p.last_rec = doc.get("lrec", "")
        p.segments = [x for x in doc.get("seg", "").split(",") if x]
        p.idle = doc.get("idle", "")
        p.aff = {k[2:]: float(v) for k, v in doc.items() if k.startswith("a:")}
    return p


def rule_fields(p: Profile) -> dict[str, str]:
    """The profile as the flat text fields personalization rules test (aura/rules.py ``profile.<name>``):
    ``count.<action>``, ``first_seen``, ``last_seen`` and the fields of ``durable_doc`` (``ltv``,
    ``orders``, ``sessions``, ``stage``, ``a:<dim>``, ...)."""
    out = {f"count.{k}": str(v) for k, v in p.counts.items()}
    if p.first_seen is not None:
        out[FIRST_SEEN] = str(p.first_seen)
        out[LAST_SEEN] = str(p.last_seen)
    return {**out, **durable_doc(p)}
