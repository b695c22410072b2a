"""Minute frames in, insights out (pure, picklable): the state the insight agent saves.

A *frame* is one event-time minute of the minute aggregates: (dimension, value) -> counters
(views, add_to_cart, orders, revenue, impressions, clicks; for experiment variants the orders and
revenue attributed to them; for campaigns, from ``add_campaign``, the increase of their running
totals: sent, failed, attempts, opened, clicked, conversions). ``Engine.add`` takes aggregate records
(the latest revision of a key wins); ``Engine.flush(watermark)`` closes the minutes that are
``settle_ms`` older than the watermark (the newest window every source partition has reached) and
steps every metric series through them.

Per metric (``METRICS``) the engine keeps one ``SeriesModel`` for the total and one per value of
each of its dimensions. An alert of any of them opens one *insight* for the metric (one per incident:
later alerts join it), explained by ``explain.causes`` over the frames before and since the change;
the insight is re-issued (revision + 1) every minute while it lasts and closed when every flagged
series is back in its band. Insight ids are ``<metric>-<start minute ms>``: a replay of the same
frames gives the same ids, so the topic and the table are written idempotently.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from aura.insights import campaigns
from aura.insights.detect import DetectorConfig, SeriesModel
from aura.insights.explain import Cause, Pair, causes, ratio

MINUTE = 60_000
DIMENSIONS = ("device", "channel", "country", "category", "placement", "experiment", "campaign")
Frame = dict[tuple[str, str], dict[str, float]]


@dataclass(frozen=True)
class Metric:
    name: str
    label: str
    focus: str            # conversion | revenue | engagement (the seed's insight focus)
    kind: str             # rate | count | sum (detect.KINDS)
    num: str
    den: str | None
    dims: tuple[str, ...]
    weight: str | None = None  # sums: the counter of the events behind the amount (their number)
    depends: tuple[str, ...] = ()  # metrics it follows: their incidents hold its models too
    min_change: float | None = None  # the smallest relative change worth an insight (None: the detector's)
    total: str | None = None  # the dimension whose values add up to the total (None: the "all" record)
    source: str = "minute"  # minute: agg.minute_metrics (and the minute counters); campaigns: agg.campaigns


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("conversion", "Checkout conversion", "conversion", "rate", "orders", "views",
           ("device", "channel", "country", "category")),
    Metric("revenue", "Revenue per minute", "revenue", "sum", "revenue", None,
           ("device", "channel", "country", "category"), weight="orders", depends=("conversion", "views"),
           min_change=0.25),
    Metric("views", "Product views per minute", "engagement", "count", "views", None,
           ("device", "channel", "country", "category"), min_change=0.2),
    Metric("ctr", "Recommendation click-through", "engagement", "rate", "clicks", "impressions",
           ("placement", "experiment")),
    # per experiment variant: the orders attributed to a click on a list the variant served, and their
    # revenue; the total is the sum over the variants (the traffic in experiments), not the shop's
    Metric("variant_conversion", "Conversion of recommendation clicks", "conversion", "rate", "orders", "clicks",
           ("experiment",), total="experiment"),
    Metric("variant_revenue", "Revenue from recommendation clicks per minute", "revenue", "sum", "revenue", None,
           ("experiment",), weight="orders", depends=("variant_conversion", "ctr"), min_change=0.25,
           total="experiment"),
    # per campaign (agg.campaigns, differenced per minute: aura/insights/campaigns.py); the total is
    # every campaign's messages
    Metric("campaign_failures", "Campaign delivery failures", "engagement", "rate", "failed", "attempts",
           ("campaign",), total="campaign", source="campaigns"),
    Metric("campaign_clicks", "Campaign click rate", "engagement", "rate", "clicked", "sent",
           ("campaign",), total="campaign", source="campaigns"),
)}
FOCUSES = ("conversion", "revenue", "engagement")
SEVERITIES = ("info", "warning", "critical")


def record_counters(rec: dict[str, Any]) -> dict[str, float]:
    """The counters of one ``agg.minute_metrics`` record (raises KeyError/TypeError/ValueError on a
    malformed one)."""
    ev = rec["events"]
    out = {"views": float(ev.get("view", 0)), "add_to_cart": float(ev.get("add_to_cart", 0)),
           "orders": float(rec.get("orders") or ev.get("purchase", 0)), "revenue": float(rec.get("revenue") or 0.0),
           "impressions": float(ev.get("impression", 0)), "clicks": float(ev.get("recommendation_click", 0))}
    for k, v in out.items():
        if not (v >= 0 and v < 1e15):
            raise ValueError(f"counter {k} out of range: {v!r}")
    return out


def millis(v: Any) -> int:
    """Epoch ms of a record's timestamp (Avro timestamp-millis decodes to an aware datetime)."""
    if isinstance(v, datetime):
        return int(v.timestamp() * 1000)
    if isinstance(v, bool) or not isinstance(v, int | float) or v != v:
        raise ValueError(f"not a timestamp: {v!r}")
    return int(v)


def cells(m: Metric, frame: Frame) -> list[tuple[tuple[str, str], dict[str, float]]]:
    """The cells of a frame the metric reads: its total (``("all", "")``) and its dimensions' values.
    A metric with a ``total`` dimension gets the sum of that dimension's values as its total."""
    if m.total is None:
        return [(k, c) for k, c in frame.items() if k[0] == "all" or k[0] in m.dims]
    parts = [(k, c) for k, c in frame.items() if k[0] == m.total]
    if not parts:
        return []
    tot: dict[str, float] = {}
    for _k, c in parts:
        for name, v in c.items():
            if name != "_rev":
                tot[name] = tot.get(name, 0.0) + v
    return [(("all", ""), tot), *[(k, c) for k, c in frame.items() if k[0] in m.dims]]


def pair(m: Metric, counters: dict[str, float]) -> Pair:
    return counters.get(m.num, 0.0), (counters.get(m.den, 0.0) if m.den else 1.0)


def fmt(m: Metric, v: float) -> str:
    if m.kind == "rate":
        return f"{v * 100:.2f}%" if v < 0.1 else f"{v * 100:.1f}%"
    if m.kind == "sum":
        return f"{v:,.2f}"
    return f"{v:,.0f}"


def severity(rel: float) -> str:
    a = abs(rel)
    return "critical" if a >= 0.3 else "warning" if a >= 0.15 else "info"


@dataclass
class Insight:
    """One incident of one metric (the record of agg.insights and the row of the history table)."""

    insight_id: str
    metric: str
    focus: str
    kind: str
    direction: int
    started_at: int
    detected_at: int
    updated_at: int
    status: str = "open"
    ended_at: int | None = None
    severity: str = "info"
    before: float = 0.0
    after: float = 0.0
    dimension: str | None = None
    dimension_value: str | None = None
    explained_share: float = 0.0
    segment_before: float | None = None
    segment_after: float | None = None
    causes: list[dict[str, Any]] = field(default_factory=list)
    series: list[str] = field(default_factory=list)
    text: str = ""
    revision: int = 0

    def to_record(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class Engine:
    cfg: DetectorConfig = field(default_factory=DetectorConfig)
    settle_ms: int = 2 * MINUTE     # a minute is final this long after the newest window seen
    baseline_min: int = 30          # minutes of the "before" window
    keep_min: int = 240             # frames kept for explanation
    metrics: tuple[str, ...] = tuple(METRICS)  # the metrics watched (the API's focus narrows them)
    reopen_min: int = 60            # an alert this soon after the metric's insight closed re-opens it
    models: dict[str, SeriesModel] = field(default_factory=dict)
    pending: dict[int, Frame] = field(default_factory=dict)
    history: deque[tuple[int, Frame]] = field(default_factory=deque)
    open: dict[str, Insight] = field(default_factory=dict)
    last_minute: int = -1
    marks: dict[int, int] = field(default_factory=dict)  # source partition -> newest window seen in it
    late: int = 0
    points: int = 0
    closed: dict[str, Insight] = field(default_factory=dict)  # metric -> its latest closed insight
    reopened: dict[str, int] = field(default_factory=dict)  # re-opened insight id -> end of its first episode

    # --- input -------------------------------------------------------------------------------

    @property
    def watermark(self) -> int:
        """The newest window every source partition has reached (partitions are read at different
        paces: a minute is complete only when the slowest one has passed it)."""
        return min(self.marks.values()) if self.marks else -1

    def add(self, rec: dict[str, Any], partition: int = 0) -> bool:
        """Take one minute_metrics record read from ``partition``; False when it is too late (its
        minute is already final)."""
        start = millis(rec["window_start"])
        dim, val = str(rec.get("dimension") or "all"), str(rec.get("dimension_value") or "")
        counters = record_counters(rec)
        counters["_rev"] = float(rec.get("revision") or 0)
        self.marks[partition] = max(self.marks.get(partition, -1), start)
        if start <= self.last_minute:
            self.late += 1
            return False
        cells = self.pending.setdefault(start, {})
        key = (dim, val if dim != "all" else "")
        if key in cells and cells[key]["_rev"] > counters["_rev"]:
            return True  # an older revision arriving after a newer one (another partition's order)
        cells[key] = counters
        return True

    def add_campaign(self, rec: dict[str, Any]) -> bool:
        """Take one ``agg.campaigns`` record: the increase since the campaign's previous snapshot joins
        the pending minute of its ``emitted_at``; False when that minute is already final. Raises
        ValueError on a malformed record."""
        if rec.get("variant") is not None:
            return True  # content variants carry no opens or clicks: the whole campaign is watched
        cid = rec.get("campaign_id")
        if not isinstance(cid, str) or not cid or len(cid) > campaigns.CAMPAIGN_ID_MAX:
            raise campaigns.CampaignRecordError(f"bad campaign_id: {cid!r}")
        at, now = millis(rec["emitted_at"]), campaigns.totals(rec)
        seen = self.__dict__.setdefault("campaign_last", {})  # campaign id -> (emitted_at, totals)
        prev = seen.get(cid)
        if prev is not None and at <= prev[0]:
            return True  # not newer than what was seen
        seen[cid] = (at, now)
        d = campaigns.delta(prev[1] if prev else None, now)
        start = at - at % MINUTE
        if d is None:
            return True
        if start <= self.last_minute:
            self.late += 1
            return False
        cell = self.pending.setdefault(start, {}).setdefault(("campaign", cid), {})
        for k, v in d.items():
            cell[k] = cell.get(k, 0.0) + v
        return True

    def flush(self, watermark: int | None = None) -> list[Insight]:
        """Step through every pending minute older than the watermark by ``settle_ms``; returns the
        insights opened, updated or closed (each at most once, latest state)."""
        wm = self.watermark if watermark is None else watermark
        changed: dict[str, Insight] = {}
        for start in sorted(s for s in self.pending if s <= wm - self.settle_ms):
            for ins in self.step(start, self.pending.pop(start)):
                changed[ins.insight_id] = ins
        return list(changed.values())

    # --- one minute ----------------------------------------------------------------------------

    def step(self, start: int, frame: Frame) -> list[Insight]:
        self.last_minute = max(self.last_minute, start)
        self.history.append((start, frame))
        while self.history and self.history[0][0] < start - self.keep_min * MINUTE:
            self.history.popleft()
        hour = datetime.fromtimestamp(start / 1000, UTC).hour
        out: list[Insight] = []
        for m in (METRICS[name] for name in self.metrics):
            opened: list[tuple[str, SeriesModel]] = []
            hold = m.name in self.open or any(d in self.open for d in m.depends)
            for (dim, val), counters in cells(m, frame):
                n, d = pair(m, counters)
                if m.kind == "rate" and d <= 0:
                    continue
                key = f"{m.name}|{dim}|{val}"
                model = self.models.get(key)
                if model is None:
                    cfg = self.cfg if m.min_change is None else replace(self.cfg, min_change=m.min_change)
                    model = self.models[key] = SeriesModel(m.kind, cfg)
                self.points += 1
                w = counters.get(m.weight, 0.0) if m.weight else d
                if model.update(ratio((n, d), m.kind == "rate"), w, hour, hold) is not None:
                    opened.append((key, model))
            ins = self.open.get(m.name)
            last = self.__dict__.setdefault("closed", {}).get(m.name)
            if ins is None and opened and last is not None and last.ended_at is not None \
                    and start - last.ended_at <= self.reopen_min * MINUTE:
                # the same incident flaring up again (or its aftermath): one insight per incident
                ins = self.open[m.name] = last
                self.__dict__.setdefault("reopened", {}).setdefault(ins.insight_id, last.ended_at)
                ins.status, ins.ended_at = "open", None
                ins.series = sorted(set(ins.series) | {k for k, _ in opened})
            elif ins is None and opened:
                back = max(model.onset() for _k, model in opened)
                first = max(start - back * MINUTE, start - 15 * MINUTE)
                main = max(opened, key=lambda km: abs(km[1].alert.z) if km[1].alert else 0)[1]
                ins = self.open[m.name] = Insight(
                    f"{m.name}-{first}", m.name, m.focus, main.alert.kind, main.alert.direction, first, start, start,
                    series=[k for k, _ in opened])
            elif ins is not None:
                ins.series = sorted(set(ins.series) | {k for k, _ in opened})
            if ins is None:
                continue
            self._describe(m, ins, start)
            # the metric is back when its total and the segment that explains the change are (series
            # that only followed the change may take longer to settle, and do not hold the insight open)
            core = {f"{m.name}|all|", f"{m.name}|{ins.dimension}|{ins.dimension_value}"} & set(ins.series)
            still = [k for k in (core or ins.series) if k in self.models and self.models[k].alert is not None]
            if not still:
                ins.status, ins.ended_at = "closed", start
                del self.open[m.name]
                prev = self.closed.get(m.name)
                if prev is not None and prev is not ins:
                    self.__dict__.setdefault("reopened", {}).pop(prev.insight_id, None)
                self.closed[m.name] = ins
            out.append(ins)
        return out

    # --- explanation -----------------------------------------------------------------------------

    def _window(self, m: Metric, lo: int, hi: int) -> tuple[Pair, dict[str, dict[str, Pair]]]:
        """Per-minute averages of the metric's total and per dimension value over [lo, hi]."""
        frames = [f for s, f in self.history if lo <= s <= hi]
        n = max(1, len(frames))
        tot = [0.0, 0.0]
        dims: dict[str, dict[str, list[float]]] = {}
        for f in frames:
            for (dim, val), counters in cells(m, f):
                p = pair(m, counters)
                if dim == "all":
                    tot[0] += p[0]
                    tot[1] += p[1]
                else:
                    acc = dims.setdefault(dim, {}).setdefault(val, [0.0, 0.0])
                    acc[0] += p[0]
                    acc[1] += p[1]
        return (tot[0] / n, tot[1] / n), {d: {v: (a[0] / n, a[1] / n) for v, a in vs.items()}
                                          for d, vs in dims.items()}

    def _describe(self, m: Metric, ins: Insight, now: int) -> None:
        rate = m.kind == "rate"
        tb, db = self._window(m, ins.started_at - self.baseline_min * MINUTE, ins.started_at - MINUTE)
        end = ins.ended_at if ins.ended_at is not None else now
        # a re-opened insight is described by its main episode (its flare-up would dilute it)
        end = min(end, self.__dict__.get("reopened", {}).get(ins.insight_id, end))
        ta, da = self._window(m, ins.started_at, end)
        ins.before, ins.after = ratio(tb, rate), ratio(ta, rate)
        found: list[Cause] = causes(db, da, tb, ta, rate)
        ins.causes = [{"dimension": c.dimension, "value": c.value, "share": round(c.ep, 4),
                       "surprise": round(c.surprise, 6), "before": c.before, "after": c.after} for c in found[:5]]
        top = found[0] if found else None
        if top is None:  # fall back to the most deviant flagged series
            flagged = [k.split("|", 2) for k in ins.series]
            seg = next((f for f in flagged if f[1] != "all"), None)
            if seg is not None:
                ins.dimension, ins.dimension_value = seg[1], seg[2]
        else:
            ins.dimension, ins.dimension_value, ins.explained_share = top.dimension, top.value, top.ep
            ins.segment_before, ins.segment_after = top.before, top.after
        rel = (ins.after - ins.before) / ins.before if ins.before else 0.0
        if top is not None and abs(rel) < 0.05 and top.before:
            rel = (top.after - top.before) / top.before
        ins.severity = severity(rel)
        ins.updated_at = now
        ins.revision += 1
        ins.text = text(m, ins)


def where(dimension: str, value: str | None) -> str:
    """A dimension value in words ("device mobile", "variant B of experiment exp-home")."""
    if dimension == "experiment" and value and ":" in value:
        exp, var = value.rsplit(":", 1)
        return f"variant {var or '(none)'} of experiment {exp}"
    return f"{dimension} {value}"


def text(m: Metric, ins: Insight) -> str:
    """One sentence: what moved, from what to what, since when, and where."""
    up = ins.after >= ins.before if ins.before != ins.after else ins.direction > 0
    since = datetime.fromtimestamp(ins.started_at / 1000, UTC).strftime("%H:%M")
    s = f"{m.label} {'rose' if up else 'fell'} from {fmt(m, ins.before)} to {fmt(m, ins.after)} since {since} UTC"
    if ins.dimension:
        share = f"{min(ins.explained_share, 1.0):.0%} of the {'rise' if up else 'drop'} is on" \
            if ins.explained_share > 0 else "concentrated on"
        s += f"; {share} {where(ins.dimension, ins.dimension_value)}"
        if ins.segment_before is not None and ins.segment_after is not None:
            s += f" ({fmt(m, ins.segment_before)} to {fmt(m, ins.segment_after)})"
    if ins.status == "closed":
        s += "; back to normal" if ins.ended_at else ""
    return s + "."
