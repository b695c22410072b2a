"""Windowed aggregates for analysts, and the durable copy of the analytics counters.

A timer in every worker reads the buckets the behavior agent marked as touched
(``analytics_touched``), sums the partitions' shares (aura/state/analytics.py), writes the absolute
totals to the Cassandra table ``analytics_totals`` (``USING TIMESTAMP`` = read time, so an older
snapshot never overwrites a newer one) and publishes Avro records (schemas/avro/agg_*.avsc) to the
compacted ``agg.*`` topics, keyed by window and dimension: the latest record of a key is its value,
``revision`` grows with every re-publication. Re-publishing the same totals is harmless, so two
workers may both run it. Owns no Redis state besides trimming the touched set.
"""

from __future__ import annotations

import logging
import sys
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import faust
from confluent_kafka import Consumer

from aura import layout
from aura.layout import Tables, TopicSpec
from aura.state import analytics
from aura.state.analytics import BucketTotals
from schemas.codec import codec
from streams.durable import execute_grouped
from streams.loopstats import timed
from streams.runtime import Owner, Resources

log = logging.getLogger(__name__)

# name used by `aura agg tail <name>` -> (topic spec, Avro schema name)
AGGREGATES: dict[str, tuple[TopicSpec, str]] = {
    "minute_metrics": (layout.AGG_METRICS_MINUTE, "agg_minute_metrics"),
    "item_daily": (layout.AGG_ITEMS_DAILY, "agg_item_daily"),
    "funnel": (layout.AGG_FUNNEL, "agg_funnel"),
    "revenue": (layout.AGG_REVENUE, "agg_revenue"),
}
TOUCHED_KEEP_MS = 3600 * 1000
AGG_BATCH_ROWS = 256  # metric rows of one bucket per Cassandra batch
INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class AggRecord:
    name: str  # key of AGGREGATES
    key: str
    value: dict[str, Any]


def _rev(now_ms: int, start: int) -> int:
    return max(0, min(INT32_MAX, (now_ms - start) // 1000))


def records(b: BucketTotals, now_ms: int) -> list[AggRecord]:
    """The aggregate records of one bucket's totals (pure)."""
    m = b.metrics
    end = b.start + analytics.GRAINS[b.grain]
    rev = _rev(now_ms, b.start)
    out: list[AggRecord] = []
    if b.grain == "minute":
        events = {k[3:]: int(v) for k, v in m.items() if k.startswith("ev:")}
        out.append(AggRecord("minute_metrics", f"{b.start}|all|", {
            "window_start": b.start, "window_end": end, "dimension": "all", "dimension_value": "",
            "events": events, "users": b.users.get("active", 0), "orders": int(m.get("orders", 0)),
            "revenue": float(m.get("rev", 0.0)), "revision": rev, "emitted_at": now_ms}))
        placements = {k[3:] for k in m if k.startswith(("pi:", "pc:"))}
        for pl in sorted(placements):
            out.append(AggRecord("minute_metrics", f"{b.start}|placement|{pl}", {
                "window_start": b.start, "window_end": end, "dimension": "placement", "dimension_value": pl,
                "events": {"impression": int(m.get(f"pi:{pl}", 0)),
                           "recommendation_click": int(m.get(f"pc:{pl}", 0))},
                "revision": rev, "emitted_at": now_ms}))
        per_dim: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)
        for k, v in m.items():
            parsed = analytics.parse_dim_metric(k)
            if parsed is not None:
                per_dim[(parsed[0], parsed[1])][parsed[2]] = v
        for (dim, val), s in sorted(per_dim.items()):
            out.append(AggRecord("minute_metrics", f"{b.start}|{dim}|{val}", {
                "window_start": b.start, "window_end": end, "dimension": dim, "dimension_value": val,
                "events": {e: int(s[e]) for e in analytics.DIM_EVENTS if s.get(e)},
                "orders": int(s.get("orders", 0)), "revenue": float(s.get("revenue", 0.0)),
                "revision": rev, "emitted_at": now_ms}))
        # per variant: its impressions and clicks, and the orders (and their revenue) attributed to a
        # click on a list it served
        variants = {k[3:] for k in m if k.startswith(("xi:", "xc:"))} | {k[7:] for k in m if k.startswith("ao:exp:")}
        for var in sorted(variants):
            out.append(AggRecord("minute_metrics", f"{b.start}|experiment|{var}", {
                "window_start": b.start, "window_end": end, "dimension": "experiment", "dimension_value": var,
                "events": {"impression": int(m.get(f"xi:{var}", 0)),
                           "recommendation_click": int(m.get(f"xc:{var}", 0))},
                "orders": int(m.get(f"ao:exp:{var}", 0)), "revenue": float(m.get(f"ar:exp:{var}", 0.0)),
                "revision": rev, "emitted_at": now_ms}))
    elif b.grain == "hour":
        out.append(AggRecord("funnel", f"{b.start}|storefront|||", {
            "window_start": b.start, "window_end": end, "funnel": "storefront",
            "steps": [{"name": s, "users": b.users.get(f"f:{s}", 0), "events": int(m.get(f"ev:{s}", 0))}
                      for s in analytics.FUNNEL],
            "revision": rev, "emitted_at": now_ms}))
        out.append(AggRecord("revenue", f"{b.start}|USD||", {
            "window_start": b.start, "window_end": end, "orders": int(m.get("orders", 0)),
            "buyers": b.users.get("f:purchase", 0), "revenue": float(m.get("rev", 0.0)),
            "units": int(sum(v for k, v in m.items() if k.startswith("ip:"))),
            "attributed_revenue": float(m.get("ar:rec", 0.0)), "revision": rev, "emitted_at": now_ms}))
        for k in sorted(m):
            if k.startswith("ao:exp:"):
                exp, var = k[7:].rsplit(":", 1)
                out.append(AggRecord("revenue", f"{b.start}|USD|{exp}|{var}", {
                    "window_start": b.start, "window_end": end, "experiment_id": exp, "variant_id": var,
                    "orders": int(m[k]), "revenue": float(m.get(f"ar:exp:{exp}:{var}", 0.0)),
                    "attributed_revenue": float(m.get(f"ar:exp:{exp}:{var}", 0.0)),
                    "revision": rev, "emitted_at": now_ms}))
    elif b.grain == "day":
        per_item: dict[str, dict[str, float]] = defaultdict(dict)
        for k, v in m.items():
            if k[:3] in ("iv:", "ic:", "ia:", "ii:", "ip:", "ir:"):
                per_item[k[3:]][k[:2]] = v
        day = b.start // analytics.GRAINS["day"]
        for item, s in sorted(per_item.items()):
            out.append(AggRecord("item_daily", f"{day}|{item}", {
                "day": day, "item_id": item, "impressions": int(s.get("ii", 0)), "views": int(s.get("iv", 0)),
                "clicks": int(s.get("ic", 0)), "add_to_carts": int(s.get("ia", 0)),
                "purchases": int(s.get("ip", 0)), "units": int(s.get("ip", 0)), "revenue": float(s.get("ir", 0.0)),
                "revision": rev, "emitted_at": now_ms}))
    return out


class AggregatePublisher:
    """Reads touched buckets, writes them to Cassandra and returns the records to publish."""

    def __init__(self, res: Resources) -> None:
        self.res = res
        self.partitions = res.settings.kafka.topic_partitions
        start = int(time.time() * 1000) - TOUCHED_KEEP_MS
        self.since_ms = dict.fromkeys(analytics.GRAINS, start)  # per grain: touched after this is due
        self.ticks = 0
        self.insert = res.session.prepare(
            f"INSERT INTO {Tables.ANALYTICS_TOTALS} (grain, period, bucket, metric, value) VALUES (?, ?, ?, ?, ?) "
            "USING TIMESTAMP ?")

    def due(self) -> list[str]:
        """Grains to publish this tick: minutes every tick, hours every 6th, days every 12th (the
        hour and day buckets carry the per-item counters and are the expensive ones)."""
        self.ticks += 1
        return [g for g, every in (("minute", 1), ("hour", 6), ("day", 12)) if (self.ticks - 1) % every == 0]

    async def run_once(self, now_ms: int | None = None, grains: list[str] | None = None) -> list[AggRecord]:
        now_ms = now_ms or int(time.time() * 1000)
        grains = grains or list(analytics.GRAINS)
        redis, keys = self.res.redis, self.res.keys
        since = min(self.since_ms[g] for g in grains)
        members = await redis.zrangebyscore(keys.analytics_touched(), since - 1000, "+inf", withscores=True)
        await redis.zremrangebyscore(keys.analytics_touched(), "-inf", now_ms - TOUCHED_KEEP_MS)
        by_grain: dict[str, list[int]] = defaultdict(list)
        for mbr, score in members:
            grain, start = mbr.split(":")
            if grain in grains and score >= self.since_ms[grain] - 1000:
                by_grain[grain].append(int(start))
        out: list[AggRecord] = []
        rows: list[tuple[Any, ...]] = []
        stamp = now_ms * 1000
        for grain, starts in by_grain.items():
            for b in await analytics.read_buckets(redis, keys, self.partitions, grain, sorted(starts)):
                out.extend(records(b, now_ms))
                rows.extend((*r, stamp) for r in analytics.durable_rows(b))
        if rows:  # one UNLOGGED batch per partition (grain, period) and 256 rows: one mutation
            await execute_grouped(self.res.session, [((r[0], r[1]), self.insert, r) for r in rows],
                                  max_statements=AGG_BATCH_ROWS)
        for g in grains:  # only after success: a failed round is redone by the next one
            self.since_ms[g] = now_ms
        return out


def register(app: faust.App, res: Resources) -> list[Owner]:
    """The publisher's timer in the worker; it feeds no owner of the behavior agent."""
    s = res.settings
    topics = {name: app.topic(layout.topic(s, spec), key_serializer="raw", value_serializer="raw")
              for name, (spec, _schema) in AGGREGATES.items()}
    codecs = {name: codec(schema) for name, (_spec, schema) in AGGREGATES.items()}
    publisher = AggregatePublisher(res)

    @app.timer(interval=s.analytics.publish_interval_s, name="publish_aggregates")
    @timed("publish_aggregates")
    async def publish_aggregates() -> None:
        try:
            recs = await publisher.run_once(grains=publisher.due())
        except Exception:  # a failed round is retried by the next tick (absolute values)
            log.exception("aggregate round failed")
            return
        for r in recs:
            await topics[r.name].send(key=r.key.encode(), value=codecs[r.name].encode(r.value))

    return []


# ---------------------------------------------------------------------------------------------
# `aura agg tail <name>`: a live table of one aggregate topic (latest record per key)

TABLE_COLUMNS: dict[str, tuple[str, ...]] = {
    "minute_metrics": ("window_start", "dimension", "dimension_value", "events", "users", "orders", "revenue"),
    "item_daily": ("day", "item_id", "impressions", "views", "clicks", "add_to_carts", "units", "revenue"),
    "funnel": ("window_start", "funnel", "steps"),
    "revenue": ("window_start", "experiment_id", "variant_id", "orders", "buyers", "revenue", "attributed_revenue"),
}


def _cell(v: Any) -> str:
    if isinstance(v, dict):
        return " ".join(f"{k}={x}" for k, x in sorted(v.items()))
    if isinstance(v, list):
        return " > ".join(f"{x.get('name')}:{x.get('users')}u/{x.get('events')}e" if isinstance(x, dict) else str(x)
                          for x in v)
    if isinstance(v, float):
        return f"{v:.2f}"
    return "" if v is None else str(v)


def render(name: str, latest: dict[str, dict[str, Any]], rows: int) -> str:
    """The newest ``rows`` keys of ``latest`` as a text table (pure)."""
    cols = TABLE_COLUMNS[name]
    body = [[_cell(rec.get(c)) for c in cols] for _k, rec in sorted(latest.items(), reverse=True)[:rows]]
    widths = [min(60, max([len(c), *(len(r[i]) for r in body)])) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v[:w].ljust(w) for v, w in zip(r, widths, strict=True)) for r in body]
    return "\n".join(lines)


def tail(settings: Any, name: str, rows: int = 20, once: bool = False, out: Any = None,
         idle_s: float = 2.0) -> dict[str, dict[str, Any]]:
    """Follow ``agg.<name>`` from the beginning, printing the table whenever it changes.

    ``once``: stop when the topic has been read to its end (no record for ``idle_s``)."""

    spec, schema = AGGREGATES[name]
    dec = codec(schema)
    out = out or sys.stdout
    c = Consumer({"bootstrap.servers": settings.kafka.bootstrap, "group.id": f"agg-tail-{uuid.uuid4().hex[:8]}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([layout.topic(settings, spec)])
    latest: dict[str, dict[str, Any]] = {}
    last_msg = time.monotonic()
    try:
        while True:
            msgs = c.consume(500, 0.5)
            changed = False
            for m in msgs:
                if m.error() or m.key() is None:
                    continue
                key = m.key().decode()
                if m.value() is None:
                    latest.pop(key, None)
                else:
                    latest[key] = dec.decode(m.value())
                changed = True
            if changed:
                last_msg = time.monotonic()
                if not once:
                    out.write("\x1b[2J\x1b[H" + f"agg.{name}: {len(latest)} keys\n" + render(name, latest, rows) + "\n")
                    out.flush()
            elif once and time.monotonic() - last_msg > idle_s:
                out.write(render(name, latest, rows) + "\n")
                return latest
    except KeyboardInterrupt:
        return latest
    finally:
        c.close()
