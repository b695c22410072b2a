"""Decisions: the agent over the decisions topic and the step the behavior agent runs, feeding the
two state owners streams/experiments.py (exposures, conversions, revenue per variant) and
streams/bandits.py (pulls and rewards).

``process_decisions`` consumes the decisions topic: undecodable or invalid records are dead-lettered
here with their reason, and a fact the owners cannot fold as ``fold_failed`` (the rest of its batch is
folded: ``fold``); records of other kinds on that topic (campaign deliveries, served lists)
belong to other agents and are skipped. Conversions and rewards come from behavior events, decoded
and de-duplicated once by the behavior agent (streams/behavior.py), which runs the owner step that
``register`` returns on every batch and sends and counts the dead letters it returns (rewards of
unknown decisions or bandits). Both topics are keyed by user id with the same partition count;
every fact carries its (topic, partition, offset), and the owners fence per source.

A reward and its decision travel on different topics and are folded by different agents, so a
reward can be ready before its decision record exists: the behavior step then waits (at most
``DECISION_WAIT_S``, woken by every finished decisions batch) for the decision to be folded, and
only what is still unknown after that is dead-lettered as ``unknown_decision``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust

from aura import layout
from aura.configcache import ConfigCache
from aura.layout import Tables
from aura.state.bandits import BanditConfig, decision_bandit, validate_bandit
from schemas.codec import DecodeError, codec, decode_any
from schemas.events import Behavior, InvalidEvent, validate_behavior, validate_exposure
from streams.bandits import BanditStore, DecisionFact, RewardFact, validate_decision
from streams.experiments import CONVERSION_TYPES, ConversionEvent, ExperimentTallies, ExposureFact, Source
from streams.intake import Accepted, Dead, RawRecord
from streams.runtime import Batch, Owner, Resources, isolating

log = logging.getLogger(__name__)

DECISION_WAIT_S = 2.0  # how long a reward waits for its decision to be folded before it is an orphan


class Parsed:
    """One batch, decoded: the facts each owner needs and the dead letters."""

    def __init__(self) -> None:
        self.exposures: list[ExposureFact] = []
        self.decisions: list[DecisionFact] = []
        self.behavior: list[tuple[Accepted, Source, RawRecord]] = []
        self.dead: list[Dead] = []
        self.skipped = 0


def parse(records: list[RawRecord], decisions_topic: str, now_ms: int) -> Parsed:
    """Decode a mixed batch (pure): decisions-topic records by their schema, behavior records kept
    only when they can convert or reward."""
    out = Parsed()
    behavior_codec = codec("behavior_event")
    for rec in records:
        src = Source(rec.topic, rec.partition, rec.offset)
        if rec.topic == decisions_topic:
            try:
                kind, record = decode_any(rec.value)  # type: ignore[arg-type]
                if kind == "experiment_exposure":
                    ex = validate_exposure(record, now_ms)
                    out.exposures.append(ExposureFact(ex.experiment_id, ex.variant_id, ex.user_id, ex.event_time, src))
                elif kind == "bandit_decision":
                    out.decisions.append(validate_decision(record, src))
                else:
                    out.skipped += 1  # another owner's kind
            except (DecodeError, InvalidEvent) as exc:
                out.dead.append(Dead(rec, exc.reason, exc.detail))
            except Exception as exc:  # noqa: BLE001 - anything else in a record is still its fault
                out.dead.append(Dead(rec, "invalid_event", f"{type(exc).__name__}: {exc}"))
            continue
        try:
            ev = validate_behavior(behavior_codec.decode(rec.value, epoch_ms=True), now_ms)  # type: ignore[arg-type]
        except Exception:  # noqa: BLE001, S112 - dead-lettered by process_behavior
            continue
        out.behavior += behavior_facts([Accepted(ev, rec.partition, rec.offset)], {(rec.partition, rec.offset): rec},
                                       rec.topic)
    return out


def behavior_facts(kept: list[Accepted], raw: dict[tuple[int, int], RawRecord], topic: str
                   ) -> list[tuple[Accepted, Source, RawRecord]]:
    """The accepted behavior events that can convert or reward, with their source (pure)."""
    out = []
    for acc in kept:
        ev = acc.event
        if ev.event_type in CONVERSION_TYPES or decision_bandit(ev.raw.get("recommendation_id")):
            out.append((acc, Source(topic, acc.partition, acc.offset), raw[(acc.partition, acc.offset)]))
    return out


def conversions_and_rewards(kept: list[tuple[Accepted, Source, RawRecord]]
                            ) -> tuple[list[ConversionEvent], list[RewardFact]]:
    conversions: list[ConversionEvent] = []
    rewards: list[RewardFact] = []
    for acc, src, rec in kept:
        ev: Behavior = acc.event
        if ev.event_type in CONVERSION_TYPES:
            conversions.append(ConversionEvent(ev.user_id, ev.event_type, ev.event_time, ev.revenue,
                                               ev.raw.get("experiment_id"), ev.raw.get("variant_id"), src))
        rid = ev.raw.get("recommendation_id")
        bid = decision_bandit(rid)
        if bid is not None:
            rewards.append(RewardFact(bid, rid, ev.event_type, ev.event_time, src, rec))
    return conversions, rewards


class DecisionOwners:
    """The two state owners of decisions and their shared configuration cache (one per worker)."""

    def __init__(self, res: Resources) -> None:
        s = res.settings
        self.res = res
        self.tallies = ExperimentTallies(res.redis, res.session, res.keys, s.decisions.experiment_attribution_s * 1000)
        self.bandits = BanditStore(res.redis, res.session, res.keys, s.decisions.decision_ttl_s)
        self.configs: ConfigCache[BanditConfig] = ConfigCache("bandits", Tables.BANDITS, "bandit_id", res.redis,
                                                              res.keys, res.session, validate_bandit)
        # Rewards arrive on the behavior topic, their decisions on the decisions topic, folded by two
        # agents: a reward may be ready before its decision. ``progress`` is set (and replaced) after
        # every decisions batch, so the behavior step can wait for the decisions agent (bounded).
        self.progress = asyncio.Event()

    def decisions_folded(self) -> None:
        self.progress.set()
        self.progress = asyncio.Event()

    async def missing_decisions(self, rewards: list[RewardFact]) -> set[str]:
        """Decision ids of ``rewards`` whose decision record is not (yet) in Redis (one MGET per bandit)."""
        known = await self.configs.get()
        ask = sorted({(r.bandit_id, r.decision_id) for r in rewards if r.bandit_id in known})
        if not ask:
            return set()
        pipe = self.res.redis.pipeline(transaction=False)
        for b, d in ask:
            pipe.exists(self.res.keys.bandit_decision(b, d))
        return {d for (_b, d), ok in zip(ask, await pipe.execute(), strict=True) if not ok}

    async def await_decisions(self, rewards: list[RewardFact], max_wait_s: float = DECISION_WAIT_S) -> None:
        """Give the decisions agent up to ``max_wait_s`` to fold the decisions these rewards refer to;
        what is still missing after that is an orphan (dead-lettered by ``apply``)."""
        if not rewards or not await self.missing_decisions(rewards):
            return
        deadline = time.monotonic() + max_wait_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                await asyncio.wait_for(self.progress.wait(), timeout=left)
            except TimeoutError:
                return
            if not await self.missing_decisions(rewards):
                return

    async def apply(self, exposures: list[ExposureFact], decisions: list[DecisionFact],
                    behavior: list[tuple[Accepted, Source, RawRecord]], records: list[RawRecord],
                    dupes: int = 0) -> list[Dead]:
        """Fold one batch into the tallies and the bandit arms; count; returns the dead letters."""
        conversions, rewards = conversions_and_rewards(behavior)
        await self.tallies.apply(exposures, conversions)
        known: dict[str, BanditConfig] = await self.configs.get() if (decisions or rewards) else {}
        unknown_d = [d for d in decisions if d.bandit_id not in known]
        unknown_r = [r for r in rewards if r.bandit_id not in known]
        folded = await self.bandits.apply(known, decisions, rewards)
        dead: list[Dead] = []
        dead += [Dead(r.record, "unknown_decision", f"no live decision {r.decision_id}")
                 for r in folded.orphans if r.record is not None]
        dead += [Dead(r.record, "unknown_bandit", f"bandit {r.bandit_id} is not configured")
                 for r in unknown_r if r.record is not None]
        dead += [Dead(next(x for x in records if x.offset == d.src.offset and x.topic == d.src.topic
                           and x.partition == d.src.partition), "unknown_bandit",
                      f"bandit {d.bandit_id} is not configured") for d in unknown_d]
        counts: dict[str, Any] = {"exposures": len(exposures), "decisions": folded.pulls,
                                  "rewards": folded.rewards, "conversion_events": len(conversions),
                                  "duplicates": dupes}
        pipe = self.res.redis.pipeline(transaction=False)
        for k, v in counts.items():
            if v:
                pipe.hincrby(self.res.keys.decisions_count(), k, v)
        for d in dead:
            pipe.hincrby(self.res.keys.decisions_count(), f"dead:{d.reason}", 1)
        if len(pipe):
            await pipe.execute()
        return dead


def behavior_owner(owners: DecisionOwners, behavior_topic: str) -> Owner:
    """The owner step the behavior agent (streams/behavior.py) runs on every intake batch: conversions
    and rewards among the already decoded, de-duplicated events. Its dead letters (rewards of unknown
    decisions or bandits) are sent and counted by the behavior agent."""

    async def step(b: Batch) -> list[Dead]:
        facts = behavior_facts(b.kept, b.raw, behavior_topic)
        if not facts:
            return []
        await owners.await_decisions(conversions_and_rewards(facts)[1])
        return await owners.apply([], [], facts, [])

    return "decisions", step


async def fold(owners: DecisionOwners, parsed: Parsed, records: list[RawRecord]) -> list[Dead]:
    """Fold a decisions-topic batch's exposures and decisions (in arrival order); a fact the owners
    cannot fold is found by bisection and dead-lettered as ``fold_failed``
    (``streams.runtime.isolating``), the rest are folded; store errors are retried."""
    by_src = {(r.topic, r.partition, r.offset): r for r in records}
    facts: list[ExposureFact | DecisionFact] = sorted(
        [*parsed.exposures, *parsed.decisions], key=lambda f: (f.src.partition, f.src.offset))

    async def step(part: list[ExposureFact | DecisionFact]) -> list[Dead]:
        exposures = [f for f in part if isinstance(f, ExposureFact)]
        decisions = [f for f in part if isinstance(f, DecisionFact)]
        return await owners.apply(exposures, decisions, [], records)

    return await isolating("decisions", step, facts, lambda f: by_src[(f.src.topic, f.src.partition, f.src.offset)])


def register(app: faust.App, res: Resources) -> list[Owner]:
    """The agent over the decisions topic; returns the behavior owner (conversions and rewards) that
    the behavior agent runs on every batch."""
    s = res.settings
    decisions_topic = layout.topic(s, layout.DECISIONS)
    source = app.topic(decisions_topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                       value_serializer="raw")
    deadletters = app.topic(layout.topic(s, layout.DEADLETTER), key_serializer="raw", value_serializer="raw")
    dead_codec = codec("dead_letter")
    owners = DecisionOwners(res)

    @app.agent(source, name="process_decisions")
    async def process_decisions(stream: faust.StreamT) -> None:
        async for batch in stream.take_events(s.worker.batch_max, within=s.worker.batch_within_s):
            now_ms = int(time.time() * 1000)
            records = [RawRecord.of(e.message) for e in batch]
            parsed = parse(records, decisions_topic, now_ms)
            dead = list(parsed.dead)
            dead += await fold(owners, parsed, records)
            owners.decisions_folded()
            for d in dead:
                await deadletters.send(key=d.record.key, value=dead_codec.encode(d.to_avro(now_ms)))
            if dead:
                log.warning("decisions: dead-lettered %d records: %s", len(dead), sorted({d.reason for d in dead}))
                pipe = res.redis.pipeline(transaction=False)
                for d in dead:
                    if d in parsed.dead:
                        pipe.hincrby(res.keys.decisions_count(), f"dead:{d.reason}", 1)
                    pipe.hincrby(res.keys.deadletter_count(), d.reason, 1)
                await pipe.execute()

    return [behavior_owner(owners, layout.topic(s, layout.BEHAVIOR))]
