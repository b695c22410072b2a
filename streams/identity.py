"""The agent over ``events.identity``: profile attributes, explicit preferences, anonymous-to-known
merge and erase (the right to be forgotten).

Owner of the Redis keys ``user_attrs`` (attributes ``x:<name>``, preferences ``p:<what>`` as JSON,
fences ``_off:<partition>`` of the identity topic; the hash's format is in aura/state/profiles.py) and
``user_alias``; merge and erase also write the profile state (``user_state``, aura/state/profile_codec.py)
through the version compare-and-set of streams/profiles.py.

- create/update/preferences: folded in offset order above the user's identity fence, one pipeline
  read and one Lua compare-and-set per batch (pure ``apply_identity``). A preferences event merges
  each section it carries into the stored one, except the sections its ``replace`` names, which it
  replaces (the API's ``PUT /profiles/{id}/preferences``).
- merge(anonymous_id -> user_id): the anonymous profile is folded into the user's (``merge_profiles``:
  sums, min/max, decayed sums moved to a common time, fences united so events of the anonymous id
  are never counted twice), written atomically with the identity fence; then the anonymous keys are
  deleted and an alias makes later events of the anonymous id count for the user.
- an event the store cannot apply (not a store error) is dead-lettered as ``fold_failed`` and the
  rest of its batch applied (``fold``, bisection by ``streams.runtime.isolating``).
- segments over identity attributes (``attr.<name>`` rules): when a rule in force tests attributes,
  the users whose attributes a batch changed are re-evaluated at the end of the batch
  (``streams.lifecycle.resegment_users``: compare-and-set of the profile, member sets through
  ``HISTORY_LUA``), without waiting for a behavior event; an event found already applied (a replay)
  re-evaluates its user too, rewriting the whole membership (absolute, counted once).
- erase: every key of the user in Redis, its rows in Cassandra and its segment memberships are
  deleted, and a tombstone (null value) for the user is produced to the compacted identity topic.
- the searchable copy of the attributes (``profile_search``, aura/state/profile_search.py): after each
  batch, the attributes of its users are read back and handed to the write-behind, which holds the
  batch's Kafka acks until they are written; erase and merge delete the partition.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import faust
from cassandra.concurrent import execute_concurrent

from aura import layout
from aura.layout import Tables
from aura.state import profile_search
from aura.state import segments as segment_rules
from aura.state.profile_codec import next_version
from aura.state.profiles import (
    ATTRS_FENCE,
    Profile,
    ProfileConfig,
    add_decayed,
    decay,
    f32,
    parse_attrs,
    segment_view,
)
from schemas.codec import DecodeError, codec
from schemas.events import Identity, InvalidEvent, validate_identity
from streams.durable import execute_grouped
from streams.erasure import erase_references, interactions_delete
from streams.intake import Dead, RawRecord
from streams.lifecycle import resegment_users
from streams.profiles import ProfileStore, lua_args
from streams.runtime import Owner, Resources, isolating
from streams.segments import LiveRules

__all__ = ["apply_identity", "fold", "merge_profiles", "register"]
SEARCH_SINK = "profile_search_attrs"
log = logging.getLogger(__name__)


def apply_identity(attrs: dict[str, str], ev: Identity) -> dict[str, str]:
    """The attrs hash after ``ev`` (create/update/preferences); pure."""
    out = dict(attrs)
    for k, v in ev.attributes.items():
        if v is None:
            out.pop(f"x:{k}", None)
        else:
            out[f"x:{k}"] = json.dumps(v)
    if ev.event_type == "preferences" and ev.preferences:
        prefs = ev.preferences
        for what in prefs.get("replace") or ():  # replaced sections start empty
            out.pop(f"p:{what}", None)
        for what in ("channels", "categories", "brands"):
            given = prefs.get(what) or {}
            if given or what != "brands":  # channels and categories are always present after preferences
                merged = {**json.loads(out.get(f"p:{what}", "{}")), **given}
                out[f"p:{what}"] = json.dumps(merged, sort_keys=True)
        if prefs.get("blocked_items"):
            blocked = sorted(set(json.loads(out.get("p:blocked_items", "[]"))) | set(prefs["blocked_items"]))
            out["p:blocked_items"] = json.dumps(blocked)
        if prefs.get("locale"):
            out["p:locale"] = json.dumps(prefs["locale"])
        band = {k: v for k, v in (prefs.get("price_range") or {}).items() if v is not None}
        if band:
            out["p:price_range"] = json.dumps(band, sort_keys=True)
    return out


def merge_profiles(known: Profile, anon: Profile, cfg: ProfileConfig, attrs: dict[str, Any] | None = None) -> Profile:
    """``known`` with ``anon``'s history folded in (pure; returns a new Profile); ``attrs``: the known
    user's identity attributes the segment rules test."""
    m = Profile(**{k: getattr(known, k) for k in Profile.__dataclass_fields__})
    m.counts = dict(known.counts)
    for k, v in anon.counts.items():
        m.counts[k] = m.counts.get(k, 0) + v
    firsts = [x for x in (known.first_seen, anon.first_seen) if x is not None]
    lasts = [x for x in (known.last_seen, anon.last_seen) if x is not None]
    m.first_seen = min(firsts) if firsts else None
    m.last_seen = max(lasts) if lasts else None
    newer_anon = (anon.last_seen or 0) > (known.last_seen or 0)
    first, second = (anon.recent, known.recent) if newer_anon else (known.recent, anon.recent)
    m.recent = list(dict.fromkeys([*first, *second]))[: cfg.recent_max]
    m.fences = dict(known.fences)
    for p, off in anon.fences.items():
        m.fences[p] = max(off, m.fences.get(p, -1))
    m.sessions = known.sessions + anon.sessions
    m.orders = known.orders + anon.orders
    m.ltv = round(known.ltv + anon.ltv, 6)
    m.eng, m.eng_t = add_decayed(known.eng, known.eng_t, anon.eng, anon.eng_t, cfg.engagement_half_life_ms)
    m.eng = f32(m.eng)
    t = max(known.aff_t, anon.aff_t)
    m.aff = {k: decay(v, known.aff_t, t, cfg.affinity_half_life_ms) for k, v in known.aff.items()}
    for k, v in anon.aff.items():
        m.aff[k] = m.aff.get(k, 0.0) + decay(v, anon.aff_t, t, cfg.affinity_half_life_ms)
    m.aff = {k: f32(v) for k, v in m.aff.items()}  # stored as float32 (profile_codec.pack)
    m.aff_t = t
    m.idle = ""
    if not known.stage:
        m.stage, m.stage_at = anon.stage, anon.stage_at
    if newer_anon:
        m.session_id, m.session_start, m.path = anon.session_id, anon.session_start, anon.path
        m.last_rec = anon.last_rec
    m.segments = segment_rules.evaluate(cfg.rules, segment_view(m, cfg, attrs=attrs))
    return m


ATTRS_LUA = """
local off = redis.call('HGET', KEYS[1], ARGV[1]) or ''
if off ~= ARGV[2] then return 0 end
redis.call('DEL', KEYS[1])
local a = {}
for j = 4, #ARGV do a[j - 3] = ARGV[j] end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3], unpack(a))
return 1
"""

# KEYS: the known user's state (profile_codec.pack) and attrs hash (same hash tag: one slot). ARGV: the
# identity fence field, its expected and new value, then profiles.lua_args (expected head, new state).
MERGE_LUA = """
local off = redis.call('HGET', KEYS[2], ARGV[1]) or ''
if off ~= ARGV[2] then return -1 end
if redis.call('GETRANGE', KEYS[1], 0, 3) ~= ARGV[4] then return 0 end
redis.call('SET', KEYS[1], ARGV[5])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
"""


class IdentityStore:
    def __init__(self, res: Resources, cfg: ProfileConfig) -> None:
        self.res = res
        self.redis = res.redis
        self.keys = res.keys
        self.cfg = cfg
        self.profiles = ProfileStore(res.redis, res.session, res.keys, cfg)
        self.profiles.live = LiveRules(cfg.rules, res.redis, res.keys, res.session)
        self.attrs_script = res.redis.register_script(ATTRS_LUA)
        self.merge_script = res.redis.register_script(MERGE_LUA)
        s = res.session
        self.del_stmts = [s.prepare(f"DELETE FROM {t} WHERE user_id = ?")
                          for t in (Tables.USER_ACTIVITY, Tables.USER_PROFILE, Tables.PROFILE_SEARCH)]
        self.del_interactions = interactions_delete(s)
        # the searchable copy of the attributes (aura/state/profile_search.py), through the write-behind
        self.search_stmts = [s.prepare(cql) for cql in profile_search.attrs_cql()]
        if res.durable is not None:  # else (tools, tests without a write-behind) written at once
            res.durable.cql_sink(SEARCH_SINK, s, self.search_statements)
        self.touched: dict[str, None] = {}  # users whose attributes this batch may have changed

    def search_statements(self, rows: dict[Any, dict[str, Any]]) -> list[Any]:
        """The searchable copy of each user's attributes (absolute: numeric rows replaced)."""
        ts = profile_search.now_us()
        return [(("user", u), self.search_stmts[which], params)
                for u, attrs in rows.items() for which, params in profile_search.attrs_params(u, attrs, ts)]

    async def buffer_search(self) -> None:
        """Hand the current attributes of the batch's users to the write-behind (read back from
        Redis, so a replayed batch whose Redis effects were fenced off still writes its rows)."""
        users, self.touched = list(self.touched), {}
        if not users:
            return
        pipe = self.redis.pipeline(transaction=False)
        for u in users:
            pipe.hgetall(self.keys.user_attrs(u))
        # an empty hash: the user was erased or merged away; an error (an unreadable key): that user's
        # own events fail and are dead-lettered, never the other users of the batch
        rows = {u: parse_attrs(raw)[0]
                for u, raw in zip(users, await pipe.execute(raise_on_error=False), strict=True)
                if raw and not isinstance(raw, Exception)}
        if self.res.durable is None:
            await execute_grouped(self.res.session, self.search_statements(rows))
            return
        for u, attrs in rows.items():
            self.res.durable.put(SEARCH_SINK, u, attrs)

    async def apply(self, events: list[tuple[Identity, int, int]]) -> list[str]:
        """Apply (event, partition, offset) in order; returns the user ids erased (tombstones to send)."""
        erased: list[str] = []
        self.touched = {}  # an attempt that failed (fold isolation retries the rest) leaves nothing behind
        if events:
            await self.profiles.sync_rules()  # the segment rules in force (merges re-evaluate them)
            self.cfg = self.profiles.cfg
        resegment: dict[str, bool] = {}  # users whose attributes changed -> replayed (see the module doc)
        for ev, part, off in sorted(events, key=lambda e: (e[1], e[2])):
            field = f"{ATTRS_FENCE}{part}"
            akey = self.keys.user_attrs(ev.user_id)
            if ev.event_type == "erase":
                await self.erase(ev.user_id)
                erased.append(ev.user_id)
                resegment.pop(ev.user_id, None)
                continue
            self.touched[ev.user_id] = None
            cur = await self.redis.hget(akey, field)
            if ev.attributes and ev.event_type != "merge":
                resegment[ev.user_id] = resegment.get(ev.user_id, False) or (cur is not None and int(cur) >= off)
            if cur is not None and int(cur) >= off:
                if ev.event_type == "merge" and ev.anonymous_id:
                    await self._drop_anonymous(ev.anonymous_id, ev.user_id)  # finish an interrupted merge
                continue
            if ev.event_type == "merge" and ev.anonymous_id:
                await self.merge(ev, field, cur, off)
                continue
            attrs = await self.redis.hgetall(akey)
            new = apply_identity({k: v for k, v in attrs.items() if not k.startswith("_")}, ev)
            for k, v in attrs.items():
                if k.startswith(ATTRS_FENCE) and k != field:
                    new[k] = v
            args: list[Any] = [field, cur or "", str(off)]
            for k, v in new.items():
                args += [k, v]
            await self.attrs_script(keys=[akey], args=args)
        if resegment and segment_rules.uses_attributes(self.cfg.rules):
            await resegment_users(self.profiles, resegment, [u for u, again in resegment.items() if again])
        await self.buffer_search()
        return erased

    async def merge(self, ev: Identity, field: str, cur: str | None, off: int) -> None:
        anon_id, user = ev.anonymous_id or "", ev.user_id
        for _attempt in range(8):
            states, attrs = await self.profiles.read_with_attrs([user, anon_id])
            known, anon = states[user], states[anon_id]
            merged = merge_profiles(known, anon, self.cfg, attrs.get(user))
            merged.version = next_version(known.version)
            k = self.keys
            args = [field, cur or "", str(off), *lua_args(known.version or None, merged)]
            ok = await self.merge_script(keys=[k.user_state(user), k.user_attrs(user)], args=args)
            if ok == 1:
                await self.profiles.segments.reconcile({user: merged}, set())
                await self.profiles.write_durable({user: merged})
                break
            if ok == -1:  # the fence moved: applied already
                break
        await self._drop_anonymous(anon_id, user)

    async def _drop_anonymous(self, anon_id: str, user: str) -> None:
        await self.redis.set(self.keys.user_alias(anon_id), user)
        await self._delete_user(anon_id, keep_alias=True)

    async def _delete_user(self, user: str, keep_alias: bool = False) -> None:

        k = self.keys
        names = [k.user_state(user), k.user_attrs(user)]
        if not keep_alias:
            names.append(k.user_alias(user))
        await self.redis.delete(*names)
        self.touched.pop(user, None)
        await self.profiles.segments.remove_user(user)
        # rows of the user still buffered by the behavior owners' write-behind (or in a flush now)
        # would otherwise be written after the delete below and bring the user back from Cassandra
        await self.res.durable.forget(user)
        stmts = [(st, (user,)) for st in self.del_stmts]
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: execute_concurrent(self.res.session, stmts, raise_on_first_error=True))

    async def erase(self, user: str) -> None:
        """Forget ``user``: its recommender and experiment footprint (streams/erasure.py), then its
        profile keys and rows; aliases pointing at it stay harmless (their target is empty)."""
        await self.res.durable.forget(user)  # no buffered row of the user may land after the deletes
        await erase_references(self.redis, self.keys, self.res.session, self.del_interactions, user)
        await self._delete_user(user)


async def fold(store: IdentityStore, events: list[tuple[Identity, int, int, RawRecord]]
               ) -> tuple[list[str], list[Dead]]:
    """Apply a batch's events (partition and offset order); an event the store cannot apply is found
    by bisection and dead-lettered as ``fold_failed`` (``streams.runtime.isolating``), the rest are
    applied; store errors are retried. Returns the user ids erased and the dead letters."""
    erased: list[str] = []

    async def step(part: list[tuple[Identity, int, int, RawRecord]]) -> None:
        erased.extend(await store.apply([(ev, p, o) for ev, p, o, _ in part]))

    ordered = sorted(events, key=lambda e: (e[1], e[2]))
    dead = await isolating("identity", step, ordered, lambda e: e[3])
    return list(dict.fromkeys(erased)), dead


def register(app: faust.App, res: Resources) -> list[Owner]:
    """The agent over ``events.identity``; it feeds no owner of the behavior agent."""
    s = res.settings
    source_topic = layout.topic(s, layout.IDENTITY)
    deadletter_topic = layout.topic(s, layout.DEADLETTER)
    source = app.topic(source_topic, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    deadletters = app.topic(deadletter_topic, key_serializer="raw", value_serializer="raw")
    tombstones = app.topic(source_topic, key_serializer="raw", value_serializer="raw")
    event_codec = codec("identity_event")
    dead_codec = codec("dead_letter")
    store = IdentityStore(res, ProfileConfig.from_settings(s))

    @app.agent(source, name="process_identity")
    async def process_identity(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(s.worker.batch_max, within=s.worker.batch_within_s):
            now_ms = int(time.time() * 1000)
            good: list[tuple[Identity, int, int, RawRecord]] = []
            dead: list[Dead] = []
            for e in batch:
                m = e.message
                if m.value is None:  # a tombstone (ours, after an erase)
                    continue
                try:
                    good.append((validate_identity(event_codec.decode(m.value), now_ms), m.partition, m.offset,
                                 RawRecord.of(m)))
                except (DecodeError, InvalidEvent) as exc:
                    dead.append(Dead(RawRecord.of(m), exc.reason,
                                     exc.detail))
                except Exception as exc:  # noqa: BLE001 - the record's fault; dead-letter it
                    dead.append(Dead(RawRecord.of(m), "invalid_event",
                                     f"{type(exc).__name__}: {exc}"))
            erased, failed = await fold(store, good)
            dead += failed
            for d in dead:
                await deadletters.send(key=d.record.key, value=dead_codec.encode(d.to_avro(now_ms)))
            if dead:
                pipe = res.redis.pipeline(transaction=False)
                for d in dead:
                    pipe.hincrby(res.keys.deadletter_count(), d.reason, 1)
                await pipe.execute()
            for user in erased:
                await tombstones.send(key=user.encode(), value=None)
            await res.durable.after_batch(batch)  # acks held until the searchable copy is written

    return []
