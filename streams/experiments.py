"""Experiment results kept by the stream: exposures, unique converters per event type and revenue
per variant. Owner of the ``experiment_tally`` / ``experiment_users`` / ``experiment_converted`` /
``user_experiments`` Redis keys and of the ``experiment_results`` Cassandra table.

- An exposure (``experiment_exposure`` record on the decisions topic) counts once per user and
  experiment (HSETNX on the experiment's users hash) and records the user's variant and first
  exposure time in ``user_experiments`` (for attribution).
- A behavior event of a conversion type counts for every experiment the user was exposed to at or
  before the event time and at most ``experiment_attribution_s`` before it, once per user, event
  type and experiment; purchases add their revenue. Events tagged with ``experiment_id`` and
  ``variant_id`` count even when the exposure has not been folded yet.

Exactly-once effects from at-least-once delivery: the facts of one experiment come from many
partitions of two topics, so each experiment's tally hash carries one offset fence per source
(topic, partition). Per batch: one pipeline reads the fences, pure Python keeps the facts above
them, and one compare-and-set Lua script per experiment applies them and moves the fences (it
refuses if a fence moved meanwhile, and the batch retries). Absolute tallies go to Cassandra.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from cassandra.concurrent import execute_concurrent_with_args

from aura.keys import RedisKeys
from aura.layout import Tables

CONVERSION_TYPES = frozenset({"click", "recommendation_click", "add_to_cart", "purchase", "message_click", "custom"})

TALLY_LUA = """
local n_f = tonumber(ARGV[1])
local i = 2
for _ = 1, n_f do
  local cur = redis.call('HGET', KEYS[1], ARGV[i]) or ''
  if cur ~= ARGV[i + 1] then return 0 end
  i = i + 3
end
local n_e = tonumber(ARGV[i]); i = i + 1
for _ = 1, n_e do
  if redis.call('HSETNX', KEYS[2], ARGV[i], ARGV[i + 1] .. '|' .. ARGV[i + 2]) == 1 then
    redis.call('HINCRBY', KEYS[1], ARGV[i + 1] .. '|exposed', 1)
  end
  i = i + 3
end
local n_c = tonumber(ARGV[i]); i = i + 1
for _ = 1, n_c do
  if redis.call('SADD', KEYS[3], ARGV[i] .. '|' .. ARGV[i + 1]) == 1 then
    redis.call('HINCRBY', KEYS[1], ARGV[i + 2] .. '|conv:' .. ARGV[i], 1)
  end
  if tonumber(ARGV[i + 3]) > 0 then
    redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i + 2] .. '|revenue', ARGV[i + 3])
  end
  i = i + 4
end
i = 2
for _ = 1, n_f do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 2])
  i = i + 3
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Source:
    """Where a fact came from: its record's topic, partition and offset."""

    topic: str
    partition: int
    offset: int

    @property
    def fence(self) -> str:
        return f"_off:{self.topic}:{self.partition}"


@dataclass(frozen=True, slots=True)
class ExposureFact:
    experiment_id: str
    variant: str
    user_id: str
    time: int
    src: Source


@dataclass(frozen=True, slots=True)
class ConversionEvent:
    """A behavior event that may convert: user, type, time, revenue, optional experiment tags."""

    user_id: str
    event_type: str
    time: int
    revenue: float
    experiment_id: str | None
    variant_id: str | None
    src: Source


@dataclass(frozen=True, slots=True)
class ConversionFact:
    experiment_id: str
    variant: str
    user_id: str
    event_type: str
    revenue: float
    src: Source


@dataclass
class ExperimentDelta:
    fences: dict[str, tuple[str, int]] = field(default_factory=dict)  # field -> (expected, new)
    exposures: list[ExposureFact] = field(default_factory=list)
    conversions: list[ConversionFact] = field(default_factory=list)


def attribute(conversions: list[ConversionEvent], memberships: dict[str, dict[str, tuple[str, int]]],
              window_ms: int) -> list[ConversionFact]:
    """Conversion facts per (experiment, event): ``memberships[user][experiment] = (variant, first
    exposure ms)``. An event counts for experiments exposed at or before it within the window; a
    tagged event counts for its own experiment when the membership is not known (yet)."""
    facts: list[ConversionFact] = []
    for ev in conversions:
        mine = memberships.get(ev.user_id, {})
        for exp_id, (variant, t0) in mine.items():
            if t0 <= ev.time <= t0 + window_ms:
                facts.append(ConversionFact(exp_id, variant, ev.user_id, ev.event_type, ev.revenue, ev.src))
        if ev.experiment_id and ev.variant_id and ev.experiment_id not in mine:
            facts.append(ConversionFact(ev.experiment_id, ev.variant_id, ev.user_id, ev.event_type, ev.revenue,
                                        ev.src))
    return facts


def fold(exposures: list[ExposureFact], conversions: list[ConversionFact],
         fences: dict[str, dict[str, int]]) -> dict[str, ExperimentDelta]:
    """Per experiment, the facts above its fences and the fences' expected and new values (pure).

    ``fences[experiment][field]`` is the stored offset of one source partition (absent: none)."""
    deltas: dict[str, ExperimentDelta] = {}
    for fact in [*exposures, *conversions]:
        exp_fences = fences.get(fact.experiment_id, {})
        stored = exp_fences.get(fact.src.fence)
        if stored is not None and fact.src.offset <= stored:
            continue
        d = deltas.setdefault(fact.experiment_id, ExperimentDelta())
        expected = "" if stored is None else str(stored)
        prev = d.fences.get(fact.src.fence)
        d.fences[fact.src.fence] = (expected, max(fact.src.offset, prev[1] if prev else -1))
        (d.exposures if isinstance(fact, ExposureFact) else d.conversions).append(fact)  # type: ignore[arg-type]
    return deltas


def lua_args(delta: ExperimentDelta) -> list[Any]:
    args: list[Any] = [len(delta.fences)]
    for f, (expected, new) in sorted(delta.fences.items()):
        args += [f, expected, str(new)]
    args.append(len(delta.exposures))
    for e in delta.exposures:
        args += [e.user_id, e.variant, e.time]
    args.append(len(delta.conversions))
    for c in delta.conversions:
        args += [c.event_type, c.user_id, c.variant, repr(round(c.revenue, 6))]
    return args


def split_tally(raw: dict[str, str]) -> tuple[dict[str, float], dict[str, int]]:
    """The tally hash -> (counters, fences)."""
    tally = {k: float(v) for k, v in raw.items() if not k.startswith("_off:")}
    fences = {k: int(v) for k, v in raw.items() if k.startswith("_off:")}
    return tally, fences


class ExperimentTallies:
    """Reads and writes experiment tallies in Redis and Cassandra; one instance per worker."""

    owner = "experiments"

    def __init__(self, redis: Any, session: Any, keys: RedisKeys, attribution_ms: int) -> None:
        self.redis, self.session, self.keys = redis, session, keys
        self.attribution_ms = attribution_ms
        self.script = redis.register_script(TALLY_LUA)
        self.upsert = session.prepare(
            f"INSERT INTO {Tables.EXPERIMENT_RESULTS} (experiment_id, tally, fences, updated_at) "
            "VALUES (?, ?, ?, toTimestamp(now()))")

    async def memberships(self, users: list[str]) -> dict[str, dict[str, tuple[str, int]]]:
        if not users:
            return {}
        pipe = self.redis.pipeline(transaction=False)
        for u in users:
            pipe.hgetall(self.keys.user_experiments(u))
        raw = await pipe.execute()
        out: dict[str, dict[str, tuple[str, int]]] = {}
        for u, h in zip(users, raw, strict=True):
            out[u] = {e: (v.rsplit("|", 1)[0], int(v.rsplit("|", 1)[1])) for e, v in h.items()}
        return out

    async def apply(self, exposures: list[ExposureFact], conversions: list[ConversionEvent]) -> dict[str, Any]:
        """Fold one batch exactly once; returns counts of what was applied."""
        if not exposures and not conversions:
            return {"exposures": 0, "conversions": 0}
        # 1. memberships first (idempotent HSETNX): later batches attribute against them
        if exposures:
            pipe = self.redis.pipeline(transaction=False)
            for e in exposures:
                pipe.hsetnx(self.keys.user_experiments(e.user_id), e.experiment_id, f"{e.variant}|{e.time}")
            await pipe.execute()
        members = await self.memberships(sorted({c.user_id for c in conversions}))
        facts = attribute(conversions, members, self.attribution_ms)
        experiments = sorted({f.experiment_id for f in [*exposures, *facts]})
        applied = {"exposures": 0, "conversions": 0}
        for _attempt in range(5):
            pipe = self.redis.pipeline(transaction=False)
            for exp_id in experiments:
                pipe.hgetall(self.keys.experiment_tally(exp_id))
            raws = await pipe.execute()
            fences = {e: split_tally(r)[1] for e, r in zip(experiments, raws, strict=True)}
            deltas = fold(exposures, facts, fences)
            order = list(deltas)
            pipe = self.redis.pipeline(transaction=False)
            for exp_id in order:
                keys = [self.keys.experiment_tally(exp_id), self.keys.experiment_users(exp_id),
                        self.keys.experiment_converted(exp_id)]
                await self.script(keys=keys, args=lua_args(deltas[exp_id]), client=pipe)
            results = await pipe.execute() if order else []
            for exp_id, ok in zip(order, results, strict=True):
                if ok:
                    applied["exposures"] += len(deltas[exp_id].exposures)
                    applied["conversions"] += len(deltas[exp_id].conversions)
            conflicts = {e for e, ok in zip(order, results, strict=True) if not ok}
            if not conflicts:
                break
            experiments = sorted(conflicts)
        else:
            raise RuntimeError(f"tally fence conflicts did not settle for {len(conflicts)} experiments")
        await self.write_durable(sorted({f.experiment_id for f in [*exposures, *facts]}))
        return applied

    async def write_durable(self, experiments: list[str]) -> None:
        """Copy the absolute tallies (and fences) of ``experiments`` to Cassandra."""
        if not experiments:
            return
        pipe = self.redis.pipeline(transaction=False)
        for e in experiments:
            pipe.hgetall(self.keys.experiment_tally(e))
        raws = await pipe.execute()
        params = [(e, *split_tally(r)) for e, r in zip(experiments, raws, strict=True)]
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: execute_concurrent_with_args(self.session, self.upsert, params, concurrency=32,
                                                       raise_on_first_error=True))

