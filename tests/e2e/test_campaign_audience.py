"""A rule audience end to end: identities and events in through Kafka, folded by the worker; the
API's audience estimate counts the users the rule holds for, and a scheduled campaign with that
audience sends to exactly those users (the drainer decides membership with the same function,
aura/state/campaign_audience.py ``in_audience``), counted at the local stack's real SMTP server."""

from __future__ import annotations

import time
import uuid

import pytest
from fastapi.testclient import TestClient

from aura import bootstrap
from aura.keys import RedisKeys
from aura.producer import EventProducer
from aura.state import profile_codec
from serving.app import create_app
from tests.conftest import wait_for
from tests.e2e.test_campaign_triggers import NO_CAP, accepted, views
from tests.e2e.test_campaigns import wait_for_identities

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

# in the audience: country DE (an identity attribute) or at least 3 views (the folded profile)
RULE = {"any": [{"field": "profile.country", "op": "equals", "value": "DE"},
                {"field": "profile.count.view", "op": "gte", "value": 3}]}


def test_a_scheduled_rule_campaign_sends_to_the_audience_the_estimate_counted(isolated, worker_factory, api_key,
                                                                               redis_client):
    s = isolated.replace(campaign_tick_s=0.05, campaign_audience_scan_s=120.0)
    worker_factory(s)
    tag = f"ra{uuid.uuid4().hex[:8]}"
    keys = RedisKeys(s.redis.prefix)
    producer = EventProducer(s, bootstrap.kafka_producer(s))
    people = {"ann": ("DE", 0), "bob": ("DE", 5), "cid": ("FR", 4), "dan": ("FR", 2), "eve": ("FR", 0),
              "fay": ("AT", 1)}
    now = int(time.time() * 1000)
    for name, (country, _n) in people.items():
        producer.send_identity({"event_id": f"{tag}-{name}-id", "event_type": "create", "user_id": f"{tag}-{name}",
                                "event_time": now, "attributes": {"email": f"{tag}-{name}@example.test",
                                                                  "country": country}})
    wait_for_identities(s, redis_client, producer, [f"{tag}-{n}" for n in people])
    for name, (_c, n) in people.items():
        views(producer, f"{tag}-{name}", n, now)
    assert producer.flush().failed == 0

    def folded() -> bool:
        for name, (_c, n) in people.items():
            p = profile_codec.read_sync(redis_client, keys, f"{tag}-{name}")
            if n and (p is None or p.counts.get("view", 0) < n):
                return False
        return True

    wait_for(folded, timeout=90, what="the views folded into the profiles")
    expected = {f"{tag}-{n}@example.test" for n in ("ann", "bob", "cid")}
    everyone = {f"{tag}-{n}@example.test" for n in people}
    headers = {"Authorization": f"Bearer {api_key('admin', name='audience-e2e')}"}
    with TestClient(create_app(s), headers=headers) as api:
        cid = f"{tag}-de-or-browsing"
        r = api.post("/v1/campaigns", json={
            "id": cid, "channel": "email", "caps": NO_CAP, "audience": {"type": "rule", "condition": RULE},
            "trigger": {"type": "schedule", "at": int(time.time() * 1000) + 4000},
            "template": {"subject": "Hello {{ user.id }}", "body": "hi"}})
        assert r.status_code == 201, r.text
        try:
            est = api.get(f"/v1/campaigns/{cid}/audience").json()
            assert (est["size"], est["scanned"], est["exact"]) == (len(expected), len(people), True), est
            assert api.post(f"/v1/campaigns/{cid}/activate").json()["status"] == "running"
            wait_for(lambda: {a[2] for a in accepted(s, everyone)} == expected, timeout=90,
                     what="the audience's messages")
            perf = wait_for(lambda: (p := api.get(f"/v1/campaigns/{cid}/performance").json())
                            ["schedule"].get("occurrences") == "1" and p, timeout=300, interval=0.5,
                            what="the occurrence expanded")
            assert perf["counts"]["queued"] == est["size"]
            # each user expanded once (a user with a profile and attributes is found through both keys)
            assert perf["schedule"]["last_expanded"] == str(len(people)), perf["schedule"]
            others = len(people) - est["size"]
            wait_for(lambda: api.get(f"/v1/campaigns/{cid}/performance").json()["counts"]
                     .get("suppressed:not_in_audience", 0) >= others, timeout=60,
                     what="the others suppressed as outside the audience")
            assert api.get(f"/v1/campaigns/{cid}/performance").json()["counts"]["suppressed:not_in_audience"] == others
            assert {a[2] for a in accepted(s, everyone)} == expected and len(accepted(s, everyone)) == 3
        finally:
            api.post(f"/v1/campaigns/{cid}/complete")
            api.delete(f"/v1/campaigns/{cid}")
