"""Applies the versioned migrations in infra/migrations to Kafka and Cassandra (idempotent).

Owns the keyspace, the ``schema_migrations`` record of what was applied, and the creation and
deletion of topics (``ensure_topics`` waits for their leaders, so a consumer started right after
is assigned partitions). Run by ``aura migrate``, ``aura run`` and the tests' fixtures.
"""

from __future__ import annotations

import time
from typing import Any

from confluent_kafka.admin import NewTopic

from aura import layout
from aura.bootstrap import cassandra_session, kafka_admin
from aura.layout import Tables, TopicSpec
from aura.settings import Settings
from infra.migrations import all_migrations


def _say(msg: str) -> None:
    print(f"[migrate] {msg}", flush=True)  # noqa: T201 - command-line tool


def ensure_topics(s: Settings, specs: tuple[TopicSpec, ...] | list[TopicSpec], admin: Any = None) -> list[str]:
    """Create the topics that do not exist yet; returns the names created."""
    admin = admin or kafka_admin(s)
    existing = set(admin.list_topics(timeout=10).topics)
    new = []
    for spec in specs:
        name = layout.topic(s, spec)
        if name in existing:
            continue
        existing.add(name)  # a spec listed by several migrations is created once
        config = {"cleanup.policy": "compact" if spec.compacted else "delete"}
        if spec.retention_ms is not None:
            config["retention.ms"] = str(spec.retention_ms)
        new.append(NewTopic(name, num_partitions=spec.partitions or s.kafka.topic_partitions,
                            replication_factor=1 if s.cassandra.replication == 1 else 3, config=config))
    if not new:
        return []
    for _name, fut in admin.create_topics(new, operation_timeout=30).items():
        try:
            fut.result()
        except Exception as exc:  # noqa: BLE001 - TOPIC_ALREADY_EXISTS from a racing process is fine
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise
    wait_for_leaders(admin, {t.topic for t in new})
    return [t.topic for t in new]


def drop_topics(s: Settings, prefix: str, admin: Any = None) -> list[str]:
    """Delete every topic whose name starts with ``prefix`` (a test's or a benchmark's throw-away
    topics, Faust's internal ones included); returns the names. Errors are reported, not raised: a
    leftover topic costs the broker file descriptors (one directory per partition, and the broker
    stops at the default descriptor limit), never correctness."""
    admin = admin or kafka_admin(s)
    try:
        mine = [t for t in admin.list_topics(timeout=10).topics if t.startswith(prefix)]
        for fut in (admin.delete_topics(mine, operation_timeout=30).values() if mine else ()):
            try:
                fut.result()
            except Exception as exc:  # noqa: BLE001 - report, keep deleting
                print(f"[migrate] could not delete a topic of {prefix}: {exc}", flush=True)  # noqa: T201
    except Exception as exc:  # noqa: BLE001 - cleanup must not hide the caller's own result
        print(f"[migrate] could not list the topics of {prefix}: {exc}", flush=True)  # noqa: T201
        return []
    return mine


def wait_for_leaders(admin: Any, names: set[str], timeout_s: float = 60.0) -> None:
    """Return once every partition of ``names`` has a leader in the broker's metadata.

    A freshly started broker acknowledges CreateTopics before its metadata lists the new topics; a
    consumer that joins its group in that window (a worker started right after the first migration)
    is assigned nothing, so the topics are ready only when their leaders are known.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        topics = admin.list_topics(timeout=10).topics
        missing = sorted(n for n in names if n not in topics or topics[n].error is not None
                         or not topics[n].partitions
                         or any(p.leader < 0 for p in topics[n].partitions.values()))
        if not missing:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"topics without a leader after {timeout_s:.0f} s: {', '.join(missing)}")
        time.sleep(0.2)


def migrate(s: Settings, session: Any = None) -> list[int]:
    """Apply every pending migration; returns the versions applied now."""
    own_session = session is None
    if own_session:
        session = cassandra_session(s, keyspace=False)
    ks = s.cassandra.keyspace
    try:
        session.execute(
            f"CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = "
            f"{{'class': 'SimpleStrategy', 'replication_factor': {s.cassandra.replication}}}"
        )
        session.execute(
            f"CREATE TABLE IF NOT EXISTS {ks}.{Tables.MIGRATIONS} "
            "(version int PRIMARY KEY, description text, applied_at timestamp)"
        )
        done = {row.version for row in session.execute(f"SELECT version FROM {ks}.{Tables.MIGRATIONS}")}
        applied: list[int] = []
        migrations = all_migrations()
        created = ensure_topics(s, [spec for m in migrations for spec in m.TOPICS])
        if created:
            _say(f"created topics: {', '.join(created)}")
        for mod in migrations:
            if mod.VERSION in done:
                continue
            for stmt in mod.cql(s):
                session.execute(stmt, timeout=60)
            data = getattr(mod, "data", None)  # a migration that moves rows: after its tables exist
            if data is not None:
                moved = data(s, session)
                _say(f"v{mod.VERSION:04d}: {moved} rows moved")
            session.execute(
                f"INSERT INTO {ks}.{Tables.MIGRATIONS} (version, description, applied_at) VALUES (%s, %s, %s)",
                (mod.VERSION, mod.DESCRIPTION, int(time.time() * 1000)),
            )
            applied.append(mod.VERSION)
            _say(f"applied v{mod.VERSION:04d}: {mod.DESCRIPTION}")
        return applied
    finally:
        if own_session:
            session.cluster.shutdown()
