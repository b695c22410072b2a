"""The campaign connectors: one agent per outbox topic (campaigns.outbox.<channel>) that delivers the
rendered messages. Owner of the send records (``campaign_message``), the delivery counters of
``campaign_stats``, the user's message list and in-app inbox (aura/layout.py), the
``campaign_messages`` Cassandra rows and the ``campaign_delivery`` records on the decisions topic.

- email: SMTP (aiosmtplib) to ``AURA_CAMPAIGN_SMTP_HOST:PORT``, the message id as Message-ID;
- push, sms, webhook: an HTTP POST of the message as JSON to ``AURA_CAMPAIGN_WEBHOOK_URL`` with
  ``X-Aura-Signature: sha256=<HMAC of the body>`` and ``Idempotency-Key: <message id>``;
- in_app: the user's inbox hash, which the storefront polls (``GET /v1/campaigns/inbox/{user}``).

Exactly once: a message whose record says ``sent`` (or ``failed``) is skipped, so outbox copies and
replays after a crash are dropped; the record is set to ``sending`` before the attempt and ``sent``
after it, in one script with the counters. The one open window is a crash between the provider's
acceptance and that script: the replay sends again with the same Message-ID / Idempotency-Key,
which the provider uses to drop the copy (the local mail server does, infra/mailsink.py).
Transient failures (connection refused, timeouts, SMTP 4xx, HTTP 5xx or 429) are retried with
backoff for as long as they last, holding the partition (nothing is lost while a provider is down,
and each channel has its own topic and agent, so the others go on); permanent ones (SMTP 5xx, HTTP
4xx) record the message ``failed`` with the reason.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import aiohttp
import aiosmtplib
import faust

from aura import layout
from aura.bootstrap import cassandra_execute
from aura.layout import Tables
from aura.settings import Settings
from schemas.codec import codec
from schemas.events import to_millis
from streams.runtime import Owner, Resources, retrying

log = logging.getLogger(__name__)

USER_MESSAGES_MAX = 100
INBOX_MAX = 50
MAX_BACKOFF_S = 30.0
CONCURRENCY = 16  # messages in flight per channel agent

# KEYS: message record, stats, user messages. ARGV: outcome (sent|failed), counter, entry JSON, ttl, list max
DONE_LUA = """
local cur = redis.call('GET', KEYS[1])
if cur == 'sent' or (cur and string.sub(cur, 1, 6) == 'failed') then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
redis.call('LPUSH', KEYS[3], ARGV[3])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
return 1
"""


class Permanent(Exception):  # noqa: N818 - a signal between two functions of this module, not raised out
    """The provider refused the message for good."""


def email_message(s: Settings, m: dict[str, Any]) -> EmailMessage:
    """The MIME message of an email record (text, plus an HTML alternative when the campaign has one)."""
    msg = EmailMessage()
    msg["From"] = s.campaigns.smtp_from
    msg["To"] = m["address"]
    msg["Subject"] = m.get("subject") or ""
    msg["Message-ID"] = f"<{m['message_id']}@aura>"
    msg["Date"] = formatdate(localtime=False)
    msg["X-Aura-Campaign"] = m["campaign_id"]
    msg.set_content(m["body"])
    if m.get("html"):
        msg.add_alternative(m["html"], subtype="html")
    return msg


def signature(secret: str, body: bytes) -> str:
    """The webhook signature header value: ``sha256=`` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def send_email(s: Settings, m: dict[str, Any]) -> None:
    try:
        await aiosmtplib.send(email_message(s, m), hostname=s.campaigns.smtp_host, port=s.campaigns.smtp_port,
                              timeout=s.campaigns.smtp_timeout_s, start_tls=False, use_tls=False)
    except aiosmtplib.SMTPResponseException as exc:
        if 500 <= exc.code < 600:
            raise Permanent(f"smtp {exc.code}: {exc.message}") from exc
        raise


async def send_webhook(s: Settings, http: aiohttp.ClientSession, m: dict[str, Any]) -> None:
    if not s.campaigns.webhook_url:
        raise Permanent("no webhook URL configured (AURA_CAMPAIGN_WEBHOOK_URL)")
    body = json.dumps({k: m[k] for k in ("message_id", "campaign_id", "user_id", "channel", "address", "title",
                                         "body", "url", "items")}, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "Idempotency-Key": m["message_id"],
               "X-Aura-Signature": signature(s.campaigns.webhook_secret.get_secret_value(), body)}
    async with http.post(s.campaigns.webhook_url, data=body, headers=headers,
                         timeout=aiohttp.ClientTimeout(total=s.campaigns.webhook_timeout_s)) as resp:
        if resp.status < 300:
            return
        text = (await resp.text())[:200]
        if 400 <= resp.status < 500 and resp.status != 429:
            raise Permanent(f"http {resp.status}: {text}")
        raise ConnectionError(f"http {resp.status}: {text}")


class Connector:
    """Delivers the messages of one channel."""

    def __init__(self, app: faust.App, res: Resources, channel: str) -> None:
        self.res, self.s, self.channel = res, res.settings, channel
        self.done = res.redis.register_script(DONE_LUA)
        self.decisions = app.topic(layout.topic(res.settings, layout.DECISIONS), key_serializer="raw",
                                   value_serializer="raw")
        self.delivery_codec = codec("campaign_delivery")
        self.http: aiohttp.ClientSession | None = None
        self.insert = res.session.prepare(
            f"INSERT INTO {Tables.CAMPAIGN_MESSAGES} (user_id, message_id, campaign_id, channel, status, detail, "
            "items, queued_at, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")

    async def attempt(self, m: dict[str, Any]) -> None:
        if self.channel == "email":
            await send_email(self.s, m)
        elif self.channel == "in_app":
            entry = {k: m[k] for k in ("message_id", "campaign_id", "title", "body", "url", "items", "queued_time")}
            key = self.res.keys.campaign_inbox(m["user_id"])
            pipe = self.res.redis.pipeline(transaction=True)
            pipe.zadd(key, {json.dumps(entry, sort_keys=True): m["queued_time"]})  # a replay: the same member
            pipe.zremrangebyrank(key, 0, -INBOX_MAX - 1)
            await pipe.execute()
        else:
            if self.http is None:
                self.http = aiohttp.ClientSession()
            await send_webhook(self.s, self.http, m)

    async def deliver(self, m: dict[str, Any]) -> str:
        """Deliver one message exactly once; returns its outcome (sent, failed, skipped)."""
        keys = self.res.keys
        mkey = keys.campaign_message(m["message_id"])
        cur = await self.res.redis.get(mkey)
        if cur == "sent" or (cur or "").startswith("failed"):
            return "skipped"
        await self.res.redis.set(mkey, "sending", ex=self.s.campaigns.message_ttl_s)
        delay, outcome, detail = 0.2, "sent", ""
        while True:
            try:
                await self.attempt(m)
                break
            except Permanent as exc:
                outcome, detail = "failed", str(exc)
                break
            except Exception as exc:  # noqa: BLE001 - transient: retried while it lasts
                log.warning("%s delivery of %s failed (%s: %s); retry in %.1fs", self.channel, m["message_id"],
                            type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
        now = int(time.time() * 1000)
        entry = json.dumps({"message_id": m["message_id"], "campaign_id": m["campaign_id"], "channel": self.channel,
                            "status": outcome, "detail": detail, "subject": m.get("subject") or m.get("title"),
                            "items": m["items"], "queued_at": m["queued_time"], "at": now})
        stats = keys.campaign_stats(m["campaign_id"] if not m.get("test") else f"{m['campaign_id']}:test")
        record = "sent" if outcome == "sent" else f"failed:{detail[:200]}"
        first = await self.done(keys=[mkey, stats, keys.campaign_user_messages(m["user_id"])],
                                args=[record, outcome, entry, self.s.campaigns.message_ttl_s, USER_MESSAGES_MAX])
        await self.write_durable(m, outcome, detail, now)
        if first:
            delivery = {"event_id": f"{m['message_id']}:{outcome}", "user_id": m["user_id"],
                        "campaign_id": m["campaign_id"], "message_id": m["message_id"], "channel": self.channel,
                        "status": outcome, "event_time": now, "receive_time": now, "items": m["items"],
                        "detail": detail or None, "properties": {"test": "true"} if m.get("test") else {}}
            await self.decisions.send(key=m["user_id"].encode(), value=self.delivery_codec.encode(delivery))
        return outcome

    async def write_durable(self, m: dict[str, Any], outcome: str, detail: str, now: int) -> None:
        params = (m["user_id"], m["message_id"], m["campaign_id"], self.channel, outcome, detail or None,
                  m["items"], m["queued_time"], now)
        await cassandra_execute(self.res.session, self.insert.bind(params), timeout=10.0)


async def deliver_batch(connector: Connector, msgs: list[dict[str, Any]]) -> None:
    """Deliver a batch: distinct messages are independent, up to ``CONCURRENCY`` in flight; copies of
    one message id go one after the other, so the send record sees the first one's outcome."""
    gate = asyncio.Semaphore(CONCURRENCY)
    groups: dict[str, list[dict[str, Any]]] = {}
    for m in msgs:
        groups.setdefault(m["message_id"], []).append(m)

    async def one(copies: list[dict[str, Any]]) -> None:
        async with gate:
            for m in copies:
                await retrying(f"deliver {connector.channel}", connector.deliver, m)

    await asyncio.gather(*(one(c) for c in groups.values()))


def decoded(msg_codec: Any, value: bytes) -> dict[str, Any]:
    """An outbox record with its times as epoch ms (the codec gives datetimes)."""
    m = msg_codec.decode(value)
    for k in ("trigger_time", "queued_time"):
        m[k] = to_millis(m[k])
    return m


def register(app: faust.App, res: Resources) -> list[Owner]:
    """One agent per outbox topic; they feed no owner of the behavior agent."""
    msg_codec = codec("campaign_message")
    for channel, spec in layout.OUTBOX.items():
        connector = Connector(app, res, channel)
        source = app.topic(layout.topic(res.settings, spec), key_type=bytes, value_type=bytes,
                           key_serializer="raw", value_serializer="raw")

        async def deliver_outbox(stream: faust.StreamT, connector: Connector = connector) -> None:
            async for batch in stream.take_events(CONCURRENCY * 4, within=0.02):
                msgs = []
                for e in batch:
                    try:
                        msgs.append(decoded(msg_codec, e.message.value))
                    except Exception as exc:  # noqa: BLE001 - our own records; a bad one is logged, not retried
                        log.error("undecodable outbox record at %s:%d: %s", e.message.partition, e.message.offset,
                                  exc)
                await deliver_batch(connector, msgs)

        app.agent(source, name=f"deliver_{channel}")(deliver_outbox)
    return []
