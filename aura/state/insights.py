"""Insight state: the saved engine (river models with the offsets they cover), the insight record,
the history rows and the reads the API makes.

The engine (aura/insights/engine.py) is pickled together with the ``agg.minute_metrics`` and
``agg.campaigns`` offsets it has consumed (partition -> last offset), the metrics it knew (a state
saved before a metric existed watches it once restored) and a sequence number: ``pack``/``unpack`` are the only
codec. The writer (streams/insights.py) saves it in Redis (``insights_state``) with a
compare-and-set on the sequence (``SAVE_LUA``), so a worker that lost its lease cannot overwrite a
newer state, and restores it on start: records at or below the saved offsets are never applied
twice, and none above them is skipped. A snapshot goes to Cassandra (``insight_state``) for when
Redis has lost it. Pickle is used because river models are pickled objects (river's own way to
persist them); the blob is internal state written only by the worker, never user input.

The history table ``insights`` holds the latest revision of each insight by start day; the record
(schemas/avro/agg_insight.avsc) and the row's ``doc`` are the same dict.
"""

from __future__ import annotations

import base64
import json
import pickle
from dataclasses import dataclass, field
from typing import Any

from aura.errors import AuraError
from aura.insights.engine import METRICS, SEVERITIES, Engine, Frame, Insight
from aura.state.analytics import BucketTotals, parse_dim_metric

MAGIC = b"AIS1"
DAY_MS = 86_400_000
STATUSES = ("open", "closed")

# KEYS[1] state; ARGV[1] expected sequence ("" = no state yet), ARGV[2] the new blob, ARGV[3] new sequence.
# The sequence is stored as the value's first line so one GET reads both; the blob is base64 text.
SAVE_LUA = """
local cur = redis.call('GET', KEYS[1])
local seq = ''
if cur then seq = string.match(cur, '^(%d+)\\n') or '' end
if seq ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[3] .. '\\n' .. ARGV[2])
return 1
"""


class StateFormatError(AuraError, ValueError):
    """A saved insight state that cannot be read (wrong magic or version)."""


@dataclass
class Saved:
    """The engine with what it covers."""

    engine: Engine
    offsets: dict[int, int] = field(default_factory=dict)  # agg.minute_metrics partition -> last offset applied
    seq: int = 0
    campaign_offsets: dict[int, int] = field(default_factory=dict)  # agg.campaigns partition -> last offset


# the metrics of a state saved before the engine listed the metrics it knew
FIRST_METRICS = ("conversion", "revenue", "views", "ctr")


def pack(saved: Saved) -> bytes:
    return MAGIC + pickle.dumps({"engine": saved.engine, "offsets": saved.offsets, "known": tuple(METRICS),
                                 "campaign_offsets": saved.campaign_offsets}, protocol=5)


def unpack(blob: bytes, seq: int) -> Saved:
    if not blob.startswith(MAGIC):
        raise StateFormatError("not an insight state (bad magic)")
    try:
        d = pickle.loads(blob[len(MAGIC):])  # noqa: S301 - written only by our worker (see module doc)
    except Exception as exc:
        raise StateFormatError(f"insight state unreadable: {exc}") from exc
    eng = d["engine"]
    # metrics added since the state was saved are watched from here on (their models start empty)
    known = set(d.get("known", FIRST_METRICS))
    eng.metrics = (*eng.metrics, *(name for name in METRICS if name not in known and name not in eng.metrics))
    return Saved(eng, {int(p): int(o) for p, o in d["offsets"].items()}, seq,
                 {int(p): int(o) for p, o in d.get("campaign_offsets", {}).items()})


def redis_blob(blob: bytes) -> str:
    """The blob as stored in Redis: base64 text (the clients decode every answer as UTF-8)."""
    return base64.b64encode(blob).decode()


def split_redis_value(raw: str | bytes | None) -> tuple[int | None, bytes | None]:
    """The sequence and the blob of an ``insights_state`` value "<seq>\n<base64>" (None, None when
    absent)."""
    if raw is None:
        return None, None
    text = raw.decode() if isinstance(raw, bytes) else raw
    head, _, blob = text.partition("\n")
    try:
        return int(head), base64.b64decode(blob, validate=True)
    except ValueError as exc:
        raise StateFormatError(f"insight state unreadable: {exc}") from exc


def to_record(ins: Insight) -> dict[str, Any]:
    """The Avro record of agg.insights (and the history row's doc)."""
    r = ins.to_record()
    r["causes"] = [dict(c) for c in r["causes"]]
    r["series"] = list(r["series"])
    return r


def row(ins: Insight) -> tuple[Any, ...]:
    """(day, started_at, insight_id, metric, focus, severity, status, updated_at, revision, doc)."""
    return (ins.started_at // DAY_MS, ins.started_at, ins.insight_id, ins.metric, ins.focus, ins.severity,
            ins.status, ins.updated_at, ins.revision, json.dumps(to_record(ins), separators=(",", ":")))


def days(from_ms: int, to_ms: int, limit: int = 400) -> list[int]:
    """The start days (newest first) whose partitions may hold insights started in [from_ms, to_ms)."""
    last = (to_ms - 1) // DAY_MS
    first = max(from_ms // DAY_MS, last - limit + 1)
    return list(range(last, first - 1, -1))


def matches(doc: dict[str, Any], focus: str | None, severity: str | None, status: str | None) -> bool:
    """The API's filters; ``severity`` is a minimum (warning includes critical)."""
    if focus and doc.get("focus") != focus and doc.get("metric") != focus:
        return False
    if severity and SEVERITIES.index(doc.get("severity", "info")) < SEVERITIES.index(severity):
        return False
    return not (status and doc.get("status") != status)


def frame_of(b: BucketTotals) -> Frame:
    """The engine's frame of one minute bucket's totals (the same cells streams/aggregates.py
    publishes on agg.minute_metrics), for runs over the counters themselves (the API's on-demand run)."""
    m = b.metrics
    cell = {"views": float(m.get("ev:view", 0)), "add_to_cart": float(m.get("ev:add_to_cart", 0)),
            "orders": float(m.get("orders", 0)), "revenue": float(m.get("rev", 0.0)),
            "impressions": float(m.get("ev:impression", 0)), "clicks": float(m.get("ev:recommendation_click", 0))}
    frame: Frame = {("all", ""): cell}
    for k, v in m.items():
        if k.startswith(("pi:", "xi:")):
            dim = "placement" if k[0] == "p" else "experiment"
            frame[(dim, k[3:])] = {"impressions": float(v), "clicks": float(m.get(f"{k[0]}c:{k[3:]}", 0))}
            if dim == "experiment":  # orders attributed to the variant's lists, and their revenue
                frame[(dim, k[3:])] |= {"orders": float(m.get(f"ao:exp:{k[3:]}", 0)),
                                        "revenue": float(m.get(f"ar:exp:{k[3:]}", 0.0))}
            continue
        parsed = parse_dim_metric(k)
        if parsed is None:
            continue
        dim, val, what = parsed
        c = frame.setdefault((dim, val), {"views": 0.0, "add_to_cart": 0.0, "orders": 0.0, "revenue": 0.0})
        key = {"view": "views", "purchase": "purchases"}.get(what, what)
        if key != "purchases":
            c[key] = float(v)
    return frame
