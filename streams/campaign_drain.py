"""The campaign drainer: moves due messages through the guards to the outbox topics. Owner of the
Redis keys ``campaign_caps`` (the claim of each message), the drain lease and the drain-side counters
of ``campaign_stats`` (aura/layout.py); the due entries are written by streams/campaigns.py.

- One worker of the group drains (by lease): it takes the due entries, decides each with
  ``campaign_sends.decide`` (audience, by ``campaign_audience.in_audience`` as the API's audience
  estimate decides it; holdout, consent, address, caps, quiet hours), renders the
  sendable ones with the user's profile, the trigger event and live recommendations
  (aura/ranking), produces them to the outbox topic of their channel and waits for Kafka's ack,
  then records them (the message claimed by adding it to the user's cap set, qualification,
  counters: one script) and removes the entries. A crash anywhere leaves the entries due: the next pass finds the
  message id claimed and only removes them, or produces again and the connector's send record
  drops the copy. A template error dead-letters that one message with its reason. The global rate
  limit per channel is applied here (the lease makes this worker the only drainer).
- The lease holder also publishes every ``AURA_CAMPAIGN_AGG_INTERVAL_S`` a snapshot of each
  campaign's figures (and each content variant's) to the compacted analyst topic ``agg.campaigns``
  (schemas/avro/agg_campaign.avsc).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections import deque
from typing import Any

import faust

from aura import layout
from aura.configcache import ConfigCache
from aura.ranking.factors import ItemFactors
from aura.ranking.ranker import Ranker
from aura.state import profile_codec
from aura.state.campaign_audience import in_audience
from aura.state.campaign_render import links, outbox_record, recommendations_many
from aura.state.campaign_sends import Due, aggregates, cancelled, decide
from aura.state.campaigns import Campaign
from aura.state.profiles import ProfileConfig, document, parse_attrs
from schemas.codec import codec
from streams.intake import Dead, RawRecord
from streams.loopstats import STATS
from streams.runtime import Resources, retrying

log = logging.getLogger(__name__)
RATE_LIMITED_PASS = 32  # due entries a pass takes at least while the rate limit lets few messages out
PAUSED_RECHECK_MS = 60_000  # due messages of a paused campaign are looked at again this much later

# KEYS: caps, user groups, stats. ARGV: campaign, caps member, now, cap window ms, group, content variant
# ('' for none). The caps member (campaign|message id) is the drainer's claim of the message: added
# once, counted once. The user's group is ``treated@<variant>`` for an A/B campaign.
QUEUED_LUA = """
if redis.call('ZADD', KEYS[1], 'NX', ARGV[3], ARGV[2]) == 0 then return 0 end
if redis.call('PTTL', KEYS[1]) < tonumber(ARGV[4]) then redis.call('PEXPIRE', KEYS[1], ARGV[4]) end
redis.call('HINCRBY', KEYS[3], 'queued', 1)
local group = ARGV[5]
if ARGV[6] ~= '' then
  redis.call('HINCRBY', KEYS[3], 'queued@' .. ARGV[6], 1)
  group = group .. '@' .. ARGV[6]
end
if redis.call('HSETNX', KEYS[2], ARGV[1], group .. '|' .. ARGV[3]) == 1 then
  redis.call('HINCRBY', KEYS[3], 'qualified:' .. ARGV[5], 1)
  if ARGV[6] ~= '' then redis.call('HINCRBY', KEYS[3], 'qualified:' .. group, 1) end
end
return 1
"""

# KEYS: user groups, stats. ARGV: campaign, now. A held-out user counts once per campaign.
HOLDOUT_LUA = """
if redis.call('HSETNX', KEYS[1], ARGV[1], 'holdout|' .. ARGV[2]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'qualified:holdout', 1)
end
return 1
"""

LEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 1 end
return 0
"""


class TokenBucket:
    """Messages per minute of one channel: a token bucket refilled at the rate, holding up to a second's
    worth (a pass that comes late, on a loaded machine, catches up instead of losing the tokens), and
    the sends of the last 60 s, so that no minute ever sends more than ``per_min``."""

    def __init__(self, per_min: float) -> None:
        self.per_min = per_min
        self.rate = per_min / 60.0
        self.cap = max(1.0, self.rate)
        self.tokens, self.t = self.cap, time.monotonic()
        self.sent: deque[float] = deque()  # monotonic times of the sends of the last minute

    def available(self) -> float:
        """Messages this channel may send at once now."""
        now = time.monotonic()
        self.tokens = min(self.cap, self.tokens + (now - self.t) * self.rate)
        self.t = now
        while self.sent and self.sent[0] <= now - 60.0:
            self.sent.popleft()
        return min(self.tokens, self.per_min - len(self.sent))

    def take(self) -> bool:
        if self.available() >= 1.0:
            self.tokens -= 1.0
            self.sent.append(self.t)
            return True
        return False


class Drainer:
    """Moves due messages through the guards to the outbox topics (one worker of the group)."""

    def __init__(self, app: faust.App, res: Resources, cache: ConfigCache[Campaign]) -> None:
        self.res, self.cache, self.s = res, cache, res.settings
        self.outbox = {ch: app.topic(layout.topic(res.settings, spec), key_serializer="raw", value_serializer="raw")
                       for ch, spec in layout.OUTBOX.items()}
        self.deadletters = app.topic(layout.topic(res.settings, layout.DEADLETTER), key_serializer="raw",
                                     value_serializer="raw")
        self.msg_codec, self.dead_codec = codec("campaign_message"), codec("dead_letter")
        self.agg_topic = app.topic(layout.topic(res.settings, layout.AGG_CAMPAIGNS), key_serializer="raw",
                                   value_serializer="raw")
        self.agg_codec = codec("agg_campaign")
        self.queued = res.redis.register_script(QUEUED_LUA)
        self.lease = res.redis.register_script(LEASE_LUA)
        self.holdout = res.redis.register_script(HOLDOUT_LUA)
        self.token = uuid.uuid4().hex
        self.buckets = {ch: TokenBucket(self.s.campaigns.rate_per_min) for ch in layout.CAMPAIGN_CHANNELS}
        self.ranker = Ranker(res.redis, res.keys,
                             factors=ItemFactors(res.redis, res.keys, res.settings.recs.mf_items_refresh_s))
        self.profile_cfg = ProfileConfig.from_settings(res.settings)
        self.wake = asyncio.Event()  # set when a due entry is due now (``due_at``): the next pass starts at once

    def due_at(self, due_ms: int) -> None:
        """A due entry was written in this worker, due at ``due_ms``: when that is now, wake the pass loop
        instead of letting it wait for its periodic pass (entries due later are found by the passes)."""
        if due_ms <= time.time() * 1000:
            self.wake.set()

    async def leased(self) -> bool:
        """Whether this worker holds (and now extends) the drain lease."""
        lease_ms = max(int(self.s.campaigns.tick_s * 20_000), 2000)
        return bool(await self.lease(keys=[self.res.keys.campaign_drain_lease()], args=[self.token, lease_ms]))

    async def publish(self) -> int:
        """Every campaign's figures (whole and per content variant) to ``agg.campaigns``, from the one
        worker holding the lease; returns the records produced."""
        if not await self.leased():
            return 0
        campaigns = [c for c in (await self.cache.get()).values() if c.status not in ("draft", "archived")]
        pipe = self.res.redis.pipeline(transaction=False)
        for c in campaigns:
            pipe.hgetall(self.res.keys.campaign_stats(c.id))
        now, acks = int(time.time() * 1000), []
        for c, tally in zip(campaigns, await pipe.execute() if campaigns else [], strict=True):
            for rec in aggregates(c, tally, now):
                acks.append(await self.agg_topic.send(key=f"{c.id}|{rec['variant'] or ''}".encode(),
                                                      value=self.agg_codec.encode(rec)))
        await asyncio.gather(*acks)
        return len(acks)

    def pass_size(self) -> int:
        """Due entries a pass takes: ``drain_batch``, fewer while the rate limit lets few messages out (a
        pass reads and decides every entry it takes: entries over the rate would only be read again)."""
        tokens = max(b.available() for b in self.buckets.values())
        return max(1, min(self.s.campaigns.drain_batch, max(4 * int(tokens), RATE_LIMITED_PASS)))

    async def tick(self) -> tuple[int, int]:
        """One pass; returns how many entries it took and how many of those it settled."""
        if not await self.leased():
            return 0, 0
        now = int(time.time() * 1000)
        size = self.pass_size()
        raw = await self.res.redis.zrangebyscore(self.res.keys.campaign_due(), "-inf", now, start=0, num=size)
        if not raw:
            return size, 0
        campaigns = await self.cache.get()
        entries = [(m, Due.parse(m)) for m in raw]
        users = await self.read_users(entries, campaigns, now)
        settle: list[str] = []
        deferred: dict[str, int] = {}
        counters: list[tuple[str, str]] = []
        sends: list[tuple[str, Campaign, Due, dict[str, Any]]] = []
        held_out: list[tuple[Campaign, Due]] = []
        for member, due in entries:
            c = campaigns.get(due.campaign_id)
            if c is None:
                settle.append(member)
                continue
            if c.status == "paused":  # waits for resume; looked at again a minute later, not every pass
                deferred[member] = now + PAUSED_RECHECK_MS
                continue
            u = users[due.message_id]
            if u["claimed"]:
                settle.append(member)  # produced by an earlier pass that crashed before removing it
                continue
            if cancelled(c, due, u["last_unless"]):
                settle.append(member)
                counters.append((c.id, "cancelled"))
                continue
            v = decide(c, due.user_id, now, in_audience=u["in_audience"], prefs=u["prefs"], attrs=u["attrs"],
                       cap_members=u["caps"], exists=u["exists"])
            if v.outcome == "send" and not self.buckets[c.channel].take():
                continue  # over the channel's rate: stays due
            if v.outcome == "deferred":
                deferred[member] = v.retry_at or now
                continue
            if v.outcome == "send":
                u["caps"].append(f"{c.id}|{due.message_id}")  # later entries of this pass see it
                sends.append((member, c, due, u))
                continue
            if v.outcome == "held_out":
                held_out.append((c, due))
            else:
                counters.append((c.id, f"suppressed:{v.reason}"))
            settle.append(member)
        for _m, _c, due, _u in sends:  # due (trigger time + delay) -> decided to send in this pass
            STATS.add("campaign_due_wait", now - due.trigger_ms - _c.trigger.delay_ms)
        sent, more = await self.send_all(sends, now)
        settle += sent
        counters += more
        keys = self.res.keys
        pipe = self.res.redis.pipeline(transaction=False)
        for c, due in held_out:  # qualified, held out: counted once per user and campaign
            await self.holdout(keys=[keys.user_campaigns(due.user_id), keys.campaign_stats(c.id)], args=[c.id, now],
                               client=pipe)
        for cid, what in counters:
            pipe.hincrby(self.res.keys.campaign_stats(cid), what, 1)
        if deferred:
            pipe.zadd(self.res.keys.campaign_due(), deferred, xx=True)
        if settle:
            pipe.zrem(self.res.keys.campaign_due(), *settle)
        await pipe.execute()
        return size, len(settle)

    async def read_users(self, entries: list[tuple[str, Due]], campaigns: dict[str, Campaign],
                         now: int) -> dict[str, dict[str, Any]]:
        """Everything the guards need of each message (by id), in one pipeline."""
        keys, pipe = self.res.keys, self.res.redis.pipeline(transaction=False)
        wanted = sorted({(d.user_id, d.campaign_id, d.message_id) for _, d in entries if d.campaign_id in campaigns})
        for user, cid, mid in wanted:
            c = campaigns[cid]
            profile_codec.queue_read(pipe, keys, user)
            pipe.hgetall(keys.user_attrs(user))
            pipe.zrangebyscore(keys.campaign_caps(user, c.channel), now - c.caps.window_ms, "+inf")
            pipe.zscore(keys.campaign_last(user), c.trigger.unless or "-")
            pipe.sismember(keys.segment_members(c.audience.segment or "-"), user)
            pipe.zscore(keys.campaign_caps(user, c.channel), f"{cid}|{mid}")
        raw = await pipe.execute()
        out = {}
        caps_by: dict[tuple[str, str], list[str]] = {}  # one list per (user, channel): sends of this pass count
        for i, (user, cid, mid) in enumerate(wanted):
            state, attrs_raw, caps, last, member, claimed = raw[6 * i:6 * i + 6]
            c = campaigns[cid]
            attrs, prefs = parse_attrs(attrs_raw)
            prof = profile_codec.unpack(state)
            out[mid] = {"attrs": attrs, "prefs": prefs, "caps": caps_by.setdefault((user, c.channel), caps),
                        "claimed": claimed is not None, "last_unless": int(last) if last is not None else None,
                        "in_audience": in_audience(c.audience, user, prof if state else None, attrs_raw,
                                                   segment_member=bool(member)),
                        "exists": bool(state) or bool(attrs), "profile": prof}
        return out

    async def send_all(self, sends: list[tuple[str, Campaign, Due, dict[str, Any]]],
                       now: int) -> tuple[list[str], list[tuple[str, str]]]:
        """Render the pass's messages, produce them to their outboxes, wait for every ack, then claim
        them all in one pipeline. Returns the settled due members and the counters to add."""
        if not sends:
            return [], []
        cs, keys = self.s.campaigns, self.res.keys
        recs = await recommendations_many(self.ranker, self.res.redis, keys, [due.user_id for _m, _c, due, _u in sends],
                                          cs.recommendations)
        settled: list[str] = []
        counters: list[tuple[str, str]] = []
        produced: list[tuple[Campaign, Due, str]] = []
        acks = []
        for member, c, due, u in sends:
            items = recs[due.user_id]
            message_links = links(cs.public_url, cs.link_secret.get_secret_value(), c.id, due.user_id,
                                  due.message_id)
            try:
                record = outbox_record(c, due.user_id, due.message_id, u["attrs"],
                                       document(u["profile"], now, self.profile_cfg), due.event, items,
                                       message_links, due.trigger_ms, now)
            except Exception as exc:  # noqa: BLE001 - any render error dead-letters this one message
                await self.dead_letter(due, f"{type(exc).__name__}: {exc}", now)
                counters.append((c.id, "template_error"))
                settled.append(member)
                continue
            acks.append(await self.outbox[c.channel].send(key=due.user_id.encode(),
                                                          value=self.msg_codec.encode(record)))
            produced.append((c, due, record.get("variant") or ""))
            settled.append(member)
        await asyncio.gather(*acks)  # Kafka's acks before any message counts as queued
        pipe = self.res.redis.pipeline(transaction=False)
        for c, due, variant in produced:
            await self.queued(keys=[keys.campaign_caps(due.user_id, c.channel), keys.user_campaigns(due.user_id),
                                    keys.campaign_stats(c.id)],
                              args=[c.id, f"{c.id}|{due.message_id}", now, c.caps.window_ms, "treated", variant],
                              client=pipe)
        if produced:
            await pipe.execute()
        return settled, counters

    async def dead_letter(self, due: Due, detail: str, now: int) -> None:
        """The due entry as a dead letter (source: the due set's key, no partition or offset)."""
        rec = RawRecord(self.res.keys.campaign_due(), -1, -1, due.user_id.encode(), due.member.encode())
        dead = Dead(rec, "template_error", f"campaign {due.campaign_id}: {detail}")
        await self.deadletters.send(key=rec.key, value=self.dead_codec.encode(dead.to_avro(now)))
        log.warning("campaign %s: message for %s dead-lettered: %s", due.campaign_id, due.user_id, detail)


def drain_tasks(app: faust.App, res: Resources, drainer: Drainer) -> None:
    """The drainer's pass loop and the aggregates' publisher, as tasks of ``app``."""

    @app.task
    async def drain_campaign_messages() -> None:
        """A pass as soon as this worker's trigger owner writes an entry due now (or when one written
        for later comes due), else every ``tick_s`` (entries written by other workers of the group);
        at once again while passes come back full."""
        while True:
            drainer.wake.clear()  # a wake-up during the pass starts the next one at once
            try:
                t0 = time.perf_counter()
                size, settled = await retrying("campaign drain", drainer.tick)
                if settled:
                    STATS.add("campaign_drain", (time.perf_counter() - t0) * 1000)
                full = settled >= size
            except Exception:  # noqa: BLE001 - never let the loop die; the entries stay due
                log.exception("campaign drainer pass failed")
                full = False
            if full:
                await asyncio.sleep(0)
                continue
            try:
                await asyncio.wait_for(drainer.wake.wait(), timeout=res.settings.campaigns.tick_s)
            except TimeoutError:
                pass

    @app.task
    async def publish_campaign_aggregates() -> None:
        """The campaigns' figures to the analyst topic every ``agg_interval_s`` (0: never)."""
        interval = res.settings.campaigns.agg_interval_s
        while interval > 0:
            await asyncio.sleep(interval)
            try:
                await drainer.publish()
            except Exception:  # noqa: BLE001 - the next interval publishes the figures again
                log.exception("publishing campaign aggregates failed")
