"""Segment enter/leave and scheduled campaigns end to end: events and identities in through Kafka,
the worker's segment transitions and schedule expansion, the email connector, and messages counted
at the local stack's real SMTP server (accepted.log: every acceptance, copies included)."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from aura import bootstrap
from aura.producer import EventProducer
from aura.state import maildir
from streams import connectors
from tests.conftest import wait_for
from tests.e2e.test_campaigns import (  # noqa: F401 - a fixture
    campaigns,
    many_users_with_email,
    user_with_email,
    wait_for_identities,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
NO_CAP = {"per_user": 0, "per_campaign_user": 0, "window_s": 86400}  # a duplicate would reach the server


def accepted(s, addresses: set[str]) -> list[list[str]]:
    """(time, Message-ID, recipient, new|duplicate) of every message the server accepted for ``addresses``."""
    log = Path(maildir.root(s)) / "accepted.log"
    lines = log.read_text().splitlines() if log.exists() else []
    return [ln.split("\t") for ln in lines if ln.split("\t")[2] in addresses]


def subjects(s, address: str) -> list[str]:
    return [m["subject"] for m in maildir.list_messages(maildir.root(s), limit=100_000, to=address)]


def views(producer: EventProducer, user: str, n: int, t0: int, tag: str = "v") -> None:
    for i in range(n):
        producer.send({"event_id": f"{user}-{tag}{i}", "event_type": "view", "user_id": user,
                       "item_id": f"item{i}", "event_time": t0 + i})


def test_entering_and_leaving_a_segment_send_one_message_each(isolated, worker_factory, api_client, redis_client,
                                                              campaigns):  # noqa: F811
    s = isolated.replace(campaign_tick_s=0.05)
    worker_factory(s)
    tag = f"sg{uuid.uuid4().hex[:8]}"
    template = {"subject": "{{ event.event_type }} {{ event.properties.segment }} for {{ user.id }}", "body": "hi"}
    # window_shopper (built in): at least 20 views and no order; a purchase leaves it
    campaigns({"id": f"{tag}-in", "channel": "email", "caps": NO_CAP, "template": template,
               "trigger": {"type": "segment", "segment": "window_shopper", "on": "enter"}})
    campaigns({"id": f"{tag}-out", "channel": "email", "caps": NO_CAP, "template": template,
               "trigger": {"type": "segment", "segment": "window_shopper", "on": "leave"}})
    producer = EventProducer(s, bootstrap.kafka_producer(s))
    ann, ann_mail = user_with_email(producer, tag, "ann")
    bob, bob_mail = user_with_email(producer, tag, "bob")
    wait_for_identities(s, redis_client, producer, [ann, bob])
    now = int(time.time() * 1000)
    views(producer, ann, 25, now)
    views(producer, bob, 5, now)  # never joins
    assert producer.flush().failed == 0
    wait_for(lambda: subjects(s, ann_mail), timeout=90, what="ann's enter message")
    # more views (still a member) and a replay of the same events change no membership: no message
    views(producer, ann, 25, now)
    views(producer, ann, 5, now + 100, tag="w")
    producer.send({"event_id": f"{ann}-buy", "event_type": "purchase", "user_id": ann, "event_time": now + 1000,
                   "order": {"order_id": f"{ann}-o", "currency": "EUR",
                             "lines": [{"item_id": "item1", "quantity": 1, "unit_price": 10.0}]}})
    assert producer.flush().failed == 0
    wait_for(lambda: len(subjects(s, ann_mail)) >= 2, timeout=90, what="ann's leave message")
    assert sorted(subjects(s, ann_mail)) == [f"segment_enter window_shopper for {ann}",
                                             f"segment_leave window_shopper for {ann}"]
    assert len(accepted(s, {ann_mail})) == 2  # no copy reached the server either
    assert subjects(s, bob_mail) == []
    # the transitions were consumed: the stream keeps only the cursor's entry
    key = f"{s.redis.prefix}:segment:{{window_shopper}}:transitions"
    assert redis_client.xlen(key) <= 1
    perf = api_client.get(f"/v1/campaigns/{tag}-in/performance").json()
    assert perf["counts"]["queued"] == 1


def test_one_off_schedule_sends_one_message_to_everyone_and_shows_its_progress(
        isolated, worker_factory, api_client, redis_client, campaigns):  # noqa: F811
    s = isolated.replace(campaign_tick_s=0.05, campaign_schedule_chunk=2)
    worker_factory(s)
    tag = f"so{uuid.uuid4().hex[:8]}"
    producer = EventProducer(s, bootstrap.kafka_producer(s))
    users = [user_with_email(producer, tag, f"u{i}") for i in range(7)]
    wait_for_identities(s, redis_client, producer, [u for u, _ in users])
    at = int(time.time() * 1000) + 3000
    cid = campaigns({"id": f"{tag}-news", "channel": "email", "caps": NO_CAP, "audience": {"type": "everyone"},
                     "trigger": {"type": "schedule", "at": at},
                     "template": {"subject": "News {{ event.properties.occurrence }}", "body": "hello"}})
    addresses = {a for _, a in users}
    wait_for(lambda: {a[2] for a in accepted(s, addresses)} == addresses, timeout=90, what="everyone's message")
    assert time.time() * 1000 >= at
    # the expansion is over once the whole keyspace was scanned (the shared Redis holds many other keys)
    perf = wait_for(lambda: (p := api_client.get(f"/v1/campaigns/{cid}/performance").json())
                    ["schedule"].get("occurrences") == "1" and p, timeout=300, interval=0.5,
                    what="the occurrence expanded")
    sched = perf["schedule"]
    assert sched["occurrences"] == "1" and sched["scheduled"] == "7" and sched["last_expanded"] == "7"
    assert perf["counts"]["queued"] == 7
    assert len(accepted(s, addresses)) == 7  # one message each, no copy


def test_a_cron_schedule_fires_per_occurrence(isolated, worker_factory, api_client, redis_client,
                                              campaigns):  # noqa: F811
    s = isolated.replace(campaign_tick_s=0.05)
    worker_factory(s)
    tag = f"sc{uuid.uuid4().hex[:8]}"
    producer = EventProducer(s, bootstrap.kafka_producer(s))
    users = [user_with_email(producer, tag, n) for n in ("ann", "bob")]
    wait_for_identities(s, redis_client, producer, [u for u, _ in users])
    assert api_client.post("/v1/campaigns", json={
        "id": f"{tag}-bad", "channel": "email", "template": {"subject": "s", "body": "b"},
        "trigger": {"type": "schedule", "cron": "*/99 * * *"}}).json()["detail"][0]["loc"] == \
        ["body", "trigger", "cron"]
    cid = campaigns({"id": f"{tag}-tick", "channel": "email", "caps": NO_CAP,
                     "audience": {"type": "users", "users": [u for u, _ in users]},
                     "trigger": {"type": "schedule", "cron": "* * * * * */3", "user_tz": False},
                     "template": {"subject": "Tick {{ event.properties.occurrence }}", "body": "b"}})
    for _user, address in users:
        wait_for(lambda a=address: len(subjects(s, a)) >= 3, timeout=90, what="three occurrences")
    api_client.post(f"/v1/campaigns/{cid}/complete")
    for _user, address in users:
        got = subjects(s, address)
        assert len(got) == len(set(got))  # one message per occurrence
        # the server stored each once; a copy (same Message-ID) would be the connectors' open window
        assert sorted(a[1] for a in accepted(s, {address}) if a[3] == "new") == sorted(set(
            a[1] for a in accepted(s, {address})))
        assert len(got) <= 12  # only occurrences since the campaign started (no catching up on the past)
    a, b = (set(subjects(s, addr)) for _, addr in users)
    assert len(a & b) >= 2  # the same occurrences for both users


def test_a_worker_killed_during_an_audience_expansion_sends_everyone_exactly_once(
        isolated, worker_factory, api_client, redis_client, campaigns):  # noqa: F811
    n = 1500
    s = isolated.replace(campaign_tick_s=0.05, campaign_rate_per_min=600_000.0, campaign_schedule_chunk=10,
                         kafka_session_timeout_s=10.0)
    tag = f"sk{uuid.uuid4().hex[:8]}"
    users, addresses, worker = many_users_with_email(s, redis_client, worker_factory, tag, n)
    cid = campaigns({"id": f"{tag}-blast", "channel": "email", "caps": NO_CAP,
                     "audience": {"type": "users", "users": users},
                     "trigger": {"type": "schedule", "at": int(time.time() * 1000) + 1000},
                     "template": {"subject": "Hello {{ user.id }}", "body": "One message per user"}})
    state = f"{s.redis.prefix}:camp:{{campaigns}}:sched:{cid}"
    wait_for(lambda: int(redis_client.hget(state, "expanded") or 0) >= n // 5, timeout=300, interval=0.01,
             what="a fifth of the audience expanded")
    worker.stop(sig=9)  # SIGKILL in the middle of the expansion
    assert redis_client.hget(state, "occurrence") is not None, "the kill came after the expansion ended"
    worker_factory(s, name="after-kill")
    wait_for(lambda: len({a[2] for a in accepted(s, addresses)}) == n, timeout=900, interval=1.0,
             what="every user's message")
    wait_for(lambda: redis_client.hget(state, "occurrences") == "1", timeout=60, what="the occurrence done")
    assert redis_client.hget(state, "scheduled") == str(n)  # one due entry per user, none twice
    lines = accepted(s, addresses)
    assert sorted(a[2] for a in lines if a[3] == "new") == sorted(addresses)
    assert len([a for a in lines if a[3] == "duplicate"]) <= connectors.batch_size(s)  # the in-flight batch
    stored = [m["to"] for m in maildir.list_messages(maildir.root(s), limit=10 * n) if m["to"] in addresses]
    assert sorted(stored) == sorted(addresses)
