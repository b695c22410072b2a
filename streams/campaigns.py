"""Campaign triggers and attribution in the worker. Owner of the Redis keys ``campaign_due``,
``campaign_last``, ``user_campaigns``, ``campaign_converted`` and the trigger-side counters of
``campaign_stats`` (aura/layout.py); formats and pure rules in aura/state/campaigns.py and
aura/state/campaign_sends.py. The drainer that moves due messages through the guards to the outboxes
is streams/campaign_drain.py.

- The behavior owner ``campaigns`` (one step per deduplicated batch): an event that triggers a
  running campaign adds a due entry (ZADD NX: a replay is harmless) due at event time + the
  trigger's delay; events of a type some campaign waits for (``unless``) record the user's latest
  time of that type (ZADD GT); goal events convert users who qualified for a campaign (treated or
  held out) within the goal's window, once per user (SADD then count, one script).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import faust

from aura.configcache import ConfigCache
from aura.layout import Tables
from aura.state.campaign_sends import Due, trigger_fields
from aura.state.campaigns import Campaign, api_triggered, triggered_by, validate_campaign, watched_types
from streams import campaign_schedule
from streams.campaign_drain import Drainer, drain_tasks
from streams.intake import Dead
from streams.runtime import Batch, Owner, Resources

log = logging.getLogger(__name__)

# KEYS: converted set, stats. ARGV: user, group (treated | holdout), revenue, content variant ('' for none)
CONVERT_LUA = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[2], 'converted:' .. ARGV[2], 1)
  redis.call('HINCRBYFLOAT', KEYS[2], 'revenue:' .. ARGV[2], ARGV[3])
  if ARGV[4] ~= '' then
    redis.call('HINCRBY', KEYS[2], 'converted:' .. ARGV[2] .. '@' .. ARGV[4], 1)
    redis.call('HINCRBYFLOAT', KEYS[2], 'revenue:' .. ARGV[2] .. '@' .. ARGV[4], ARGV[3])
  end
  return 1
end
return 0
"""

# KEYS: engaged set, stats. ARGV: "open|<message id>", counter
ENGAGED_LUA = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[2], 1)
end
return 1
"""
ENGAGEMENT = {"message_open": ("open", "opened"), "message_click": ("click", "clicked")}

def campaign_cache(res: Resources) -> ConfigCache[Campaign]:
    return ConfigCache("campaigns", Tables.CAMPAIGNS, "campaign_id", res.redis, res.keys, res.session,
                       validate_campaign)


class Triggers:
    """The behavior owner: due entries, watched event times, goal conversions."""

    def __init__(self, res: Resources, cache: ConfigCache[Campaign],
                 on_due: Callable[[int], None] | None = None) -> None:
        self.res, self.cache = res, cache
        self.on_due = on_due  # told the earliest due time of the entries a step wrote (the drainer's wake-up)
        self.convert = res.redis.register_script(CONVERT_LUA)
        self.engaged = res.redis.register_script(ENGAGED_LUA)

    async def step(self, b: Batch) -> list[Dead] | None:
        campaigns = [c for c in (await self.cache.get()).values() if c.status not in ("draft", "archived")]
        if not campaigns or not b.kept:
            return None
        keys = self.res.keys
        running = [c for c in campaigns if c.status == "running"]
        by_id = {c.id: c for c in running}
        watched = watched_types(running)
        goals = {c.goal.event_type for c in campaigns}
        pipe = self.res.redis.pipeline(transaction=False)
        converting = []
        earliest: int | None = None
        for acc in b.kept:
            ev = acc.event
            props = ev.raw.get("properties") or {}
            for c in [*triggered_by(running, ev.event_type, ev.item_id, b.now_ms, ev.event_time),
                      *api_triggered(by_id, ev.event_type, props, b.now_ms, ev.event_time)]:
                due = Due(c.id, ev.user_id, ev.event_id, ev.event_time, trigger_fields(ev.raw))
                at = ev.event_time + c.trigger.delay_ms
                pipe.zadd(keys.campaign_due(), {due.member: at}, nx=True)
                earliest = at if earliest is None else min(earliest, at)
            if ev.event_type in watched:
                pipe.zadd(keys.campaign_last(ev.user_id), {ev.event_type: ev.event_time}, gt=True)
            if ev.event_type in goals:
                converting.append(ev)
            cid, mid = ev.raw.get("campaign_id"), ev.raw.get("message_id")
            if ev.event_type in ENGAGEMENT and cid and mid:
                what, counter = ENGAGEMENT[ev.event_type]
                await self.engaged(keys=[keys.campaign_engaged(cid), keys.campaign_stats(cid)],
                                   args=[f"{what}|{mid}", counter], client=pipe)
        if len(pipe.command_stack):
            await pipe.execute()
        if earliest is not None and self.on_due is not None:
            self.on_due(earliest)
        if converting:
            await self.attribute(converting, {c.id: c for c in campaigns})
        return None

    async def attribute(self, events: list[Any], campaigns: dict[str, Campaign]) -> None:
        users = sorted({e.user_id for e in events})
        pipe = self.res.redis.pipeline(transaction=False)
        for u in users:
            pipe.hgetall(self.res.keys.user_campaigns(u))
        groups = dict(zip(users, await pipe.execute(), strict=True))
        pipe = self.res.redis.pipeline(transaction=False)
        n = 0
        for ev in events:
            for cid, val in (groups.get(ev.user_id) or {}).items():
                c = campaigns.get(cid)
                group, t0 = val.rsplit("|", 1)
                group, _, variant = group.partition("@")
                if (c is None or ev.event_type != c.goal.event_type or (c.goal.item_id and c.goal.item_id != ev.item_id)
                        or not int(t0) <= ev.event_time <= int(t0) + c.goal.window_ms):
                    continue
                await self.convert(keys=[self.res.keys.campaign_converted(cid), self.res.keys.campaign_stats(cid)],
                                   args=[ev.user_id, group, repr(round(ev.revenue, 6)), variant], client=pipe)
                n += 1
        if n:
            await pipe.execute()


def register(app: faust.App, res: Resources) -> list[Owner]:
    """The trigger owner of the behavior batches and the drainer's tasks."""
    cache = campaign_cache(res)
    drainer = Drainer(app, res, cache)
    triggers = Triggers(res, cache, on_due=drainer.due_at)
    drain_tasks(app, res, drainer)
    campaign_schedule.start(app, res, cache, drainer.leased, drainer.due_at)  # segment and schedule triggers
    return [("campaigns", triggers.step)]
