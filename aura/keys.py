"""The Redis key layout: every Redis key is spelled here, once.

Writers (streams/) and readers (serving/, jobs/) build keys only through ``RedisKeys``; every key
carries ``settings.redis.prefix``, so tests and tenants sharing one Redis are isolated. Kafka topics
and Cassandra tables are named in aura/layout.py.
"""

from __future__ import annotations

import re

from aura.settings import Settings

_GLOB = re.compile(r"([*?\[\]\\])")


def glob_escape(text: str) -> str:
    """``text`` as a literal inside a Redis MATCH pattern."""
    return _GLOB.sub(r"\\\1", text)


def keys_for(settings: Settings) -> RedisKeys:
    """The keys of a process with ``settings``: its Redis prefix and its configuration scope."""
    return RedisKeys(settings.redis.prefix, settings.redis.config_scope)


class RedisKeys:
    """Builds every Redis key; one instance per process, from settings."""

    def __init__(self, prefix: str, config_scope: str = "") -> None:
        self.prefix = prefix
        # the configuration documents (rules, experiments, bandits, segments, campaigns) this process
        # sees in Cassandra: "" = the unscoped ones (production); else only those written under the
        # same scope (aura/configcache.py), so tests sharing a keyspace never see each other's
        self.config_scope = config_scope

    # Keys of one user share the hash tag {user_id}: one Redis Cluster slot, so one Lua script
    # can update them atomically.

    def user_state(self, user_id: str) -> str:
        """String: the user's whole folded profile state (counts, first/last seen, recent items,
        sessions, orders, lifetime value, engagement, affinities, lifecycle, segments, offset fences),
        a 4-byte version then msgpack; the format is ``streams.profiles.pack``/``unpack``, nowhere else.
        Short on purpose: at 1M users every byte of the key name costs ~1 MB."""
        return f"{self.prefix}:u:{{{user_id}}}"

    def deadletter_replayed(self, partition: int, offset: int) -> str:
        """String (expires with the dead-letter topic's retention): ``pending`` / ``done``, the replay of
        the dead letter at ``partition:offset`` of the dead-letter topic (aura/deadletters.py)."""
        return f"{self.prefix}:deadletter:replayed:{partition}:{offset}"

    def applied_offsets(self, group: str) -> str:
        """Hash: "topic:partition" -> the offset the worker group ``group`` last committed to Kafka,
        written just before that commit (so every Redis effect below it was written first), plus an
        ``epoch`` field; a mark below Kafka's committed offset means Redis lost writes
        (streams/redisloss.py)."""
        return f"{self.prefix}:applied:{group}"

    def deadletter_count(self) -> str:
        """Hash: dead-letter reason -> count."""
        return f"{self.prefix}:metrics:deadletter"

    def event_seen(self, event_id: str) -> str:
        """String: "partition:offset" of the first record that carried ``event_id`` (dedup window)."""
        return f"{self.prefix}:seen:{event_id}"

    def intake_count(self) -> str:
        """Hash: accepted / duplicate / dead counts of the behavior intake."""
        return f"{self.prefix}:metrics:intake"

    def ingest_count(self) -> str:
        """Hash: HTTP ingest outcomes (serving/routes/events.py): ``<kind>:accepted`` (events),
        ``<kind>:rejected`` (422 answers), ``<kind>:rejected:<error type>`` (field errors by type),
        ``<kind>:too_large`` (413) and ``<kind>:unavailable`` (503); kind: behavior|identity|catalog."""
        return f"{self.prefix}:metrics:ingest"

    # API keys (aura/apikeys.py): a key's cached record and its rate-limit state share the hash tag
    # {apikey:<id>}, so the one Lua call that authenticates and rate-limits stays in one slot.

    def api_key(self, key_id: str) -> str:
        """Hash: cached API key record (hash, scopes, rate, burst, revoked); TTL api_key_cache_ttl_s."""
        return f"{self.prefix}:apikey:{{{key_id}}}"

    def api_key_rate(self, key_id: str) -> str:
        """String: the key's GCRA theoretical arrival time (microseconds), expiring when idle."""
        return f"{self.prefix}:apikey:{{{key_id}}}:tat"

    # Profiles (streams/profiles.py, streams/identity.py) and segments (streams/segments.py)

    def user_attrs(self, user_id: str) -> str:
        """Hash: identity attributes ``x:*`` and explicit preferences ``p:*`` (identity events)."""
        return f"{self.prefix}:user:{{{user_id}}}:attrs"

    def user_alias(self, anonymous_id: str) -> str:
        """String: the known user id an anonymous id was merged into."""
        return f"{self.prefix}:alias:{{{anonymous_id}}}"

    def segment_members(self, segment: str) -> str:
        """Set: user ids currently in ``segment``."""
        return f"{self.prefix}:segment:{{{segment}}}:members"

    def segment_history(self, segment: str) -> str:
        """Hash: the segment's membership over time, per hour (aura/state/segments.py ``history``):
        ``<hour ms>:j`` joined, ``<hour ms>:l`` left, ``<hour ms>:n`` members after the hour's last change."""
        return f"{self.prefix}:segment:{{{segment}}}:history"

    def segment_backfill(self, segment: str) -> str:
        """Hash: the backfill of one segment definition (streams/lifecycle.py): ``state`` (pending,
        running, done), ``version`` (the config version asked for), ``scanned``, ``joined``, ``left``,
        ``members``, ``requested_at``, ``started_at``, ``finished_at``."""
        return f"{self.prefix}:segment:{{{segment}}}:backfill"

    def segment_backfill_queue(self) -> str:
        """Sorted set: segments whose backfill is asked for (score: request time, ms)."""
        return f"{self.prefix}:segment:backfills"

    def segment_backfill_lease(self) -> str:
        """String (PX): held by the worker running segment backfills, one at a time per group."""
        return f"{self.prefix}:segment:backfill:lease"

    def profile_search_backfill(self) -> str:
        """Hash: progress of the searchable-copy backfill (jobs/profile_search.py): ``phase`` (the key
        kind being scanned), ``cursor`` (its SCAN cursor), ``users``, ``started_at``, ``finished_at``."""
        return f"{self.prefix}:profile_search:backfill"

    def lifecycle_sweep_lease(self) -> str:
        """String (PX): held by the worker running the idle-user sweep (streams/lifecycle.py), so one
        worker of the group sweeps per interval."""
        return f"{self.prefix}:lifecycle:sweep"

    # Analytics (streams/analytics.py): each Kafka partition's contribution under its own hash tag,
    # fenced per partition; readers sum the partitions.

    def analytics_fence(self, partition: int) -> str:
        """String: last offset of ``partition`` folded into the analytics counters."""
        return f"{self.prefix}:an:{{p{partition}}}:fence"

    def analytics_bucket(self, partition: int, grain: str, start_ms: int) -> str:
        """Hash: metric -> value of one event-time bucket (grain minute|hour|day), one partition's share."""
        return f"{self.prefix}:an:{{p{partition}}}:{grain}:{start_ms}"

    def analytics_hll(self, partition: int, grain: str, start_ms: int, what: str) -> str:
        """HyperLogLog: distinct users of a bucket (``what``: active, or a funnel stage)."""
        return f"{self.prefix}:an:{{p{partition}}}:hll:{grain}:{start_ms}:{what}"

    def analytics_touched(self) -> str:
        """Sorted set: "grain:start" buckets changed recently (score: wall ms), for aggregate publishing."""
        return f"{self.prefix}:an:touched"

    # Acquisition cohorts and retention (streams/retention.py; format aura/state/retention.py): each
    # source partition's share under its own hash tag, fenced per partition; readers sum the partitions.

    def retention_fence(self, partition: int) -> str:
        """String: last offset of ``partition`` folded into the cohort counters."""
        return f"{self.prefix}:ret:{{p{partition}}}:fence"

    def retention_first(self, partition: int) -> str:
        """Hash: user id -> first-seen event time (ms) of the partition's users (their cohort)."""
        return f"{self.prefix}:ret:{{p{partition}}}:first"

    def retention_counts(self, partition: int, grain: str) -> str:
        """Hash: the partition's share of the cohort counters of ``grain`` (week|month):
        ``n:<cohort>``, ``a|o|r:<cohort>:<period>``."""
        return f"{self.prefix}:ret:{{p{partition}}}:{grain}"

    def retention_seen(self, partition: int, grain: str, period_ms: int) -> str:
        """Set (TTL): the partition's users already counted active in one week or month."""
        return f"{self.prefix}:ret:{{p{partition}}}:seen:{grain}:{period_ms}"

    def retention_match(self) -> str:
        """MATCH pattern of the cohort keys of every partition (``retention_user_key`` tells which of
        them hold user ids: the erase removes the user from those)."""
        return f"{glob_escape(self.prefix)}:ret:{{p*}}:*"

    @staticmethod
    def retention_user_key(key: str) -> str | None:
        """Of a key matched by ``retention_match``: "first" for a first-seen hash, "seen" for a set of
        users counted active, None for the others (fence, counters: no user ids)."""
        tail = key.rsplit("}:", 1)[-1]
        return "first" if tail == "first" else "seen" if tail.startswith("seen:") else None

    # Insights (streams/insights.py; format aura/state/insights.py): one detector state for the whole
    # deployment, written by the lease holder with a compare-and-set on its sequence number.

    def insights_state(self) -> str:
        """String: the insight engine (river models, open insights, pending minutes) pickled with the
        agg.minute_metrics offsets it covers and a sequence number (aura/state/insights.py)."""
        return f"{self.prefix}:insights:{{insights}}:state"

    def insights_lease(self) -> str:
        """String (PX): the id of the worker running the insight engine; same slot as the state."""
        return f"{self.prefix}:insights:{{insights}}:lease"

    def insights_count(self) -> str:
        """Hash: counters of the insight agent (records, late records, dead records, rounds, insights)."""
        return f"{self.prefix}:metrics:insights"

    # --- recommenders (owners: streams/usersignals.py, streams/itemsignals.py, streams/catalog.py, jobs/) -----

    def recs_user_state(self, user_id: str) -> str:
        """Hash: the recommender fence (``_off``), MF user factors (``mf``) of one user."""
        return f"{self.prefix}:recs:user:{{{user_id}}}:state"

    def recs_user_seq(self, user_id: str) -> str:
        """List: the user's recent interactions as "item|weight|time", newest first, bounded."""
        return f"{self.prefix}:recs:user:{{{user_id}}}:seq"

    def recs_user_seen(self, user_id: str) -> str:
        """Sorted set: every item the user interacted with -> last event time (ms)."""
        return f"{self.prefix}:recs:user:{{{user_id}}}:seen"

    def recs_user_mf_match(self) -> str:
        """SCAN pattern of the per-user MF candidate sets of earlier versions (``recs:user:{<user>}:mf``,
        sorted sets; MF candidates are scored at read time now): what migration v0020 deletes."""
        return f"{glob_escape(self.prefix)}:recs:user:{{*}}:mf"

    def recs_user_batch(self, user_id: str, model: str) -> str:
        """Sorted set: a batch model's (e.g. EASE) top candidates for the user -> score."""
        return f"{self.prefix}:recs:user:{{{user_id}}}:batch:{model}"

    def recs_user_nbrs(self, user_id: str) -> str:
        """Sorted set: the user's neighbours (users active on the same items) -> co-interaction score
        (owner streams/neighbours.py)."""
        return f"{self.prefix}:recs:user:{{{user_id}}}:nbrs"

    def recs_user_cands(self, user_id: str, placement: str) -> str:
        """Hash: the user's hybrid candidate pool for one placement, ranked by the stream after each of
        the user's batches (owner streams/usercands.py; read by aura/ranking/reader.py): ``weights``,
        ``strategy``, ``ids`` (best first), ``scores``, ``sources``, the fence ``off``, ``time``; expires."""
        return f"{self.prefix}:recs:user:{{{user_id}}}:cands:{placement}"

    def recs_cands_wanted(self) -> str:
        """Sorted set: ``"<placement>\\x1f<user>"`` -> time (ms) of the user's last hybrid request that
        found no usable pool (pools on demand: written by the API, aura/ranking/scripts.py ``CANDS_LUA``;
        drained and trimmed to ``recs_user_cands_wanted_s`` by streams/usercands.py; bounded to
        ``recs_user_cands_wanted_max`` members, oldest dropped). One slot (hash tag ``{recs-cands}``)."""
        return f"{self.prefix}:recs:{{recs-cands}}:wanted"

    def recs_cands_drain_lease(self) -> str:
        """String (PX): the id of the worker that drains ``recs_cands_wanted`` (streams/usercands.py), so
        one member of the group ranks each asked-for pool; same slot as the wanted set."""
        return f"{self.prefix}:recs:{{recs-cands}}:drain"

    def recs_user_nbstate(self, user_id: str) -> str:
        """Hash: ``_off``, the offset fence of the user's neighbour updates (streams/neighbours.py)."""
        return f"{self.prefix}:recs:user:{{{user_id}}}:nbstate"

    def recs_item_actors(self, item_id: str) -> str:
        """Sorted set: users recently active on the item -> event time (ms), bounded (streams/neighbours.py)."""
        return f"{self.prefix}:recs:item:{{{item_id}}}:actors"

    def recs_cohort_popular(self, cohort: str) -> str:
        """Sorted set: item -> interaction weight of the members of one demographic cohort (e.g.
        ``country:fr``, ``age:25-34``), trimmed (owner streams/cohorts.py)."""
        return f"{self.prefix}:recs:cohort:{{{cohort}}}:popular"

    def recs_cohort_state(self, cohort: str) -> str:
        """Hash: the cohort's fences ``f:<source partition>`` (streams/cohorts.py)."""
        return f"{self.prefix}:recs:cohort:{{{cohort}}}:state"

    def recs_item_state(self, item_id: str) -> str:
        """Hash: per source partition fences (``f:<p>``), popularity, trending accumulator of one item."""
        return f"{self.prefix}:recs:item:{{{item_id}}}:state"

    def recs_item_cooc(self, item_id: str) -> str:
        """Sorted set: raw (recency-weighted) co-occurrence counts of the item -> neighbour."""
        return f"{self.prefix}:recs:item:{{{item_id}}}:cooc"

    def recs_item_bought(self, item_id: str) -> str:
        """Sorted set: raw cart/purchase co-occurrence counts ("customers also bought")."""
        return f"{self.prefix}:recs:item:{{{item_id}}}:bought"

    def recs_item_similar(self, item_id: str, source: str) -> str:
        """Sorted set: the item's top-K neighbours of one source (cooc, bought, content, ease)."""
        return f"{self.prefix}:recs:item:{{{item_id}}}:sim:{source}"

    def recs_item_meta(self, item_id: str) -> str:
        """Hash: catalog attributes of one item (title, categories, tags, text, price, in_stock, ...)."""
        return f"{self.prefix}:recs:item:{{{item_id}}}:meta"

    def recs_item_filters(self) -> str:
        """Hash: item -> compact filter record ``"<available 0|1>|<price or empty>|<cat>\\x1f<cat>..."``,
        ``"-"`` for a deleted item (streams/itemfilters.py). One shared key, so the API reads the
        attributes of a few hundred candidates with ONE HMGET; in Redis Cluster it lives in one slot
        (hash tag ``{recs-filters}``): read-mostly, a few tens of bytes per item (see docs/recommendations.md)."""
        return f"{self.prefix}:recs:catalog:{{recs-filters}}"

    def recs_catalog_ids(self) -> str:
        """Set: every live catalog item id."""
        return f"{self.prefix}:recs:catalog:ids"

    def recs_catalog_version(self) -> str:
        """Hash: catalog change counter, content model build counter and times."""
        return f"{self.prefix}:recs:catalog:version"

    def recs_trending(self, category: str | None = None) -> str:
        """Sorted set: item -> time-decayed score (scaled to the epoch of the trending model)."""
        scope = "global" if category is None else f"cat:{category}"
        return f"{self.prefix}:recs:trending:{scope}"

    def recs_popular(self) -> str:
        """Sorted set: item -> all-time interaction weight (popularity fallback)."""
        return f"{self.prefix}:recs:popular"

    def recs_mf_items(self) -> str:
        """Hash: item -> online MF item factors (float32 bytes, bias last)."""
        return f"{self.prefix}:recs:mf:items"

    def recs_monitor(self, model: str) -> str:
        """Hash: online monitoring of one model (impressions, clicks, pv_n, pv_err)."""
        return f"{self.prefix}:recs:monitor:{model}"

    def recs_placement(self, placement: str) -> str:
        """Hash: the active model version and blend weights of one placement, and ``strategy_bandit``:
        the bandit that picks the method of its requests without one (aura/models/registry.py)."""
        return f"{self.prefix}:recs:placement:{placement}"

    # --- decisions (owner: serving/routes/{personalization,experiments,bandits}.py for the
    # configuration caches, streams/experiments.py and streams/bandits.py for the learned state) ------

    def config_version(self, kind: str) -> str:
        """String (int): version of one kind of decision configuration (rules, experiments, bandits);
        INCR after every durable write, so caches keyed on it are invalidated."""
        return f"{self.prefix}:cfg:{{{kind}}}:ver"

    def config_cache(self, kind: str) -> str:
        """String: JSON ``{"ver": n, "docs": [...]}``, every definition of ``kind`` as of version n."""
        return f"{self.prefix}:cfg:{{{kind}}}:docs"

    def experiment_tally(self, experiment_id: str) -> str:
        """Hash: ``<variant>|exposed``, ``<variant>|conv:<event type>``, ``<variant>|revenue`` and the
        per-partition offset fences ``_off:<topic>:<partition>`` of one experiment."""
        return f"{self.prefix}:exp:{{{experiment_id}}}:tally"

    def experiment_users(self, experiment_id: str) -> str:
        """Hash: user id -> "variant|first exposure ms" (one exposure counted per user)."""
        return f"{self.prefix}:exp:{{{experiment_id}}}:users"

    def experiment_converted(self, experiment_id: str) -> str:
        """Set: "<event type>|<user id>" already counted as a conversion (unique converters)."""
        return f"{self.prefix}:exp:{{{experiment_id}}}:conv"

    def user_experiments(self, user_id: str) -> str:
        """Hash: experiment id -> "variant|first exposure ms" of one user (conversion attribution)."""
        return f"{self.prefix}:user:{{{user_id}}}:experiments"

    def bandit_state(self, bandit_id: str) -> str:
        """Hash: ``state`` (policy state JSON), ``ver`` (compare-and-set version), the offset fences
        ``_off:<topic>:<partition>`` of one bandit, and ``quarantine`` (JSON reason) while the stream
        holds it at its last good state (cleared by the admin reset)."""
        return f"{self.prefix}:bandit:{{{bandit_id}}}:state"

    def bandit_decision(self, bandit_id: str, decision_id: str) -> str:
        """String (TTL): JSON of one decision (arm, features, reward so far), for reward attribution."""
        return f"{self.prefix}:bandit:{{{bandit_id}}}:d:{decision_id}"

    # --- campaigns (owners: serving/routes/campaigns.py for the definitions; streams/campaigns.py and
    # streams/campaign_drain.py for triggers, guards and attribution; streams/connectors.py for sends) ---

    def campaign_due(self) -> str:
        """Sorted set: due messages (``campaign_sends.Due.member``) -> due time (ms); one slot."""
        return f"{self.prefix}:camp:{{campaigns}}:due"

    def campaign_drain_lease(self) -> str:
        """String (PX): the worker draining ``campaign_due`` (one per consumer group); same slot."""
        return f"{self.prefix}:camp:{{campaigns}}:drain"

    def campaign_last(self, user_id: str) -> str:
        """Sorted set: event type -> the user's latest event time of the types campaigns watch (ZADD GT)."""
        return f"{self.prefix}:user:{{{user_id}}}:camp:last"

    def campaign_caps(self, user_id: str, channel: str) -> str:
        """Sorted set: ``<campaign>|<message id>`` -> time, the user's messages of one channel (caps)."""
        return f"{self.prefix}:user:{{{user_id}}}:camp:caps:{channel}"

    def user_campaigns(self, user_id: str) -> str:
        """Hash: campaign id -> ``<treated|holdout>|<qualified ms>`` (conversion attribution)."""
        return f"{self.prefix}:user:{{{user_id}}}:camp:groups"

    def campaign_user_messages(self, user_id: str) -> str:
        """List: the user's latest message records (JSON), newest first, bounded."""
        return f"{self.prefix}:user:{{{user_id}}}:camp:msgs"

    def campaign_inbox(self, user_id: str) -> str:
        """Sorted set: JSON of an in-app message -> queued time (ms), the newest 50 (the storefront polls it)."""
        return f"{self.prefix}:user:{{{user_id}}}:camp:inbox"

    def campaign_message(self, message_id: str) -> str:
        """String (TTL): the send record of one message: ``queued``, ``sending``, ``sent``, ``failed:<why>``."""
        return f"{self.prefix}:camp:msg:{{{message_id}}}"

    def campaign_stats(self, campaign_id: str) -> str:
        """Hash: counters of one campaign (queued, sent, failed, suppressed:<reason>, opened, clicked,
        qualified:<group>, converted:<group>, revenue:<group>)."""
        return f"{self.prefix}:camp:{{{campaign_id}}}:stats"

    def campaign_converted(self, campaign_id: str) -> str:
        """Set: users whose goal conversion was counted for the campaign (once each)."""
        return f"{self.prefix}:camp:{{{campaign_id}}}:conv"

    def campaign_engaged(self, campaign_id: str) -> str:
        """Set: ``open|<message id>`` / ``click|<message id>`` already counted (once per message)."""
        return f"{self.prefix}:camp:{{{campaign_id}}}:engaged"

    def segment_transitions(self, segment: str) -> str:
        """Stream: the segment's real joins and leaves (aura/state/campaign_schedule.py ``Transition``),
        added by the segments writer's script with the SADD/SREM; the segment's slot."""
        return f"{self.prefix}:segment:{{{segment}}}:transitions"

    def campaign_segment_cursor(self) -> str:
        """Hash: segment -> the last transition entry id turned into due messages; ``campaign_due``'s slot."""
        return f"{self.prefix}:camp:{{campaigns}}:segcursor"

    def campaign_schedule(self, campaign_id: str) -> str:
        """Hash: a scheduled campaign's expansion (occurrence, cursor, expanded, last, scheduled, ...);
        ``campaign_due``'s slot so one script moves the cursor with the due entries."""
        return f"{self.prefix}:camp:{{campaigns}}:sched:{campaign_id}"

    def decisions_count(self) -> str:
        """Hash: counters of the decisions agent (exposures, decisions, rewards, orphan rewards, ...)."""
        return f"{self.prefix}:metrics:decisions"
