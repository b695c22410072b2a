"""The worker's composition root: the Faust app, the clients it shares and the agents of its roles.

``build`` opens Redis and Cassandra once (``Resources``, with the write-behind of the behavior owners'
Cassandra rows), calls ``register(app, res)`` of every agent module of this process's roles and
hands the behavior owners they return to the one agent over the behavior topic. The agent modules
share the contract of streams/runtime.py; nothing imports this module back, and nothing connects at
import time.
"""

from __future__ import annotations

import gc
from typing import Protocol

import faust

from aura import bootstrap, layout
from aura.keys import keys_for
from aura.settings import Settings
from streams import (
    aggregates,
    behavior,
    campaigns,
    catalog,
    connectors,
    decisions,
    identity,
    insights,
    lifecycle,
    liveness,
    loopstats,
    neighbours,
    profiles_owner,
    redisloss,
    retention,
    usercands,
    usersignals,
)
from streams.durable import Batching, WriteBehind
from streams.runtime import Owner, Resources


class AgentModule(Protocol):
    """An agent module: registers its agents and timers, returns its owners of the behavior batches."""

    def register(self, app: faust.App, res: Resources) -> list[Owner]: ...


# The agent modules of each worker role (layout.WORKER_ROLES); a new agent is one more entry.
ROLES: dict[str, tuple[AgentModule, ...]] = {
    # profiles, segments and analytics; identity events; the agg.* publisher; the idle-user sweep;
    # the insight engine over the minute aggregates (one lease holder per deployment); acquisition cohorts
    "profiles": (profiles_owner, identity, aggregates, lifecycle, insights, retention),
    # recommender signals (the user side feeds the item side); catalog and content model; neighbours, cohorts; pools
    "recs": (usersignals, catalog, neighbours, usercands),
    # experiment tallies and bandit arms: exposures and decisions, conversions and rewards; campaign
    # triggers, guards and attribution, and the connectors that deliver their messages
    "decisions": (decisions, campaigns, connectors),
}


GC_OLDER = (20, 100)  # collections of the younger generation between two of the next (Python: 10, 10)


def tune_gc(gen0: int) -> None:
    """Collect once, freeze what is alive (the app, its modules and clients: never scanned again) and
    collect the youngest generation every ``gen0`` net allocations (``gen0 <= 0``: Python's defaults).
    A batch allocates millions of short-lived objects: at Python's thresholds the collector runs
    thousands of times per batch and rescans the older generations' growing heap (its cost:
    ``bench.pipeline --mode inproc --gc-gen0``)."""
    if gen0 <= 0:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(gen0, *GC_OLDER)


def faust_app(s: Settings) -> faust.App:
    datadir = s.home / "faust"  # Faust's table directories (it creates them below the working directory otherwise)
    datadir.mkdir(parents=True, exist_ok=True)
    return faust.App(
        layout.worker_group(s),  # the consumer group of this process's roles
        broker=f"kafka://{s.kafka.bootstrap}",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=s.kafka.topic_partitions,
        store="memory://",
        datadir=str(datadir / "{conf.name}-data"),
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=0.5,
        broker_session_timeout=s.kafka.session_timeout_s,
        broker_max_poll_interval=s.kafka.max_poll_interval_s,
        # a topic missing from the first metadata (a broker that just started) is found within 5 s,
        # not after the client's default 5 minutes: the group then rebalances onto it
        consumer_metadata_max_age_ms=5000,
        producer_compression_type="lz4",
        producer_linger_ms=5,
        stream_buffer_maxsize=max(s.worker.stream_buffer, s.worker.batch_max),
        topic_allow_declare=False,
        topic_disable_leader=True,
    )


def resources(s: Settings) -> Resources:
    """The clients of one worker process, opened once; its Redis connections are checked by the
    Redis loss guard (streams/redisloss.py)."""
    keys = keys_for(s)
    guard = redisloss.RedisLossGuard(keys, layout.worker_group(s), s.worker.redis_loss_action)
    redis = bootstrap.redis_async(s, redis_connect_func=guard.on_connect)
    guard.attach(redis)
    return Resources(settings=s, redis=redis, session=bootstrap.cassandra_session(s), keys=keys,
                     durable=WriteBehind(s.worker.durable_flush_ms / 1000, s.worker.durable_max_pending,
                                         Batching(statements=s.cassandra.batch_statements,
                                                  partitions=s.cassandra.batch_partitions,
                                                  max_bytes=s.cassandra.batch_kib * 1024)),
                     redis_guard=guard)


def create_app(s: Settings, res: Resources | None = None) -> faust.App:
    """The worker app with every agent of its roles registered."""
    return build(s, res)[0]


def build(s: Settings, res: Resources | None = None) -> tuple[faust.App, list[Owner], WriteBehind]:
    """The worker app, the behavior owners its behavior agent feeds and their write-behind buffer
    (bench/pipeline.py drives the same owners in-process).

    ``s.worker.roles`` picks the agent modules (``ROLES``). "all" runs every role in one consumer
    group; a subset runs in a group of its own (layout.worker_group). Every group runs the behavior
    intake; the profiles role owns its dead letters and counts.
    """
    roles = layout.worker_roles(s.worker.roles)
    app = faust_app(s)
    res = res or resources(s)
    owners: list[Owner] = []
    for role in roles:
        for module in ROLES[role]:
            owners += module.register(app, res)
    behavior.register(app, res, owners, owns_intake="profiles" in roles)
    redisloss.register(app, res)  # offset marks next to the state; a Redis that lost writes is refolded
    liveness.register(app, res)  # out of its group or a blocked loop for too long: replaced
    loopstats.register(app, s.worker.loop_stats_s)  # where a batch's time goes, logged at INFO
    return app, owners, res.durable
