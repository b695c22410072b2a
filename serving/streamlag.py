"""Consumer lag of the worker's consumer groups, read from Kafka: for each group, the committed
offset of every partition it reads against the partition's end offset.

Faust commits its offsets to Kafka under the worker's app id (``aura.layout.worker_group``), so the
lag is Kafka's own figure, not a counter of ours: it is what an operator would read with
``kafka-consumer-groups.sh --describe``. The API does not know whether the workers run as one group
or split by role, so it asks for both layouts and reports the groups that have committed offsets.
The reads are blocking admin calls: they run in a thread, at most once per ``CACHE_S`` per process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import ConsumerGroupTopicPartitions, KafkaException, TopicPartition
from confluent_kafka.admin import OffsetSpec

from aura import layout
from aura.settings import Settings

log = logging.getLogger(__name__)

CACHE_S = 2.0
TIMEOUT_S = 5.0


@dataclass
class GroupLag:
    group: str
    lag: int  # messages committed behind the end, over every partition of the group
    topics: dict[str, dict[str, int]]  # topic (without the prefix) -> {"lag", "partitions"}


def candidate_groups(s: Settings) -> list[str]:
    """Every consumer group a deployment of these settings may run: one group, or one per process
    group of the split layout."""
    groups = layout.worker_groups(s, False) + layout.worker_groups(s, True)
    return list(dict.fromkeys(groups))


def summarise(group: str, committed: dict[tuple[str, int], int], ends: dict[tuple[str, int], int],
              prefix: str) -> GroupLag:
    """Pure: the lag of ``group`` from its committed offsets and the partitions' end offsets. A
    partition without an end offset (deleted since) counts 0."""
    topics: dict[str, dict[str, int]] = {}
    total = 0
    for (topic, partition), offset in sorted(committed.items()):
        end = ends.get((topic, partition))
        lag = max(0, end - offset) if end is not None else 0
        name = topic[len(prefix) + 1:] if topic.startswith(prefix + ".") else topic
        t = topics.setdefault(name, {"lag": 0, "partitions": 0})
        t["lag"] += lag
        t["partitions"] += 1
        total += lag
    return GroupLag(group=group, lag=total, topics=topics)


def read_lag(admin: Any, s: Settings) -> list[GroupLag]:
    """Blocking: the lag of every worker group of ``s`` that has committed offsets."""
    committed: dict[str, dict[tuple[str, int], int]] = {}
    for group in candidate_groups(s):
        futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                    request_timeout=TIMEOUT_S)
        result = futures[group].result(timeout=TIMEOUT_S)
        offsets = {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions or [] if tp.offset >= 0}
        if offsets:
            committed[group] = offsets
    wanted = {tp for offsets in committed.values() for tp in offsets}
    ends: dict[tuple[str, int], int] = {}
    if wanted:
        futures = admin.list_offsets({TopicPartition(t, p): OffsetSpec.latest() for t, p in wanted},
                                     request_timeout=TIMEOUT_S)
        for tp, fut in futures.items():
            try:
                ends[(tp.topic, tp.partition)] = fut.result(timeout=TIMEOUT_S).offset
            except KafkaException as exc:  # a partition deleted since it was committed: no end, no lag
                log.debug("no end offset for %s[%d]: %s", tp.topic, tp.partition, exc)
    prefix = s.kafka.topic_prefix
    return [summarise(g, offsets, ends, prefix) for g, offsets in committed.items()]


@dataclass
class LagReader:
    """The process's lag reader: one admin client (opened at startup), answers cached ``CACHE_S``."""

    admin: Any
    settings: Settings
    _at: float = -1e9  # time.monotonic() of the last read
    _read_at: float = 0.0  # time.time() of the last read
    _last: list[GroupLag] = field(default_factory=list)
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def read(self) -> tuple[list[GroupLag], float]:
        """The groups' lag and the wall time (epoch s) it was read at."""
        async with self._lock:
            if time.monotonic() - self._at >= CACHE_S:
                self._last = await asyncio.to_thread(read_lag, self.admin, self.settings)
                self._at = time.monotonic()
                self._read_at = time.time()
            return self._last, self._read_at
