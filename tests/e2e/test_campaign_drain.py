"""The campaign drainer is woken by the trigger owner: a trigger with no delay reaches the SMTP server
without waiting for the drainer's periodic pass (set here to ten minutes, far beyond the test's wait)."""

from __future__ import annotations

import time
import uuid

import pytest

from aura import bootstrap
from aura.producer import EventProducer
from tests.conftest import wait_for
from tests.e2e.test_campaigns import campaigns, mails_to, user_with_email, wait_for_identities  # noqa: F401

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_a_trigger_due_now_wakes_the_drainer(isolated, worker_factory, api_client, redis_client, campaigns):  # noqa: F811
    s = isolated.replace(campaign_tick_s=600.0)  # the periodic pass: once at start, then ten minutes later
    worker_factory(s)
    tag = f"wk{uuid.uuid4().hex[:8]}"
    users = [f"{tag}-ann", f"{tag}-bob"]
    campaigns({"id": f"{tag}-hello", "channel": "email", "audience": {"type": "users", "users": users},
               "trigger": {"type": "event", "event_type": "view"},
               "template": {"subject": "Hello {{ user.first_name }}",
                            "body": "{% for r in recommendations %}* {{ r.item_id }}\n{% endfor %}"}})
    producer = EventProducer(s, bootstrap.kafka_producer(s))
    made = [user_with_email(producer, tag, name) for name in ("ann", "bob")]
    wait_for_identities(s, redis_client, producer, users)
    started = time.monotonic()
    now = int(time.time() * 1000)
    for i, (user, _address) in enumerate(made):
        producer.send({"event_id": f"{user}-v", "event_type": "view", "user_id": user, "item_id": f"{tag}-item{i}",
                       "event_time": now + i})
    assert producer.flush().failed == 0
    for _user, address in made:
        mails = wait_for(lambda a=address: mails_to(s, a), timeout=300, what=f"the email to {address}")
        assert len(mails) == 1 and mails[0]["subject"].startswith("Hello ")
    assert time.monotonic() - started < 600  # not the periodic pass: the trigger owner woke the drainer
