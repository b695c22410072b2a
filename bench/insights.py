"""Insight detection benchmark: seeded scenarios with injected incidents of known start, size and
dimension, run through the insight engine (aura/insights) and through a rolling mean + 3 sigma
baseline on the same series, in the same run. No services.

    .venv/bin/python -m bench.insights --seeds 10

Traffic: bench/insight_traffic.py (seeded scenarios, one incident every ~3 hours).

Scores: an insight is *true* when it opens between an incident's start and 10 minutes after its
end (on another metric it is a consequence: a conversion drop lowers revenue), *false* otherwise;
an incident is detected by an insight of its own metric in that window; recall = detected incidents / incidents;
delay = opening minute - incident start (event time); top explanation right = the insight's
dimension and value (at its last revision) are the injected ones. CPU = process time of the engine
per 1,000 series points.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from aura.insights.detect import DetectorConfig
from aura.insights.engine import METRICS, MINUTE, Engine, pair
from aura.insights.explain import ratio
from bench.insight_traffic import (
    ALL_KINDS,
    DAY_MIN,
    KINDS,
    T0_MS,
    WARMUP_MIN,
    Scenario,
    make_scenario,
    records,
)

# ---------------------------------------------------------------------------------------------
# detectors under test


@dataclass
class Found:
    metric: str
    opened: int          # minute index
    dimension: str | None
    value: str | None


def run_engine(sc: Scenario, views_peak: float, t0_ms: int = T0_MS,
               cfg: DetectorConfig | None = None) -> tuple[list[Found], float, int]:
    eng = Engine(cfg or DetectorConfig())
    found: dict[str, Found] = {}
    cpu = 0.0
    for start, recs in records(sc, views_peak, t0_ms):
        c0 = time.process_time()
        for r in recs:
            eng.add(r)
        changed = eng.flush(start + eng.settle_ms)
        cpu += time.process_time() - c0
        for ins in changed:
            f = found.get(ins.insight_id)
            if f is None:
                f = found[ins.insight_id] = Found(ins.metric, (ins.detected_at - t0_ms) // MINUTE, None, None)
            f.dimension, f.value = ins.dimension, ins.dimension_value
    return list(found.values()), cpu, eng.points


def run_baseline(sc: Scenario, views_peak: float, window: int = 30, k: float = 3.0,
                 merge_gap: int = 10) -> list[Found]:
    """Rolling mean + k sigma per series (same series as the engine); alerts of one metric less than
    ``merge_gap`` minutes apart are one incident; its explanation is the dimension value whose series
    was furthest out when it opened."""
    hist: dict[str, deque[float]] = {}
    last_alert: dict[str, int] = {}
    found: list[Found] = []
    for minute, (_start, recs) in enumerate(records(sc, views_peak)):
        alerts: dict[str, tuple[float, str, str]] = {}
        for r in recs:
            counters = {"views": r["events"].get("view", 0), "orders": r["orders"], "revenue": r["revenue"],
                        "impressions": r["events"].get("impression", 0),
                        "clicks": r["events"].get("recommendation_click", 0)}
            for m in METRICS.values():
                if r["dimension"] != "all" and r["dimension"] not in m.dims or r["dimension"] == "all" and m.total:
                    continue
                n, d = pair(m, counters)
                if m.kind == "rate" and d <= 0:
                    continue
                y = ratio((n, d), m.kind == "rate")
                key = f"{m.name}|{r['dimension']}|{r['dimension_value']}"
                h = hist.setdefault(key, deque(maxlen=window))
                if len(h) == window and minute >= WARMUP_MIN // 4:
                    mu = sum(h) / window
                    sd = math.sqrt(sum((x - mu) ** 2 for x in h) / window) or 1e-9
                    z = (y - mu) / sd
                    if abs(z) > k and abs(z) > abs(alerts.get(m.name, (0.0, "", ""))[0]):
                        alerts[m.name] = (z, r["dimension"], r["dimension_value"])
                h.append(y)
        for metric, (_z, dim, val) in alerts.items():
            if minute - last_alert.get(metric, -10**9) >= merge_gap:
                found.append(Found(metric, minute, None if dim == "all" else dim, val or None))
            last_alert[metric] = minute
    return found


def oracle_delays(sc: Scenario, views_peak: float, drop: float, series: int) -> list[int]:
    """The statistical floor of the conversion-drop delay: per conversion incident, a CUSUM of the
    binomial log-likelihood ratio on the injected device's series that knows the pre-incident rate
    (0.04), the drop's size, the series and the start (it starts at zero there), alarming at
    ln(1440 x ``series``) nats, which keeps ``series`` watched series at about one false alarm a
    day (Lorden). No detector that must learn the rate and search the series does better on average."""
    p0 = 0.04
    p1 = p0 * (1 - drop)
    h = math.log(DAY_MIN * series)
    a, b = math.log(p1 / p0), math.log((1 - p1) / (1 - p0))
    minutes = list(records(sc, views_peak))
    out: list[int] = []
    for inc in sc.incidents:
        if inc.metric != "conversion":
            continue
        cu = 0.0
        for m in range(inc.start, min(inc.end, len(minutes))):
            rec = next(r for r in minutes[m][1] if r["dimension"] == inc.dimension
                       and r["dimension_value"] == inc.value)
            v, o = rec["events"].get("view", 0), rec["orders"]
            cu = max(0.0, cu + o * a + (v - o) * b)
            if cu >= h:
                out.append(m - inc.start)
                break
    return out


# ---------------------------------------------------------------------------------------------
# scoring


@dataclass
class Score:
    incidents: int = 0
    detected: int = 0
    true_alerts: int = 0
    false_alerts: int = 0
    explained: int = 0
    delays: list[int] = field(default_factory=list)
    conv_delays: list[int] = field(default_factory=list)
    by_metric: dict[str, list[int]] = field(default_factory=dict)  # metric -> [incidents, detected, explained]
    false_by_metric: dict[str, int] = field(default_factory=dict)
    misses: list[str] = field(default_factory=list)

    def add(self, sc: Scenario, found: list[Found]) -> None:
        self.incidents += len(sc.incidents)
        for inc in sc.incidents:
            self.by_metric.setdefault(inc.metric, [0, 0, 0])[0] += 1
        matched: set[int] = set()
        for f in found:
            hit = next((i for i, inc in enumerate(sc.incidents)
                        if inc.metric == f.metric and inc.start <= f.opened <= inc.end + 10), None)
            if hit is None:
                # an insight on another metric during an incident is its consequence (a conversion
                # drop on desktop lowers desktop revenue): true, but it detects nothing by itself
                if any(inc.start <= f.opened <= inc.end + 10 for inc in sc.incidents):
                    self.true_alerts += 1
                else:
                    self.false_alerts += 1
                    self.false_by_metric[f.metric] = self.false_by_metric.get(f.metric, 0) + 1
                    self.misses.append(f"seed {sc.seed}: false {f.metric} at minute {f.opened} "
                                       f"({f.dimension}={f.value})")
                continue
            self.true_alerts += 1
            if hit in matched:
                continue
            matched.add(hit)
            inc = sc.incidents[hit]
            self.delays.append(f.opened - inc.start)
            if inc.metric == "conversion":
                self.conv_delays.append(f.opened - inc.start)
            row = self.by_metric[inc.metric]
            row[1] += 1
            if (f.dimension, f.value) == (inc.dimension, inc.value):
                self.explained += 1
                row[2] += 1
            else:
                self.misses.append(f"seed {sc.seed}: {inc.metric} {inc.dimension}={inc.value} explained as "
                                   f"{f.dimension}={f.value}")
        for i, inc in enumerate(sc.incidents):
            if i not in matched:
                self.misses.append(f"seed {sc.seed}: missed {inc.metric} {inc.dimension}={inc.value} "
                                   f"at minute {inc.start}")
        self.detected += len(matched)


def _pct(xs: list[int], q: float) -> float:
    return float(np.percentile(xs, q)) if xs else float("nan")


def report(name: str, s: Score, false_clean: int, clean_days: float) -> str:
    alerts = s.true_alerts + s.false_alerts
    per = "  ".join(f"{m} {r[1]}/{r[0]} detected, {r[2]} explained" for m, r in sorted(s.by_metric.items()))
    return (f"{name:9s} recall {s.detected / max(1, s.incidents):.3f}  precision {s.true_alerts / max(1, alerts):.3f}  "
            f"top explanation {s.explained / max(1, s.detected):.3f}  delay p50 {_pct(s.delays, 50):.1f} "
            f"p90 {_pct(s.delays, 90):.1f} min  conversion-drop delay p50 {_pct(s.conv_delays, 50):.1f} min  "
            f"false alerts per clean day {false_clean / max(1e-9, clean_days):.2f}  "
            f"({s.incidents} incidents, {alerts} alerts)\n{'':10s}{per}; false alerts on incident days by metric "
            f"{dict(sorted(s.false_by_metric.items()))}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first-seed", type=int, default=0,
                    help="scenario seeds are first-seed .. first-seed + seeds - 1 (tune on others than you report)")
    ap.add_argument("--cusum-h", type=float, default=DetectorConfig.cusum_h,
                    help="alarm level of the engine's sequential test (nats)")
    ap.add_argument("--season-kinds", default=",".join(DetectorConfig.season_kinds),
                    help="series kinds with hour-of-day factors (comma-separated; empty: none)")
    ap.add_argument("--season-after", type=int, default=DetectorConfig.season_after,
                    help="points of a series before its hour-of-day factors apply")
    ap.add_argument("--verbose", action="store_true", help="list the engine's misses and false alerts")
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--views", type=float, default=3000.0, help="product views per minute at the daily peak")
    ap.add_argument("--drop", type=float, default=0.3, help="size of the injected conversion drop")
    ap.add_argument("--kinds", default=",".join(KINDS),
                    help=f"incident kinds drawn (comma-separated, of {','.join(ALL_KINDS)})")
    args = ap.parse_args(argv)
    ours, base = Score(), Score()
    false_ours = false_base = 0
    cpu = 0.0
    points = 0
    clean_false: list[str] = []
    oracle: list[int] = []
    kinds = tuple(k for k in args.kinds.split(",") if k)
    if not kinds or set(kinds) - set(ALL_KINDS):
        ap.error(f"--kinds: choose among {', '.join(ALL_KINDS)}")
    cfg = DetectorConfig(cusum_h=args.cusum_h, season_kinds=tuple(k for k in args.season_kinds.split(",") if k),
                         season_after=args.season_after)
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        sc = make_scenario(seed, args.days, args.drop, kinds=kinds)
        found, c, p = run_engine(sc, args.views, cfg=cfg)
        cpu += c
        points += p
        ours.add(sc, found)
        base.add(sc, run_baseline(sc, args.views))
        oracle += oracle_delays(sc, args.views, args.drop, series=p // max(1, sc.minutes))
        # the clean day is the last of a clean run as long as the scenarios (at least two days): a
        # running engine has seen the days before (its hour-of-day factors)
        clean_len = max(2, args.days)
        clean = make_scenario(seed + 10_000, clean_len, args.drop, clean=True)
        found, c, p = run_engine(clean, args.views, cfg=cfg)
        cpu += c
        points += p
        last_day = (clean_len - 1) * DAY_MIN
        false_ours += sum(1 for f in found if f.opened >= last_day)
        clean_false += [f"clean seed {seed + 10_000}: {f.metric} at minute {f.opened} ({f.dimension}={f.value})"
                        for f in found if f.opened >= last_day]
        false_base += sum(1 for f in run_baseline(clean, args.views) if f.opened >= last_day)
    clean_days = args.seeds
    print(f"seeds {args.first_seed}..{args.first_seed + args.seeds - 1} x {args.days} days + 1 clean day "
          f"(after {max(2, args.days) - 1} clean day(s) of warm-up) each; "  # noqa: T201
          f"{args.views:.0f} views/min at peak; conversion drop {args.drop:.0%}")
    print(report("engine", ours, false_ours, clean_days))  # noqa: T201
    print(report("baseline", base, false_base, clean_days))  # noqa: T201
    print(f"oracle    conversion-drop delay p50 {_pct(oracle, 50):.1f} p90 {_pct(oracle, 90):.1f} min "  # noqa: T201
          f"(known rate, size, series and start; {len(oracle)} incidents)")
    if args.verbose:
        for line in [*ours.misses, *clean_false]:
            print("  " + line)  # noqa: T201
    print(f"engine CPU: {cpu / max(1, points) * 1e6:.1f} ms per 1,000 metric points ({points} points)")  # noqa: T201


if __name__ == "__main__":
    main()
