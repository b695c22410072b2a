"""Bandit arm state kept by the stream: pulls from decisions, rewards from behavior events.
Owner of the ``bandit_state`` / ``bandit_decision`` Redis keys and of the ``bandit_state``
Cassandra table (durable snapshots).

- A ``bandit_decision`` record on the decisions topic is a pull: n += 1 for its arm (and
  A += x x^T for LinUCB) and a decision record (arm, x, reward so far) kept for
  ``decision_ttl_s`` under the bandit's hash tag.
- A behavior event whose ``recommendation_id`` is a bandit decision id is a reward: the
  decision's reward becomes max(reward so far, bandit.rewards[event type]) and the arm gets the
  increase (so a click then a purchase is one reward of at most 1, and a duplicate is a no-op).
  A reward whose decision is unknown (expired, or never made) is dead-lettered as
  ``unknown_decision``.

Exactly-once effects: each bandit's hash carries the policy state, a version and one offset fence
per source (topic, partition). Per batch: one pipeline reads the touched bandits' hashes and the
decision records the rewards need; pure Python folds the events above the fences; one
compare-and-set Lua script per bandit writes the new absolute state, fences and decision records
unless the version moved (then that bandit retries); one concurrent Cassandra write snapshots the
absolute state with its fences and version. A bandit whose Redis state is gone is restored from
its snapshot before folding.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from cassandra.concurrent import execute_concurrent_with_args

from aura.bootstrap import cassandra_execute
from aura.keys import RedisKeys
from aura.layout import Tables
from aura.state.bandits import (
    BanditConfig,
    BanditState,
    clip_vector,
    healthy,
    new_state,
    update_pull,
    update_reward,
)
from schemas.events import InvalidEvent, to_millis
from streams.experiments import Source
from streams.intake import RawRecord

log = logging.getLogger(__name__)

APPLY_LUA = """
local cur = redis.call('HGET', KEYS[1], 'ver') or ''
if cur ~= ARGV[1] then return 0 end
local nv = (tonumber(ARGV[1]) or 0) + 1
redis.call('HSET', KEYS[1], 'state', ARGV[2], 'ver', nv)
local nf = tonumber(ARGV[4])
local i = 5
for _ = 1, nf do
  redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
  i = i + 2
end
for k = 2, #KEYS do
  redis.call('SET', KEYS[k], ARGV[i], 'PX', ARGV[3])
  i = i + 1
end
return nv
"""


@dataclass(frozen=True, slots=True)
class DecisionFact:
    bandit_id: str
    decision_id: str
    arm: str
    features: dict[str, float]
    time: int
    src: Source


@dataclass(frozen=True, slots=True)
class RewardFact:
    bandit_id: str
    decision_id: str
    event_type: str
    time: int
    src: Source
    record: RawRecord | None = field(default=None, compare=False)


def validate_decision(record: dict[str, Any], src: Source) -> DecisionFact:
    """A decoded ``bandit_decision`` record -> DecisionFact; raises InvalidEvent."""
    bandit_id, decision_id, arm = record.get("bandit_id"), record.get("decision_id"), record.get("arm")
    if not bandit_id or not decision_id or not decision_id.startswith(f"{bandit_id}:"):
        raise InvalidEvent("bad_decision_id", f"decision_id {decision_id!r} must start with '{bandit_id}:'")
    if not arm:
        raise InvalidEvent("missing_arm", "a decision needs its arm")
    return DecisionFact(bandit_id, decision_id, arm, dict(record.get("features") or {}),
                        to_millis(record["event_time"]), src)


@dataclass
class FoldResult:
    fences: dict[str, int]  # every fence after the batch
    records: dict[str, dict[str, Any]]  # decision records created or changed
    orphans: list[RewardFact]
    pulls: int = 0
    rewards: int = 0


def fold(cfg: BanditConfig, state: BanditState, fences: dict[str, int], decisions: list[DecisionFact],
         rewards: list[RewardFact], known: dict[str, dict[str, Any]]) -> FoldResult:
    """Fold one batch of one bandit into ``state`` (mutated), skipping what is at or below a fence.

    ``known`` holds the stored decision records the rewards refer to (decision id -> record)."""
    out = FoldResult(fences=dict(fences), records={}, orphans=[])

    def above(src: Source) -> bool:
        stored = fences.get(src.fence)
        if stored is not None and src.offset <= stored:
            return False
        out.fences[src.fence] = max(src.offset, out.fences.get(src.fence, -1))
        return True

    for d in sorted(decisions, key=lambda f: (f.src.topic, f.src.partition, f.src.offset)):
        if not above(d.src):
            continue
        x = None
        if cfg.policy == "linucb":
            x = clip_vector(np.array([1.0, *(_number(d.features.get(f, 0.0)) for f in cfg.features)]))
        update_pull(cfg, state, d.arm, x)
        out.pulls += 1
        out.records[d.decision_id] = {"arm": d.arm, "x": None if x is None else x.tolist(), "r": 0.0, "t": d.time}
    for r in sorted(rewards, key=lambda f: (f.src.topic, f.src.partition, f.src.offset)):
        if not above(r.src):
            continue
        rec = out.records.get(r.decision_id) or known.get(r.decision_id)
        if rec is None:
            out.orphans.append(r)
            continue
        value = cfg.rewards.get(r.event_type, 0.0)
        if value <= rec["r"]:
            continue
        x = np.asarray(rec["x"]) if rec.get("x") is not None else None
        update_reward(cfg, state, rec["arm"], value - rec["r"], x)
        out.rewards += 1
        out.records[r.decision_id] = {**rec, "r": value}
    return out


def _number(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return 0.0


QUARANTINE_FIELD = "quarantine"  # set in the bandit's hash while its learned state is quarantined


def lua_args(expected_ver: str, state: BanditState, result: FoldResult, ttl_ms: int,
             record_ids: list[str], extra: dict[str, str] | None = None) -> list[Any]:
    fields: dict[str, Any] = {**result.fences, **(extra or {})}
    args: list[Any] = [expected_ver, json.dumps(state.to_json()), ttl_ms, len(fields)]
    for f, value in sorted(fields.items()):
        args += [f, value]
    args += [json.dumps(result.records[d]) for d in record_ids]
    return args


def parse_hash(raw: dict[str, str]) -> tuple[BanditState | None, str, dict[str, int]]:
    """The bandit's Redis hash -> (state or None, version ('' when none), fences)."""
    state = BanditState.from_json(json.loads(raw["state"])) if raw.get("state") else None
    fences = {k: int(v) for k, v in raw.items() if k.startswith("_off:")}
    return state, raw.get("ver", ""), fences


class BanditStore:
    """Reads and writes bandit state in Redis and Cassandra; one instance per worker."""

    owner = "bandits"

    def __init__(self, redis: Any, session: Any, keys: RedisKeys, decision_ttl_s: int) -> None:
        self.redis, self.session, self.keys = redis, session, keys
        self.ttl_ms = decision_ttl_s * 1000
        self.script = redis.register_script(APPLY_LUA)
        self.snapshot = session.prepare(
            f"INSERT INTO {Tables.BANDIT_STATE} (bandit_id, state, ver, fences, updated_at) "
            "VALUES (?, ?, ?, ?, toTimestamp(now()))")
        self.restore_stmt = session.prepare(
            f"SELECT state, ver, fences FROM {Tables.BANDIT_STATE} WHERE bandit_id = ?")

    async def restore(self, bandit_id: str) -> tuple[BanditState | None, dict[str, int]]:
        """The last durable snapshot (state and fences), for a bandit whose Redis state is gone."""
        rows = await cassandra_execute(self.session, self.restore_stmt.bind((bandit_id,)))
        row = rows[0] if rows else None
        if row is None or not row.state:
            return None, {}
        return BanditState.from_json(json.loads(row.state)), dict(row.fences or {})

    async def apply(self, configs: dict[str, BanditConfig], decisions: list[DecisionFact],
                    rewards: list[RewardFact]) -> FoldResult:
        """Fold a batch exactly once; returns the totals and the orphan rewards to dead-letter."""
        total = FoldResult(fences={}, records={}, orphans=[])
        bandits = sorted({f.bandit_id for f in [*decisions, *rewards]} & set(configs))
        pending = bandits
        for _attempt in range(5):
            if not pending:
                break
            pipe = self.redis.pipeline(transaction=False)
            for b in pending:
                pipe.hgetall(self.keys.bandit_state(b))
            need = sorted({(r.bandit_id, r.decision_id) for r in rewards if r.bandit_id in pending})
            for b, d in need:
                pipe.get(self.keys.bandit_decision(b, d))
            raw = await pipe.execute()
            hashes, recs = raw[:len(pending)], raw[len(pending):]
            known = {d: json.loads(v) for (_b, d), v in zip(need, recs, strict=True) if v}
            pipe = self.redis.pipeline(transaction=False)
            results: dict[str, tuple[FoldResult, BanditState, str]] = {}
            for b, h in zip(pending, hashes, strict=True):
                cfg = configs[b]
                state, ver, fences = parse_hash(h)
                if state is None:
                    state, fences = await self.restore(b)
                    if state is not None:
                        log.warning("bandit %s: Redis state missing, restored from the Cassandra snapshot", b)
                state = state or new_state(cfg)
                good = BanditState.from_json(state.to_json())
                res = fold(cfg, state, fences, [d for d in decisions if d.bandit_id == b],
                           [r for r in rewards if r.bandit_id == b], known)
                if not res.fences or (res.fences == fences and not res.records and not res.orphans):
                    continue
                extra = None
                if not healthy(state):  # keep serving the last good state; the events are consumed
                    log.error("bandit %s: learned state became non-finite; quarantined at its last good state "
                              "(POST /v1/bandits/%s/reset clears it)", b, b)
                    state = good if healthy(good) else new_state(cfg)
                    extra = {QUARANTINE_FIELD: json.dumps({"reason": "non_finite_state", "pulls": res.pulls,
                                                           "rewards": res.rewards})}
                ids = sorted(res.records)
                await self.script(keys=[self.keys.bandit_state(b), *(self.keys.bandit_decision(b, d) for d in ids)],
                                  args=lua_args(ver, state, res, self.ttl_ms, ids, extra), client=pipe)
                results[b] = (res, state, ver)
            order = list(results)
            versions = await pipe.execute() if order else []
            conflicts = []
            snapshots = []
            for b, nv in zip(order, versions, strict=True):
                res, state, _ver = results[b]
                if not nv:
                    conflicts.append(b)
                    continue
                total.pulls += res.pulls
                total.rewards += res.rewards
                total.orphans += res.orphans
                snapshots.append((b, json.dumps(state.to_json()), int(nv), res.fences))
            await self.write_snapshots(snapshots)
            pending = conflicts
        else:
            if pending:
                raise RuntimeError(f"bandit version conflicts did not settle for {pending}")
        return total

    async def write_snapshots(self, rows: list[tuple[str, str, int, dict[str, int]]]) -> None:
        if rows:
            await asyncio.get_running_loop().run_in_executor(
                None, lambda: execute_concurrent_with_args(self.session, self.snapshot, rows, concurrency=32,
                                                           raise_on_first_error=True))
