"""The insight agent: reads ``agg.minute_metrics`` (and the campaign figures of ``agg.campaigns``),
runs the insight engine (aura/insights) over each final minute and publishes what it finds
(``agg.insights``, Cassandra ``insights``).

Detection needs the whole cross-section of a minute (every dimension value), and the aggregate
topic is keyed by window and dimension over all partitions, so one worker runs the engine: the
holder of a Redis lease (``insights_lease``), renewed every round; another worker of the role takes
over within ``AURA_INSIGHTS_LEASE_MS`` when it dies. The holder assigns itself every partition (no
consumer group) at the offsets saved with the engine.

Exactly once: the engine (river models, open insights, pending minutes) is pickled with the offsets
it covers (aura/state/insights.py) and saved with a compare-and-set on its sequence number, after
the round's insights are written; a restart resumes from the saved offsets, so no record is
applied twice or skipped, and a replayed round re-issues the same insight ids and revisions
(idempotent upserts; the topic is compacted by insight id). A copy goes to Cassandra every
``AURA_INSIGHTS_SNAPSHOT_S``. Undecodable or malformed records are dead-lettered with their reason
and the agent goes on.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import faust
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from aura import layout
from aura.insights.engine import Engine, Insight, millis
from aura.layout import Tables
from aura.state import insights as state
from schemas.codec import codec
from streams.durable import execute_grouped
from streams.intake import Dead, RawRecord
from streams.runtime import Owner, Resources

log = logging.getLogger(__name__)

LEASE_LUA = """
local cur = redis.call('GET', KEYS[1])
if not cur then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 1 end
if cur == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end
return 0
"""
SAVE_EVERY_S = 5.0  # the engine is saved at least this often while records flow (and whenever insights change)


@dataclass
class Decoded:
    records: list[tuple[RawRecord, dict[str, Any]]]
    dead: list[Dead]
    campaigns: list[tuple[RawRecord, dict[str, Any]]] = field(default_factory=list)  # agg.campaigns records


def decode(messages: list[Any], dec: Any, campaign_dec: Any = None, campaign_topic: str = "") -> Decoded:
    """Decode and check a round's messages (pure but for the codecs): bad ones become dead letters.
    Messages of ``campaign_topic`` (agg.campaigns) are decoded with ``campaign_dec``."""
    out = Decoded([], [])
    for m in messages:
        raw = RawRecord(m.topic(), m.partition(), m.offset(), m.key(), m.value())
        if m.value() is None:
            continue  # a tombstone of the compacted topic
        if campaign_topic and m.topic() == campaign_topic:
            try:
                rec = campaign_dec.decode(m.value())
                if not isinstance(rec, dict):
                    raise ValueError("not a record")
            except Exception as exc:  # noqa: BLE001 - any decode failure is this record's dead letter
                out.dead.append(Dead(raw, "bad_aggregate", f"{type(exc).__name__}: {exc}"))
                continue
            out.campaigns.append((raw, rec))
            continue
        try:
            rec = dec.decode(m.value())
            if not isinstance(rec, dict) or not isinstance(rec.get("events"), dict):
                raise ValueError("no events map")
            millis(rec["window_start"])
        except Exception as exc:  # noqa: BLE001 - any decode failure is this record's dead letter
            out.dead.append(Dead(raw, "bad_aggregate", f"{type(exc).__name__}: {exc}"))
            continue
        out.records.append((raw, rec))
    return out


def apply(saved: state.Saved, decoded: Decoded, now_ms: int | None = None, idle: bool = False) -> tuple[
        list[Insight], list[Dead]]:
    """Fold decoded records above the saved offsets into the engine and flush the final minutes;
    records the engine refuses are dead letters too. ``idle``: no record for a while, so every
    pending minute is final."""
    dead: list[Dead] = []
    eng = saved.engine
    for raw, rec in decoded.records:
        if raw.offset <= saved.offsets.get(raw.partition, -1):
            continue
        saved.offsets[raw.partition] = raw.offset
        try:
            eng.add(rec, raw.partition)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            dead.append(Dead(raw, "bad_aggregate", f"{type(exc).__name__}: {exc}"))
    for raw, rec in decoded.campaigns:
        if raw.offset <= saved.campaign_offsets.get(raw.partition, -1):
            continue
        saved.campaign_offsets[raw.partition] = raw.offset
        try:
            eng.add_campaign(rec)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            dead.append(Dead(raw, "bad_aggregate", f"{type(exc).__name__}: {exc}"))
    return eng.flush(max(eng.pending) + eng.settle_ms if idle and eng.pending else None), dead


class InsightAgent:
    """One worker's side of the insight engine: lease, consumer, rounds, saves."""

    def __init__(self, res: Resources, send_insight: Any, send_dead: Any) -> None:
        self.res = res
        s = res.settings
        self.cfg = s.insights
        self.topic = layout.topic(s, layout.AGG_METRICS_MINUTE)
        self.token = uuid.uuid4().hex
        self.lease = res.redis.register_script(LEASE_LUA)
        self.save_script = res.redis.register_script(state.SAVE_LUA)
        self.dec = codec("agg_minute_metrics")
        self.campaign_topic = layout.topic(s, layout.AGG_CAMPAIGNS)
        self.campaign_dec = codec("agg_campaign")
        self.send_insight = send_insight
        self.send_dead = send_dead
        self.saved: state.Saved | None = None
        self.consumer: Any = None
        self.last_save = 0.0
        self.last_snapshot = 0.0
        self.last_record = time.monotonic()
        self.dirty = False
        session = res.session
        self.upsert = session.prepare(
            f"INSERT INTO {Tables.INSIGHTS} (day, started_at, insight_id, metric, focus, severity, status, updated_at,"
            " revision, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) USING TIMESTAMP ?")
        self.snap_write = session.prepare(
            f"INSERT INTO {Tables.INSIGHT_STATE} (name, seq, state, updated_at) VALUES (?, ?, ?, ?)")
        self.snap_read = session.prepare(f"SELECT seq, state FROM {Tables.INSIGHT_STATE} WHERE name = ?")

    # --- lease and state ---------------------------------------------------------------------

    async def hold(self) -> bool:
        keys = [self.res.keys.insights_lease()]
        return bool(await self.lease(keys=keys, args=[self.token, self.cfg.lease_ms]))

    async def load(self) -> state.Saved:
        seq, blob = state.split_redis_value(await self.res.redis.get(self.res.keys.insights_state()))
        if blob is not None and seq is not None:
            return state.unpack(blob, seq)
        rows = list(await asyncio.to_thread(self.res.session.execute, self.snap_read, (self.topic,)))
        if rows and rows[0].state:
            saved = state.unpack(bytes(rows[0].state), int(rows[0].seq))
            saved.seq = -int(rows[0].seq) - 1  # not in Redis yet: the first save is an insert
            return saved
        return state.Saved(Engine(settle_ms=self.cfg.settle_s * 1000), {}, -1)

    async def save(self, force: bool = False) -> bool:
        """Compare-and-set the engine with its offsets; False when another worker saved meanwhile."""
        saved = self.saved
        if saved is None or not (self.dirty or force):
            return True
        blob = state.pack(saved)
        expected = "" if saved.seq < 0 else str(saved.seq)
        new_seq = (-saved.seq if saved.seq < 0 else saved.seq + 1)
        ok = await self.save_script(keys=[self.res.keys.insights_state()],
                                    args=[expected, state.redis_blob(blob), str(new_seq)])
        if not ok:
            return False
        saved.seq = new_seq
        self.dirty = False
        self.last_save = time.monotonic()
        if self.last_save - self.last_snapshot >= self.cfg.snapshot_s:
            await asyncio.to_thread(self.res.session.execute, self.snap_write,
                                    (self.topic, new_seq, blob, int(time.time() * 1000)))
            self.last_snapshot = self.last_save
        return True

    # --- consumer ------------------------------------------------------------------------------

    def _open(self, offsets: dict[int, int], campaign_offsets: dict[int, int]) -> Any:
        s = self.res.settings
        c = Consumer({"bootstrap.servers": s.kafka.bootstrap, "group.id": f"{layout.worker_group(s)}-insights",
                      "enable.auto.commit": False, "auto.offset.reset": "earliest"})
        assign = []
        for topic, offs in ((self.topic, offsets), (self.campaign_topic, campaign_offsets)):
            meta = c.list_topics(topic, timeout=10)
            parts = sorted(meta.topics[topic].partitions) if topic in meta.topics else []
            assign += [TopicPartition(topic, p, offs[p] + 1 if p in offs else OFFSET_BEGINNING) for p in parts]
        c.assign(assign)
        return c

    async def release(self) -> None:
        if self.consumer is not None:
            c, self.consumer = self.consumer, None
            await asyncio.to_thread(c.close)
        self.saved = None

    # --- one round -----------------------------------------------------------------------------

    async def round(self) -> int:
        """Consume, detect, publish, save; returns the number of insights issued."""
        if not await self.hold():
            await self.release()
            return 0
        if self.saved is None:
            self.saved = await self.load()
            self.consumer = await asyncio.to_thread(self._open, dict(self.saved.offsets),
                                                    dict(self.saved.campaign_offsets))
        msgs = await asyncio.to_thread(self.consumer.consume, self.cfg.max_records, 0.2)
        msgs = [m for m in msgs if m.error() is None]
        decoded = decode(msgs, self.dec, self.campaign_dec, self.campaign_topic)
        now = time.monotonic()
        if decoded.records:
            self.last_record = now
        idle = not decoded.records and now - self.last_record > self.cfg.settle_s and bool(self.saved.engine.pending)
        insights, dead = apply(self.saved, decoded, idle=idle)
        dead = decoded.dead + dead
        if msgs or idle:
            self.dirty = True
        if dead:
            await self.send_dead(dead)
        if insights:
            await self.publish(insights)
        if (insights or idle or now - self.last_save >= SAVE_EVERY_S) and not await self.save():
            log.warning("insight state was saved by another worker; giving the engine up")
            await self.release()
        await self.count(len(decoded.records) + len(decoded.campaigns), len(dead), len(insights))
        return len(insights)

    async def publish(self, insights: list[Insight]) -> None:
        """History rows first (idempotent upserts), then the topic; both before the state is saved."""
        rows = [(ins.started_at // state.DAY_MS, self.upsert,
                 (*state.row(ins), ins.updated_at * 1000 + ins.revision)) for ins in insights]
        await execute_grouped(self.res.session, rows)
        await self.send_insight(insights)

    async def count(self, records: int, dead: int, insights: int) -> None:
        pipe = self.res.redis.pipeline(transaction=False)
        k = self.res.keys.insights_count()
        pipe.hincrby(k, "rounds", 1)
        if records:
            pipe.hincrby(k, "records", records)
        if dead:
            pipe.hincrby(k, "dead", dead)
        if insights:
            pipe.hincrby(k, "insights", insights)
        await pipe.execute()


def register(app: faust.App, res: Resources) -> list[Owner]:
    """The insight agent's timer (one round per ``AURA_INSIGHTS_INTERVAL_S``); no behavior owner."""
    s = res.settings
    if not s.insights.enabled:
        return []
    out_topic = app.topic(layout.topic(s, layout.AGG_INSIGHTS), key_serializer="raw", value_serializer="raw")
    deadletters = app.topic(layout.topic(s, layout.DEADLETTER), key_serializer="raw", value_serializer="raw")
    ins_codec, dead_codec = codec("agg_insight"), codec("dead_letter")

    async def send_insights(insights: list[Insight]) -> None:
        futs = [await out_topic.send(key=i.insight_id.encode(), value=ins_codec.encode(state.to_record(i)))
                for i in insights]
        await asyncio.gather(*futs)  # delivered before the state that produced them is saved

    async def send_dead(dead: list[Dead]) -> None:
        now_ms = int(time.time() * 1000)
        futs = [await deadletters.send(key=d.record.key, value=dead_codec.encode(d.to_avro(now_ms))) for d in dead]
        await asyncio.gather(*futs)
        pipe = res.redis.pipeline(transaction=False)
        for d in dead:
            pipe.hincrby(res.keys.deadletter_count(), d.reason, 1)
        await pipe.execute()
        log.warning("dead-lettered %d aggregate records", len(dead))

    agent = InsightAgent(res, send_insights, send_dead)

    @app.timer(interval=s.insights.interval_s, name="detect_insights")
    async def detect_insights() -> None:
        try:
            await agent.round()
        except Exception:  # a failed round is redone from the saved state by the next one
            log.exception("insight round failed")
            await agent.release()

    return []

