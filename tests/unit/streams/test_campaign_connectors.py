"""The campaign connectors' pure parts: the MIME message, the webhook signature, batch grouping."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from typing import Any

from aura.settings import Settings
from streams import connectors
from streams.campaigns import TokenBucket


def record(**kw: Any) -> dict[str, Any]:
    return {"message_id": "m1", "campaign_id": "c1", "user_id": "u1", "channel": "email", "address": "a@x.test",
            "subject": "Hi", "title": None, "body": "text", "html": None, "url": None, "items": ["i1"],
            "trigger_time": 1, "queued_time": 2, "test": False, **kw}


def test_the_email_carries_the_message_id_and_both_parts():
    msg = connectors.email_message(Settings(), record(html="<b>hi</b>"))
    assert msg["Message-ID"] == "<m1@aura>" and msg["To"] == "a@x.test" and msg["X-Aura-Campaign"] == "c1"
    kinds = [p.get_content_type() for p in msg.walk()]
    assert "text/plain" in kinds and "text/html" in kinds


def test_the_webhook_signature_is_an_hmac_of_the_raw_body():
    body = b'{"a":1}'
    assert connectors.signature("k", body) == "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()


def test_copies_of_one_message_go_one_after_the_other():
    seen: list[str] = []
    inflight: set[str] = set()

    class Fake:
        channel = "email"

        async def deliver(self, m: dict[str, Any]) -> str:
            assert m["message_id"] not in inflight  # never two copies of one id at once
            inflight.add(m["message_id"])
            await asyncio.sleep(0.001)
            inflight.discard(m["message_id"])
            seen.append(m["message_id"])
            return "sent"

    msgs = [record(message_id=f"m{i % 5}") for i in range(20)]
    asyncio.run(connectors.deliver_batch(Fake(), msgs))  # type: ignore[arg-type]
    assert sorted(seen) == sorted(m["message_id"] for m in msgs)


def test_the_rate_limit_bucket():
    b = TokenBucket(60.0)  # one per second, burst one
    assert b.take() and not b.take()
