"""The engine over synthetic minute aggregates with injected incidents (bench/insight_traffic.py's
generator): one insight per incident, naming the injected dimension, closed after recovery; a state
saved mid-incident and restored continues exactly as if nothing happened."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from aura.insights.engine import METRICS, MINUTE, Engine, record_counters
from aura.state import insights as state
from bench.insight_traffic import T0_MS, Incident, Scenario, records


def run(sc: Scenario, eng: Engine | None = None, views: float = 3000.0) -> tuple[Engine, dict[str, list]]:
    eng = eng or Engine()
    seen: dict[str, list] = {}
    for start, recs in records(sc, views):
        for r in recs:
            eng.add(r)
        for ins in eng.flush(start + eng.settle_ms):
            seen.setdefault(ins.insight_id, []).append((ins.status, ins.revision, ins.dimension, ins.dimension_value))
    return eng, seen


@pytest.fixture(scope="module")
def conversion_drop() -> tuple[Engine, dict[str, list], Scenario]:
    sc = Scenario(seed=11, minutes=260, incidents=[Incident("conversion", "device", "mobile", 150, 200, 0.6)])
    eng, seen = run(sc)
    return eng, seen, sc


def test_one_insight_for_the_incident_naming_the_device(conversion_drop) -> None:  # noqa: ANN001
    eng, seen, _sc = conversion_drop
    conv = {k: v for k, v in seen.items() if k.startswith("conversion-")}
    assert len(conv) == 1, seen
    (iid, history), = conv.items()
    started = int(iid.split("-")[1])
    assert T0_MS + 140 * MINUTE <= started <= T0_MS + 160 * MINUTE
    last = history[-1]
    assert last[0] == "closed" and last[2:] == ("device", "mobile")
    assert [h[1] for h in history] == sorted(h[1] for h in history)  # revisions grow
    assert not eng.open


def test_text_says_what_fell_and_where(conversion_drop) -> None:  # noqa: ANN001
    eng, _seen, sc = conversion_drop
    sc2 = Scenario(seed=11, minutes=175, incidents=sc.incidents)
    _eng, seen = run(sc2)
    eng2, _ = run(sc2)
    ins = eng2.open.get("conversion")
    assert ins is not None and ins.status == "open"
    assert ins.text.startswith("Checkout conversion fell from ")
    assert "of the drop is on device mobile" in ins.text
    assert ins.severity in ("warning", "critical")
    assert ins.causes[0]["dimension"] == "device"


def test_restart_mid_incident_neither_duplicates_nor_loses() -> None:
    sc = Scenario(seed=12, minutes=240, incidents=[Incident("ctr", "placement", "homepage", 130, 180, 0.4)])
    all_recs = list(records(sc, 3000.0))
    straight = Engine()
    out_a: list = []
    for start, recs in all_recs:
        for r in recs:
            straight.add(r)
        out_a += [(i.insight_id, i.status, i.revision, i.text) for i in straight.flush(start + straight.settle_ms)]
    eng = Engine()
    out_b: list = []
    for n, (start, recs) in enumerate(all_recs):
        if n == 150:  # mid-incident: save, throw away, restore
            blob = state.pack(state.Saved(eng, {0: n}))
            eng = state.unpack(blob, 1).engine
        for r in recs:
            eng.add(r)
        out_b += [(i.insight_id, i.status, i.revision, i.text) for i in eng.flush(start + eng.settle_ms)]
    assert out_a == out_b
    assert len({i[0] for i in out_a if i[0].startswith("ctr-")}) == 1


def test_late_and_old_revisions() -> None:
    eng = Engine()
    rec = {"window_start": T0_MS, "dimension": "all", "dimension_value": "", "events": {"view": 10},
           "orders": 1, "revenue": 5.0, "revision": 3}
    eng.add(rec)
    eng.add({**rec, "events": {"view": 4}, "revision": 1})  # older revision after a newer one: ignored
    assert eng.pending[T0_MS][("all", "")]["views"] == 10
    eng.add({**rec, "window_start": T0_MS + 5 * MINUTE})
    eng.flush()
    assert eng.add(rec) is False and eng.late == 1


@pytest.mark.parametrize("bad", [
    {"window_start": 0, "events": {"view": -1}},
    {"window_start": 0, "events": {"view": float("nan")}},
    {"window_start": 0, "events": {"view": float("inf")}},
    {"window_start": 0},
])
def test_malformed_counters_are_refused(bad: dict) -> None:
    with pytest.raises((ValueError, KeyError, TypeError)):
        record_counters(bad)


def test_a_minute_is_final_only_when_every_partition_passed_it() -> None:
    eng = Engine(settle_ms=0)
    rec = {"window_start": T0_MS, "dimension": "all", "dimension_value": "", "events": {"view": 10},
           "orders": 1, "revenue": 5.0, "revision": 1}
    eng.add(rec, partition=0)
    eng.add({**rec, "window_start": T0_MS + 30 * MINUTE}, partition=0)  # partition 0 is far ahead
    eng.add({**rec, "window_start": T0_MS, "dimension": "device", "dimension_value": "mobile"}, partition=1)
    eng.flush()
    assert eng.last_minute == T0_MS  # partition 1 has only reached the first minute
    late = {**rec, "window_start": T0_MS + MINUTE, "dimension": "device", "dimension_value": "mobile"}
    assert eng.add(late, partition=1) is True  # not late: minute 1 was waiting for partition 1


def test_a_flare_up_soon_after_the_close_reopens_the_same_insight() -> None:
    sc = Scenario(seed=13, minutes=330, incidents=[Incident("conversion", "device", "mobile", 150, 190, 0.5),
                                                    Incident("conversion", "device", "mobile", 220, 250, 0.5)])
    _eng, seen = run(sc)
    conv = {k: v for k, v in seen.items() if k.startswith("conversion-")}
    assert len(conv) == 1, conv
    statuses = [h[0] for h in next(iter(conv.values()))]
    first_close = statuses.index("closed")
    assert "open" in statuses[first_close:], statuses  # closed, then re-opened by the flare-up
    assert statuses[-1] == "closed"


def test_a_surge_on_the_morning_ramp_closes_and_the_next_incident_gets_its_own_insight() -> None:
    # counts follow the day: the expectation before the surge is carried along its slope, so the
    # insight closes when the surge ends although the day kept rising meanwhile
    sc = Scenario(seed=103, minutes=640, incidents=[Incident("views", "category", "electronics", 360, 410, 2.5),
                                                    Incident("views", "category", "sports", 555, 596, 2.5)])
    eng, seen = run(sc)
    views = sorted(k for k in seen if k.startswith("views-"))
    assert len(views) == 2, seen
    first = seen[views[0]][-1]
    assert first[0] == "closed" and first[2:] == ("category", "electronics")
    assert seen[views[1]][-1][2:] == ("category", "sports")


@pytest.fixture(scope="module")
def variant_drop() -> tuple[Engine, dict[str, list]]:
    sc = Scenario(seed=13, minutes=300, incidents=[
        Incident("variant_conversion", "experiment", "exp-homepage:B", 150, 230, 0.1)])
    return run(sc, views=10000.0)


def test_a_variant_conversion_drop_is_one_insight_naming_the_variant(variant_drop) -> None:  # noqa: ANN001
    eng, seen = variant_drop
    ids = [k for k in seen if k.startswith("variant_conversion-")]
    assert len(ids) == 1, seen
    history = seen[ids[0]]
    assert T0_MS + 135 * MINUTE <= int(ids[0].rsplit("-", 1)[1]) <= T0_MS + 170 * MINUTE
    assert history[-1][0] == "closed" and history[-1][2:] == ("experiment", "exp-homepage:B")
    # nothing else of the shop moved: no other metric raised an insight
    assert all(k.startswith(("variant_conversion-", "variant_revenue-")) for k in seen), seen
    assert not eng.open


def test_the_variant_text_names_the_experiment_and_the_variant() -> None:
    sc = Scenario(seed=13, minutes=200, incidents=[
        Incident("variant_conversion", "experiment", "exp-homepage:B", 150, 230, 0.1)])
    eng, _seen = run(sc, views=10000.0)
    ins = eng.open["variant_conversion"]
    assert ins.text.startswith("Conversion of recommendation clicks fell from "), ins.text
    assert "of the drop is on variant B of experiment exp-homepage (" in ins.text, ins.text
    assert ins.focus == "conversion" and ins.segment_after < 0.7 * ins.segment_before
    # the total is the traffic in experiments: the sum of the variants, not the shop's orders / clicks
    assert 0.03 < ins.before < 0.2


def test_a_state_saved_before_the_variant_metrics_loads_and_goes_on() -> None:
    """data/engine_4_metrics.pickle.gz: an engine of the four first metrics (conversion, revenue, views,
    CTR) after minutes 0-89 of bench seed 21, packed by the code of that time. Restored, it watches the
    variant metrics too, and its old series continue exactly as in an engine that ran all along."""
    blob = gzip.decompress((Path(__file__).parent / "data" / "engine_4_metrics.pickle.gz").read_bytes())
    saved = state.unpack(blob, 5)
    assert saved.offsets == {0: 89, 1: 88} and saved.seq == 5
    old = saved.engine
    assert old.metrics == ("conversion", "revenue", "views", "ctr", "variant_conversion", "variant_revenue",
                           "campaign_failures", "campaign_clicks") == tuple(METRICS)
    assert "campaign_last" not in old.__dict__  # a field the old engine did not have
    assert old.add_campaign({"campaign_id": "c", "sent": 5, "emitted_at": T0_MS + 95 * MINUTE})
    straight = Engine()
    for n, (start, recs) in enumerate(records(Scenario(seed=21, minutes=180), 3000.0)):
        for eng in (straight, old) if n >= 90 else (straight,):
            for r in recs:
                eng.add(r)
            eng.flush(start + eng.settle_ms)
    assert old.last_minute == straight.last_minute
    firsts = [k for k in straight.models if not k.startswith("variant_")]
    assert firsts and set(firsts) <= set(old.models)
    hour = 2
    assert [old.models[k].expected(hour) for k in firsts] == [straight.models[k].expected(hour) for k in firsts]
    assert old.models["variant_conversion|experiment|exp-homepage:B"].n == 90
    # a state saved now lists the metrics it knew: a narrowed engine stays narrowed
    narrow = state.unpack(state.pack(state.Saved(Engine(metrics=("views",)))), 1).engine
    assert narrow.metrics == ("views",)
