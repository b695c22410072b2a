"""The campaign connectors' pure parts: the MIME message, the webhook signature, batch grouping."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

import pytest

from aura.settings import Settings
from streams import connectors
from streams.campaign_drain import TokenBucket


def record(**kw: Any) -> dict[str, Any]:
    return {"message_id": "m1", "campaign_id": "c1", "user_id": "u1", "channel": "email", "address": "a@x.test",
            "subject": "Hi", "title": None, "body": "text", "html": None, "url": None, "items": ["i1"],
            "trigger_time": 1, "queued_time": 2, "test": False, **kw}


def test_the_email_carries_the_message_id_and_both_parts():
    msg = connectors.email_message(Settings(), record(html="<b>hi</b>"))
    assert msg["Message-ID"] == "<m1@aura>" and msg["To"] == "a@x.test" and msg["X-Aura-Campaign"] == "c1"
    kinds = [p.get_content_type() for p in msg.walk()]
    assert "text/plain" in kinds and "text/html" in kinds


def test_a_rendered_subject_cannot_inject_headers():
    msg = connectors.email_message(Settings(), record(subject="Hi\r\nBcc: victim@x.test", address="a@x.test\nX: y"))
    head = msg.as_string().split("\n\n", 1)[0]
    assert "\nBcc:" not in head and "\nX: y" not in head and msg["Subject"] == "Hi Bcc: victim@x.test"
    assert "=C3=A9" in connectors.email_message(Settings(), record(body="caf\u00e9")).as_string()  # readable QP


def test_the_webhook_signature_is_an_hmac_of_the_raw_body():
    body = b'{"a":1}'
    assert connectors.signature("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


def test_copies_of_one_message_are_delivered_once_per_batch():
    seen: list[list[str]] = []

    class Fake:
        channel = "email"

        async def deliver_many(self, ms: list[dict[str, Any]]) -> list[str]:
            seen.append([m["message_id"] for m in ms])
            return ["sent"] * len(ms)

    msgs = [record(message_id=f"m{i % 5}") for i in range(20)]
    asyncio.run(connectors.deliver_batch(Fake(), msgs))  # type: ignore[arg-type]
    assert seen == [[f"m{i}" for i in range(5)]]  # one call, each id once, in first-seen order


def test_each_provider_has_its_own_breaker_name():
    s = Settings().replace(campaign_webhook_url="http://hooks.test/x")
    names = {ch: connectors.provider_name(s, ch) for ch in ("email", "push", "sms", "webhook", "in_app")}
    assert names["email"] == "smtp://127.0.0.1:2525" and names["in_app"] == "inbox"
    assert names["push"] == names["sms"] == names["webhook"] == "http://hooks.test/x"


def test_the_rate_limit_bucket():
    b = TokenBucket(60.0)  # one per second, burst one
    assert b.take() and not b.take()


def test_a_late_pass_catches_up_but_no_minute_sends_more_than_the_limit(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("streams.campaign_drain.time.monotonic", lambda: clock[0])
    b = TokenBucket(600.0)  # 10 per second
    taken = []
    while clock[0] < 180.0:  # passes every 0.1 s, but every third one comes 0.6 s late
        while b.take():
            taken.append(clock[0])
        clock[0] = round(clock[0] + (0.7 if len(taken) % 3 == 0 else 0.1), 6)
    minutes = [sum(1 for t in taken if start <= t < start + 60) for start in [x / 10 for x in range(0, 1200)]]
    assert max(minutes) == 600  # never over
    assert len(taken) >= 1800 * 0.99  # the late passes catch up: three minutes' worth within 1%


def test_the_rate_limit_bucket_holds_any_minute_within_one_percent(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("streams.campaign_drain.time.monotonic", lambda: clock[0])
    b = TokenBucket(6000.0)  # 100 per second
    taken = []
    while clock[0] < 120.0:  # a drainer pass every 0.1 s that always has more to send
        while b.take():
            taken.append(clock[0])
        clock[0] = round(clock[0] + 0.1, 6)
    busiest = max(sum(1 for t in taken if start <= t < start + 60) for start in [x / 10 for x in range(0, 600)])
    assert busiest == 6000


def test_the_bucket_tells_what_a_pass_may_send(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr("streams.campaign_drain.time.monotonic", lambda: clock[0])
    b = TokenBucket(600.0)  # 10 per second, a second's worth at once
    assert b.available() == 10.0
    while b.take():
        pass
    assert b.available() == 0.0
    clock[0] = 0.15
    assert b.available() == pytest.approx(1.5)  # refilled at the rate, never beyond a second's worth
    clock[0] = 60.0
    assert b.available() == 10.0
