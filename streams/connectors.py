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
Transient failures (connection refused, timeouts, SMTP 4xx, HTTP 5xx or 429) are retried for as
long as they last, paced by the provider's circuit breaker (streams/providers.py), holding the
partition (nothing is lost while a provider is down, and each channel has its own topic and agent,
so the others go on); permanent ones (SMTP 5xx, HTTP 4xx) record the message ``failed`` with the
reason.

Per batch of outbox records: one pipeline reads the send records, one marks the new ones
``sending``, up to ``AURA_CAMPAIGN_IN_FLIGHT`` messages are attempted at once (email: as many as the
pool of persistent SMTP connections holds, ``AURA_CAMPAIGN_SMTP_CONNECTIONS``), one pipeline records
the outcomes, one grouped Cassandra write keeps
the rows and the delivery records are produced together.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import time
from email.charset import QP, Charset
from email.header import Header
from email.message import Message
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import formatdate
from typing import Any

import aiohttp
import aiosmtplib
import faust

from aura import layout
from aura.layout import Tables
from aura.settings import Settings
from schemas.codec import codec
from schemas.events import to_millis
from streams.durable import execute_grouped
from streams.loopstats import STATS
from streams.providers import Breaker, SmtpPool
from streams.runtime import Owner, Resources, retrying

log = logging.getLogger(__name__)

USER_MESSAGES_MAX = 100
UTF8_QP = Charset("utf-8")
UTF8_QP.body_encoding = QP  # readable bodies (quoted-printable), not base64
INBOX_MAX = 50
MAX_BACKOFF_S = 5.0  # a message's own pause between attempts while its provider's breaker is closed

# KEYS: message record, stats, user messages. ARGV: outcome (sent|failed), counter, entry JSON, ttl, list
# max, content variant ('' for none: the counter is also kept per variant)
DONE_LUA = """
local cur = redis.call('GET', KEYS[1])
if cur == 'sent' or (cur and string.sub(cur, 1, 6) == 'failed') then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
if ARGV[6] ~= '' then redis.call('HINCRBY', KEYS[2], ARGV[2] .. '@' .. ARGV[6], 1) end
redis.call('LPUSH', KEYS[3], ARGV[3])
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[5]) - 1)
return 1
"""


class Permanent(Exception):  # noqa: N818 - a signal between two functions of this module, not raised out
    """The provider refused the message for good."""


def one_line(value: str) -> str:
    """A header value without line breaks (a rendered subject must never inject headers)."""
    return " ".join(value.splitlines()) if ("\n" in value or "\r" in value) else value


def email_message(s: Settings, m: dict[str, Any]) -> Message:
    """The MIME message of an email record (text, plus an HTML alternative when the campaign has one).
    Built with the compat32 classes: the modern ``EmailMessage`` parses every header it is given
    (most of the connector's CPU per message), and these headers are ours, already well formed."""
    text = MIMEText(m["body"], "plain", UTF8_QP)
    if m.get("html"):
        msg: Message = MIMEMultipart("alternative")
        msg.attach(text)
        msg.attach(MIMEText(m["html"], "html", UTF8_QP))
    else:
        msg = text
    subject = one_line(m.get("subject") or "")
    msg["From"] = s.campaigns.smtp_from
    msg["To"] = one_line(m["address"])
    msg["Subject"] = subject if subject.isascii() else Header(subject, "utf-8")
    msg["Message-ID"] = f"<{m['message_id']}@aura>"
    msg["Date"] = formatdate(localtime=False)
    msg["X-Aura-Campaign"] = m["campaign_id"]
    return msg


def signature(secret: str, body: bytes) -> str:
    """The webhook signature header value: ``sha256=`` + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def send_email(s: Settings, pool: SmtpPool, m: dict[str, Any]) -> None:
    try:
        await pool.send(email_message(s, m))
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


def batch_size(s: Settings) -> int:
    """Outbox records taken per batch: their outcomes are recorded together when the batch settles, so
    this bounds the messages a crash can leave accepted by the provider but not recorded ``sent``."""
    return max(4 * s.campaigns.in_flight, 64)


def provider_name(s: Settings, channel: str) -> str:
    """The provider a channel's messages go to (one breaker each; push, sms and webhook share the URL)."""
    if channel == "email":
        return f"smtp://{s.campaigns.smtp_host}:{s.campaigns.smtp_port}"
    return "inbox" if channel == "in_app" else s.campaigns.webhook_url or "webhook"


class Connector:
    """Delivers the messages of one channel."""

    def __init__(self, app: faust.App, res: Resources, channel: str, breaker: Breaker,
                 pool: SmtpPool | None = None) -> None:
        self.res, self.s, self.channel, self.breaker, self.pool = res, res.settings, channel, breaker, pool
        self.done = res.redis.register_script(DONE_LUA)
        self.decisions = app.topic(layout.topic(res.settings, layout.DECISIONS), key_serializer="raw",
                                   value_serializer="raw")
        self.delivery_codec = codec("campaign_delivery")
        self.http: aiohttp.ClientSession | None = None
        # messages attempted at once: email follows the SMTP pool (a message beyond it would only wait
        # for a connection), the others ``AURA_CAMPAIGN_IN_FLIGHT``
        self.concurrency = max(1, pool.size if pool is not None else res.settings.campaigns.in_flight)
        self.insert = res.session.prepare(
            f"INSERT INTO {Tables.CAMPAIGN_MESSAGES} (user_id, message_id, campaign_id, channel, status, detail, "
            "items, queued_at, sent_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")

    async def attempt(self, m: dict[str, Any]) -> None:
        if self.channel == "email":
            assert self.pool is not None
            await send_email(self.s, self.pool, m)
        elif self.channel == "in_app":
            entry = {k: m[k] for k in ("message_id", "campaign_id", "title", "body", "url", "items", "queued_time")}
            key = self.res.keys.campaign_inbox(m["user_id"])
            pipe = self.res.redis.pipeline(transaction=True)
            pipe.zadd(key, {json.dumps(entry, sort_keys=True): m["queued_time"]})  # a replay: the same member
            pipe.zremrangebyrank(key, 0, -INBOX_MAX - 1)
            await pipe.execute()
        else:
            if self.http is None:
                self.http = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=self.s.campaigns.in_flight))
            await send_webhook(self.s, self.http, m)

    async def settle(self, m: dict[str, Any]) -> tuple[str, str]:
        """Attempt one message until the provider answers: (sent | failed, reason)."""
        delay = 0.05
        while True:
            await self.breaker.admit()
            try:
                await self.attempt(m)
            except Permanent as exc:
                self.breaker.success()
                return "failed", str(exc)
            except Exception as exc:  # noqa: BLE001 - transient: retried while it lasts
                self.breaker.failure()
                log.warning("%s delivery of %s failed (%s: %s); breaker %s", self.channel, m["message_id"],
                            type(exc).__name__, exc, self.breaker.state)
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF_S)
                continue
            except BaseException:
                self.breaker.abandon()
                raise
            self.breaker.success()
            return "sent", ""

    async def deliver_many(self, msgs: list[dict[str, Any]]) -> list[str]:
        """Deliver distinct messages exactly once each; returns their outcomes (sent, failed, skipped)."""
        keys, redis, cs = self.res.keys, self.res.redis, self.s.campaigns
        mkeys = [keys.campaign_message(m["message_id"]) for m in msgs]
        pipe = redis.pipeline(transaction=False)
        for k in mkeys:
            pipe.get(k)
        records = await pipe.execute()
        todo = [i for i, cur in enumerate(records) if not (cur == "sent" or (cur or "").startswith("failed"))]
        outcomes = ["skipped"] * len(msgs)
        if not todo:
            return outcomes
        pipe = redis.pipeline(transaction=False)
        for i in todo:
            pipe.set(mkeys[i], "sending", ex=cs.message_ttl_s)
        await pipe.execute()
        gate = asyncio.Semaphore(self.concurrency)

        async def one(m: dict[str, Any]) -> tuple[str, str]:
            async with gate:
                return await self.settle(m)

        results = await asyncio.gather(*(one(msgs[i]) for i in todo))
        now = int(time.time() * 1000)
        pipe = redis.pipeline(transaction=False)
        for i, (outcome, detail) in zip(todo, results, strict=True):
            m = msgs[i]
            entry = json.dumps({"message_id": m["message_id"], "campaign_id": m["campaign_id"],
                                "channel": self.channel, "status": outcome, "detail": detail,
                                "subject": m.get("subject") or m.get("title"), "items": m["items"],
                                "queued_at": m["queued_time"], "at": now})
            stats = keys.campaign_stats(m["campaign_id"] if not m.get("test") else f"{m['campaign_id']}:test")
            record = "sent" if outcome == "sent" else f"failed:{detail[:200]}"
            await self.done(keys=[mkeys[i], stats, keys.campaign_user_messages(m["user_id"])],
                            args=[record, outcome, entry, cs.message_ttl_s, USER_MESSAGES_MAX, m.get("variant") or ""],
                            client=pipe)
        firsts = await pipe.execute()
        await execute_grouped(self.res.session, [
            (("user", msgs[i]["user_id"]), self.insert,
             (msgs[i]["user_id"], msgs[i]["message_id"], msgs[i]["campaign_id"], self.channel, outcome,
              detail or None, msgs[i]["items"], msgs[i]["queued_time"], now))
            for i, (outcome, detail) in zip(todo, results, strict=True)])
        for i, (outcome, detail), first in zip(todo, results, firsts, strict=True):
            outcomes[i] = outcome
            if not first:
                continue
            m = msgs[i]
            delivery = {"event_id": f"{m['message_id']}:{outcome}", "user_id": m["user_id"],
                        "campaign_id": m["campaign_id"], "message_id": m["message_id"], "channel": self.channel,
                        "status": outcome, "event_time": now, "receive_time": now, "items": m["items"],
                        "detail": detail or None, "properties": {"test": "true"} if m.get("test") else {}}
            await self.decisions.send(key=m["user_id"].encode(), value=self.delivery_codec.encode(delivery))
        return outcomes


async def deliver_batch(connector: Connector, msgs: list[dict[str, Any]]) -> None:
    """Deliver a batch of outbox records: copies of one message id (a replay, a drainer retry) are one
    message, sent once, so the send record sees one outcome."""
    distinct: dict[str, dict[str, Any]] = {}
    for m in msgs:
        distinct.setdefault(m["message_id"], m)
    if distinct:
        await retrying(f"deliver {connector.channel}", connector.deliver_many, list(distinct.values()))


def decoded(msg_codec: Any, value: bytes) -> dict[str, Any]:
    """An outbox record with its times as epoch ms (the codec gives datetimes)."""
    m = msg_codec.decode(value)
    for k in ("trigger_time", "queued_time"):
        m[k] = to_millis(m[k])
    return m


def register(app: faust.App, res: Resources) -> list[Owner]:
    """One agent per outbox topic; they feed no owner of the behavior agent."""
    msg_codec = codec("campaign_message")
    cs = res.settings.campaigns
    breakers: dict[str, Breaker] = {}  # one per provider, shared by the channels that use it
    pool = SmtpPool(cs.smtp_host, cs.smtp_port, cs.smtp_timeout_s, cs.smtp_connections)
    for channel, spec in layout.OUTBOX.items():
        name = provider_name(res.settings, channel)
        breaker = breakers.setdefault(name, Breaker(name, cs.breaker_failures, max_open_s=cs.breaker_max_open_s))
        connector = Connector(app, res, channel, breaker, pool if channel == "email" else None)
        source = app.topic(layout.topic(res.settings, spec), key_type=bytes, value_type=bytes,
                           key_serializer="raw", value_serializer="raw")

        async def deliver_outbox(stream: faust.StreamT, connector: Connector = connector) -> None:
            async for batch in stream.take_events(batch_size(res.settings), within=0.02):
                msgs = []
                for e in batch:
                    try:
                        msgs.append(decoded(msg_codec, e.message.value))
                    except Exception as exc:  # noqa: BLE001 - our own records; a bad one is logged, not retried
                        log.error("undecodable outbox record at %s:%d: %s", e.message.partition, e.message.offset,
                                  exc)
                t0, now = time.perf_counter(), time.time() * 1000
                for m in msgs:  # queued by the drainer -> taken here
                    STATS.add(f"outbox_wait:{connector.channel}", now - m["queued_time"])
                await deliver_batch(connector, msgs)
                STATS.add(f"deliver:{connector.channel}", (time.perf_counter() - t0) * 1000)

        app.agent(source, name=f"deliver_{channel}")(deliver_outbox)
    return []
