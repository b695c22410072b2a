"""What the decision routes (personalization rules, experiments, bandits) share in the API process:
the configuration caches, the user's profile fields and segments for targeting, the producer of
decision records, and the 422 shape of a refused definition.

Owns nothing durable: the per-process ``DecisionState`` (caches of configuration, the last
parsed state of each bandit by version, the random generator of the policies) hangs off
``ApiState`` and is built on first use.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from fastapi import HTTPException

from aura import layout
from aura.configcache import ConfigCache, ConfigUnavailable
from aura.layout import Tables
from aura.state import profile_codec
from aura.state.bandits import BanditConfig, BanditState, validate_bandit
from aura.state.experiments import Experiment, validate_experiment
from aura.state.rules import Rule, profile_fields, validate_rule
from schemas.codec import DecodeError, codec
from serving.state import ApiState

log = logging.getLogger(__name__)


@dataclass
class DecisionState:
    rules: ConfigCache[Rule]
    experiments: ConfigCache[Experiment]
    bandits: ConfigCache[BanditConfig]
    decisions_topic: str
    rng: np.random.Generator = field(default_factory=np.random.default_rng)
    bandit_memo: dict[str, tuple[str, BanditState | None]] = field(default_factory=dict)
    produced: int = 0
    produce_failures: int = 0

    def on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self.produce_failures += 1
            log.error("a decision record was not delivered to Kafka: %s", err)


def decision_state(state: ApiState) -> DecisionState:
    """The process's DecisionState (built once, re-bound to the current Cassandra session)."""
    ds: DecisionState | None = getattr(state, "_decisions", None)
    if ds is None:
        def cache(kind: str, table: str, col: str, parse: Any) -> ConfigCache[Any]:
            return ConfigCache(kind, table, col, state.redis, state.keys, state.cassandra, parse)

        ds = DecisionState(
            rules=cache("rules", Tables.PERSONALIZATION_RULES, "rule_id", validate_rule),
            experiments=cache("experiments", Tables.EXPERIMENTS, "experiment_id", validate_experiment),
            bandits=cache("bandits", Tables.BANDITS, "bandit_id", validate_bandit),
            decisions_topic=layout.topic(state.settings, layout.DECISIONS),
        )
        state._decisions = ds  # type: ignore[attr-defined]
    for c in (ds.rules, ds.experiments, ds.bandits):
        c.bind_session(state.cassandra)
    return ds


def refused(errors: list[dict[str, Any]]) -> HTTPException:
    """422 in FastAPI's shape: ``detail`` is a list of ``{"loc", "msg", "type"}``."""
    return HTTPException(422, [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": "value_error"} for e in errors])


async def check_room(state: ApiState, cache: Any) -> None:
    """Refuse a create (409) once ``cache``'s kind holds ``max_config_objects`` definitions."""
    limit = state.settings.decisions.max_config_objects
    try:
        count = len(await cache.get())
    except ConfigUnavailable as exc:
        raise unavailable(exc) from exc
    if count >= limit:
        raise HTTPException(409, f"limit of {limit} {cache.kind} reached; delete one first "
                                 "(AURA_MAX_CONFIG_OBJECTS)")


def unavailable(exc: ConfigUnavailable) -> HTTPException:
    return HTTPException(503, f"configuration store unavailable: {exc}", headers={"Retry-After": "1"})


async def user_fields(state: ApiState, user_id: str, segments_to_check: set[str]) -> tuple[dict[str, Any], set[str]]:
    """Profile fields (activity counts as ``count.<action>``, the derived profile, identity
    attributes) and the user's memberships among ``segments_to_check``, in one pipeline."""
    keys = state.keys
    pipe = state.redis.pipeline(transaction=False)
    profile_codec.queue_read(pipe, keys, user_id)
    pipe.hgetall(keys.user_attrs(user_id))
    ordered = sorted(segments_to_check)
    for seg in ordered:
        pipe.sismember(keys.segment_members(seg), user_id)
    raw = await pipe.execute()
    fields = profile_codec.rule_fields(profile_codec.unpack(raw[0])) if raw[0] else {}
    profile = profile_fields(fields, raw[1])
    member = {seg for seg, ok in zip(ordered, raw[2:], strict=True) if ok}
    return profile, member


def produce(state: ApiState, ds: DecisionState, schema: str, key: str, record: dict[str, Any]) -> None:
    """Queue one decision record (exposure, bandit decision) on the decisions topic, keyed by user.

    Not awaited: the idempotent producer retries, and a final failure is logged and counted
    (``DecisionState.produce_failures``). A full local queue is a 503."""
    if state.producer is None:
        raise HTTPException(503, "no Kafka producer", headers={"Retry-After": "1"})
    try:
        value = codec(schema).encode(record)
    except DecodeError as exc:  # our own record: a bug, not the caller's fault
        raise HTTPException(500, f"could not encode {schema}: {exc.detail}") from exc
    try:
        state.producer.produce(ds.decisions_topic, value=value, key=key.encode(), on_delivery=ds.on_delivery)
    except BufferError as exc:
        raise HTTPException(503, "the producer queue is full", headers={"Retry-After": "1"}) from exc
    state.producer.poll(0)
    ds.produced += 1


def now_ms() -> int:
    return int(time.time() * 1000)
