"""``aura import`` against the real stack: a fixture CSV with bad rows, imported (interrupted, resumed,
then run again from the start) into one isolated prefix with a worker running, builds the same
profiles and analytics counters as the same events produced by the live producer path into a second
prefix; ``--strict`` refuses the file with exit code 2 and produces nothing."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition

from aura import bootstrap, layout
from aura.keys import RedisKeys
from aura.producer import EventProducer
from aura.settings import REPO_ROOT, Settings, settings_env
from aura.state import profile_codec
from tests.conftest import wait_for

pytestmark = [pytest.mark.integration]

N_GOOD = 300
N_AFTER = 40
TYPES = ("view", "view", "add_to_cart", "rating", "purchase")
ITEMS = [f"i{n}" for n in range(41)]


def fixture_rows(now_s: int) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """The good events (as the stream path sends them) and the CSV rows, bad ones spread in."""
    good: list[dict[str, Any]] = []
    rows: list[list[str]] = []
    for i in range(N_GOOD):
        t = now_s - 6 * 3600 + i * 37
        etype = TYPES[i % len(TYPES)]
        value = float(1 + i % 5) if etype == "rating" else None
        user, item = f"u{i % 23}", f"i{(i * 7) % 41}"
        price, order = (f"{5 + i % 9}.25", f"o{i}") if etype == "purchase" else ("", "")
        ev = {"event_id": uuid.uuid4().hex, "event_type": etype, "user_id": user, "item_id": item,
              "event_time": t * 1000, "value": value, "context": {}, "properties": {"source": "import"}}
        if etype == "purchase":
            ev["order"] = {"order_id": order, "currency": "EUR",
                           "lines": [{"item_id": item, "quantity": 1 + i % 3, "unit_price": float(price)}]}
        good.append(ev)
        iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        rows.append([user, item, etype, str(t) if i % 2 else iso, "" if value is None else f"{value:g}", price,
                     str(1 + i % 3) if order else "", order])
        if i % 60 == 13:  # bad rows: no user, a time that is no time, an unknown type, a non-number, too old
            rows.append(["", item, "view", str(t), "", "", "", ""])
            rows.append([user, item, "view", "last tuesday", "", "", "", ""])
            rows.append([user, item, "teleport", str(t), "", "", "", ""])
            rows.append([user, item, "rating", str(t), "five", "", "", ""])
            rows.append([user, item, "view", str(t - 900 * 86400), "", "", "", ""])
            rows.append([user, item, "purchase", str(t), "", "", "1", "o-free"])  # a purchase without a price
    return good, rows


def run_cli(s: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "aura.cli", "import", *args], cwd=REPO_ROOT,  # noqa: S603
                          env={**os.environ, **settings_env(s)}, capture_output=True, text=True,
                          timeout=300, check=False)


def end_offsets(s: Settings) -> int:
    topic = layout.topic(s, layout.BEHAVIOR)
    c = Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": f"wm-{uuid.uuid4()}"})
    try:
        return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                   for p in range(s.kafka.topic_partitions))
    finally:
        c.close()


def item_lists(redis: Any, keys: RedisKeys, items: list[str]) -> dict[str, dict[str, float]]:
    """The item side: the popularity list and each item's co-occurrence and also-bought lists
    (member -> score; scores rounded: floating sums of one set of entries in another order)."""
    def zset(key: str) -> dict[str, float]:
        return {(m.decode() if isinstance(m, bytes) else m): round(float(v), 6)
                for m, v in redis.zrange(key, 0, -1, withscores=True)}

    lists = {"popular": zset(keys.recs_popular())}
    for i in items:
        lists[f"cooc:{i}"] = zset(keys.recs_item_cooc(i))
        lists[f"bought:{i}"] = zset(keys.recs_item_bought(i))
    return lists


def state(redis: Any, s: Settings, users: list[str]) -> tuple[dict[str, Any], dict[str, float], dict[str, Any]]:
    """Each user's profile (without its offset fences and version), the analytics counters summed
    over partitions, per grain, bucket and metric, and the item lists."""
    keys = RedisKeys(s.redis.prefix)
    profiles: dict[str, Any] = {}
    for u in users:
        p = profile_codec.read_sync(redis, keys, u)
        if p is not None:
            profiles[u] = {k: v for k, v in p.__dict__.items() if k not in ("fences", "version")}
    counters: dict[str, float] = defaultdict(float)
    for key in redis.scan_iter(f"{s.redis.prefix}:an:*", count=1000):
        name = key.decode() if isinstance(key, bytes) else key
        parts = name.split(":")
        if ":hll:" in name or parts[-1] == "fence" or redis.type(key) not in (b"hash", "hash"):
            continue
        for metric, v in redis.hgetall(key).items():
            m = metric.decode() if isinstance(metric, bytes) else metric
            counters[f"{parts[-2]}:{parts[-1]}:{m}"] += float(v)
    return profiles, dict(counters), item_lists(redis, keys, ITEMS)


@pytest.fixture
def second(isolated: Settings) -> Any:
    """A second isolated prefix (the stream path's), dropped afterwards."""
    from infra.migrate import drop_topics, ensure_topics

    tag = f"t{uuid.uuid4().hex[:10]}"
    s = isolated.replace(topic_prefix=tag, redis_prefix=tag, consumer_group=f"{tag}-worker")
    ensure_topics(s, layout.ALL_TOPICS)
    redis = bootstrap.redis_sync(s)
    yield s
    for key in redis.scan_iter(f"{tag}:*", count=1000):
        redis.delete(key)
    redis.close()
    drop_topics(s, tag)


def test_import_builds_the_state_the_stream_builds(isolated, second, worker_factory, redis_client, tmp_path: Path):
    now_s = int(time.time())
    good, rows = fixture_rows(now_s)
    src = tmp_path / "history.csv"
    with open(src, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["customer", "sku", "kind", "at", "stars", "price", "qty", "order"])
        w.writerows(rows)
    flags = ["--user-col", "customer", "--item-col", "sku", "--type-col", "kind", "--time-col", "at",
             "--value-col", "stars", "--quantity-col", "qty", "--order-col", "order", "--currency", "EUR"]

    strict = run_cli(isolated, str(src), *flags, "--strict")
    assert strict.returncode == 2, strict.stdout + strict.stderr
    assert "30 bad rows; nothing produced" in strict.stdout
    assert "line 16: missing_user" in strict.stderr
    assert end_offsets(isolated) == 0

    # the stream path: the good events through the producer helper, into the second prefix
    worker_factory(second, name="stream")
    live = EventProducer(second, bootstrap.kafka_producer(second))
    for ev in good:
        live.send(dict(ev))
    assert live.flush(60).failed == 0

    # the import: stopped after 120 rows, resumed, then the whole file again (deduplicated by event id)
    worker_factory(isolated, name="import")
    first = run_cli(isolated, str(src), *flags, "--stop-after", "120", "--chunk", "50")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "stopped at line" in first.stdout
    resumed = run_cli(isolated, str(src), *flags, "--chunk", "50")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "resumed after line" in resumed.stdout
    skipped = [ln for ln in (first.stderr + resumed.stderr).splitlines() if "skipped line" in ln]
    reasons = {ln.split(": ")[1] for ln in skipped}
    assert len(skipped) == 30 and {"event_time_too_old", "missing_price", "unknown_event_type"} <= reasons, skipped
    again = run_cli(isolated, str(src), *flags, "--restart")
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"imported {N_GOOD} events rows" in again.stdout

    users = sorted({ev["user_id"] for ev in good})
    intake = RedisKeys(isolated.redis.prefix).intake_count()
    wait_for(lambda: int(redis_client.hget(intake, "accepted") or 0) >= N_GOOD
             and int(redis_client.hget(intake, "duplicate") or 0) >= N_GOOD, timeout=180, what="the import folded")
    live_redis = bootstrap.redis_sync(second)
    try:
        wait_for(lambda: int(live_redis.hget(RedisKeys(second.redis.prefix).intake_count(), "accepted") or 0)
                 >= N_GOOD, timeout=180, what="the stream path folded")
        got, expected = same_state(redis_client, isolated, live_redis, second, users, N_GOOD)
        assert got == expected
        assert got[2]["popular"] and any(got[2][f"cooc:{i}"] for i in ITEMS)  # the item side is compared too
        assert int(redis_client.hget(intake, "accepted")) == N_GOOD  # resume and re-run counted nothing twice

        # live events after the import: folded once on top of it, as on top of the streamed history;
        # then the whole file imported once more changes nothing
        after = [{"event_id": uuid.uuid4().hex, "event_type": TYPES[i % 4], "user_id": f"u{i % 23}",
                  "item_id": f"i{(i * 11) % 41}", "event_time": (now_s - 60 + i) * 1000,
                  "value": 4.0 if TYPES[i % 4] == "rating" else None, "context": {}, "properties": {}}
                 for i in range(N_AFTER)]
        for target in (isolated, second):
            p = EventProducer(target, bootstrap.kafka_producer(target))
            for ev in after:
                p.send(dict(ev))
            assert p.flush(60).failed == 0
        again = run_cli(isolated, str(src), *flags, "--restart")
        assert again.returncode == 0, again.stdout + again.stderr
        got2, expected2 = same_state(redis_client, isolated, live_redis, second, users, N_GOOD + N_AFTER)
        assert got2 == expected2 and got2 != got
        wait_for(lambda: int(redis_client.hget(intake, "duplicate") or 0) >= 2 * N_GOOD, timeout=180,
                 what="the second re-run deduplicated")
        assert int(redis_client.hget(intake, "accepted")) == N_GOOD + N_AFTER
        assert state(redis_client, isolated, users) == got2
    finally:
        live_redis.close()


def same_state(redis_a: Any, a: Settings, redis_b: Any, b: Settings, users: list[str], events: int) -> Any:
    """Both prefixes' states once the second has folded ``events`` and the two are equal (bounded wait)."""
    def same() -> Any:
        x, y = state(redis_a, a, users), state(redis_b, b, users)
        folded = sum(sum(p["counts"].values()) for p in y[0].values()) == events
        return (x, y) if folded and x == y else None

    try:
        return wait_for(same, timeout=180, what=f"the imported state to equal the stream's at {events} events")
    except Exception:
        x, y = state(redis_a, a, users), state(redis_b, b, users)
        assert x[0] == y[0]
        assert x[1] == y[1]
        assert x[2] == y[2]
        raise


def test_catalog_import_upserts_items(isolated, worker_factory, redis_client, tmp_path: Path):
    src = tmp_path / "products.jsonl"
    src.write_text('{"sku": "k1", "title": "Chef knife", "path": "home/kitchen", "price": "49.9", "color": "red"}\n'
                   '{"sku": "k2", "path": "home"}\n'
                   'not json\n'
                   '{"sku": "k3", "title": "Board", "price": 12}\n')
    worker_factory()
    out = run_cli(isolated, "catalog", str(src), "--item-col", "sku", "--categories-col", "path",
                  "--category-sep", "/", "--meta-col", "color")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "imported 2 catalog rows" in out.stdout and "skipped 2 bad rows" in out.stdout
    assert "line 2: missing_title" in out.stderr and "line 3: bad_json" in out.stderr
    keys = RedisKeys(isolated.redis.prefix)
    meta = wait_for(lambda: redis_client.hgetall(keys.recs_item_meta("k1")), timeout=90, what="item k1")
    assert meta["title"] == "Chef knife" and meta["categories"] == '["home", "kitchen"]'
    assert meta["metadata"] == '{"color": "red"}' and float(meta["price"]) == 49.9
    assert wait_for(lambda: redis_client.hget(keys.recs_item_meta("k3"), "title"), timeout=90) == "Board"
    assert not redis_client.exists(keys.recs_item_meta("k2"))
