"""The Faust application of the worker: builds the app from settings and wires the agents.

``create_app`` is the worker's composition root: it opens Redis and Cassandra once, builds the
state owners and registers one agent per input topic. Nothing connects at import time.
"""

from __future__ import annotations

import logging

import faust

from aura import bootstrap, layout
from aura.layout import RedisKeys
from aura.settings import Settings
from streams import behavior
from streams.durable import WriteBehind
from streams.runtime import Resources

log = logging.getLogger(__name__)


def faust_app(s: Settings) -> faust.App:
    return faust.App(
        layout.worker_group(s),  # the consumer group of this process's roles
        broker=f"kafka://{s.kafka_bootstrap}",
        value_serializer="raw",
        key_serializer="raw",
        topic_partitions=s.topic_partitions,
        store="memory://",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=0.5,
        broker_session_timeout=s.kafka_session_timeout_s,
        # a topic missing from the first metadata (a broker that just started) is found within 5 s,
        # not after the client's default 5 minutes: the group then rebalances onto it
        consumer_metadata_max_age_ms=5000,
        producer_compression_type="lz4",
        producer_linger_ms=5,
        stream_buffer_maxsize=s.batch_max * 2,
        topic_allow_declare=False,
        topic_disable_leader=True,
    )


def create_app(s: Settings, resources: Resources | None = None) -> faust.App:
    """The worker app with every agent registered."""
    return build(s, resources)[0]


def build(s: Settings, resources: Resources | None = None
          ) -> tuple[faust.App, list[behavior.Owner], WriteBehind | None]:
    """The worker app, the state owners its behavior agent feeds and the write-behind buffer
    (bench/pipeline.py drives the same owners in-process).

    ``s.worker_roles`` picks the owners: ``profiles`` (profiles, segments, analytics, identity, the
    agg.* publisher, the idle sweep; owns the behavior intake's dead letters and counts), ``recs``
    (recommender signals by user and by item, the catalog and content model, user neighbours and
    cohorts, per-user pools), ``decisions`` (experiment tallies and bandit arms). "all" runs every
    role in one consumer group; a subset runs in a group of its own (layout.worker_group).
    """
    roles = layout.worker_roles(s.worker_roles)
    app = faust_app(s)
    if resources is None:
        resources = Resources(
            settings=s, redis=bootstrap.redis_async(s), session=bootstrap.cassandra_session(s),
            keys=RedisKeys(s.redis_prefix), durable=WriteBehind(s.durable_flush_ms / 1000, s.durable_max_pending),
        )
    # Cassandra copies of the behavior owners are written behind the hot loop; a batch's offsets are
    # committed only once its rows are written (streams/durable.py). 0 ms: written in the batch.
    durable = resources.durable if s.durable_flush_ms > 0 else None
    dead = layout.topic(s, layout.DEADLETTER)
    # The one agent over events.behavior: decodes, validates and de-duplicates each batch once and
    # hands it to every state owner of this process's roles (each keeps its own fences). A new owner
    # is one more line.
    behavior_owners: list[behavior.Owner] = []
    if "profiles" in roles:  # profiles, segments and analytics (issue 4): identity events, agg.* publisher
        from streams import aggregates, identity, lifecycle

        identity.register(app, resources, layout.topic(s, layout.IDENTITY), dead)
        aggregates.register(app, resources)
        lifecycle.register(app, resources)  # idle users -> at-risk / churned, segments as of now
        behavior_owners.append(behavior.profiles_owner(behavior.BehaviorPipeline(resources, durable)))
    if "recs" in roles:  # recommenders (issue 5): signals by user and by item, catalog and content model
        from streams import catalog, cooccurrence, neighbours, usercands

        behavior_owners.append(cooccurrence.register(  # sequences, co-occurrence, trending, popularity, MF
            app, resources, layout.topic(s, layout.ITEM_SIGNALS), dead, durable))
        catalog.register(app, resources, layout.topic(s, layout.CATALOG), dead)
        behavior_owners += neighbours.owners(resources)  # user neighbours (if enabled) and demographic cohorts
        behavior_owners += usercands.register(app, resources)  # per-user hybrid candidate pools (issue 6)
    if "decisions" in roles:  # decisions (issue 7): experiment tallies and bandit arms, conversions, rewards
        from streams import decisions

        decision_owners = decisions.register(app, resources, layout.topic(s, layout.DECISIONS), dead)
        behavior_owners.append(decisions.behavior_owner(decision_owners, layout.topic(s, layout.BEHAVIOR)))
    behavior.register(app, resources, layout.topic(s, layout.BEHAVIOR), dead, behavior_owners, durable,
                      owns_intake="profiles" in roles)
    from streams import loopstats

    loopstats.register(app, s.loop_stats_s)  # where a batch's time goes, logged at INFO
    return app, behavior_owners, durable
