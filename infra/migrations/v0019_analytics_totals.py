"""Analytics snapshots partitioned by period: ``analytics_totals`` replaces ``analytics_counters``.

The first layout had one partition per (grain, bucket): a replayed history touches tens of thousands
of minute buckets, each a Cassandra mutation of three rows. Here minute buckets share a partition per
day (``aura/state/analytics.py`` ``PERIODS``), so they are written in a few hundred batches and a
window is read by one range query per day. ``data`` copies the old rows (their write times kept, so
a newer snapshot still wins) and then drops the old table; a copy cut short is simply redone.
"""

from __future__ import annotations

import logging
from typing import Any

from cassandra.concurrent import execute_concurrent_with_args

from aura.layout import Tables
from aura.settings import Settings
from aura.state.analytics import GRAINS, period_of

VERSION = 19
DESCRIPTION = "analytics snapshots partitioned by period"
TOPICS = ()
COPY_PAGE = 5000
log = logging.getLogger(__name__)


def cql(s: Settings) -> list[str]:
    ks = s.cassandra.keyspace
    return [
        f"""CREATE TABLE IF NOT EXISTS {ks}.{Tables.ANALYTICS_TOTALS} (
              grain text,
              period timestamp,
              bucket timestamp,
              metric text,
              value double,
              PRIMARY KEY ((grain, period), bucket, metric)
            )""",
    ]


def data(s: Settings, session: Any) -> int:
    """Copy every row of the old table (if it is still there) and drop it; returns the rows copied.
    Rows without a value (deleted cells) or of a grain no code writes are not copied: their count is
    logged."""
    ks = s.cassandra.keyspace
    exists = session.execute("SELECT table_name FROM system_schema.tables WHERE keyspace_name = %s "
                             "AND table_name = %s", (ks, Tables.ANALYTICS_COUNTERS)).one()
    if exists is None:
        return 0
    insert = session.prepare(f"INSERT INTO {ks}.{Tables.ANALYTICS_TOTALS} (grain, period, bucket, metric, value) "
                             "VALUES (?, ?, ?, ?, ?) USING TIMESTAMP ?")
    select = session.prepare(f"SELECT grain, toUnixTimestamp(bucket) AS bucket, metric, value, "
                             f"WRITETIME(value) AS stamp FROM {ks}.{Tables.ANALYTICS_COUNTERS}")
    select.fetch_size = COPY_PAGE
    copied = skipped = 0
    page: list[tuple[Any, ...]] = []
    for r in session.execute(select, timeout=120):
        if r.grain in GRAINS and r.value is not None:
            page.append((r.grain, period_of(r.grain, r.bucket), r.bucket, r.metric, r.value, r.stamp or 0))
        else:
            skipped += 1
        if len(page) >= COPY_PAGE:
            execute_concurrent_with_args(session, insert, page, concurrency=64, raise_on_first_error=True)
            copied += len(page)
            page = []
    if page:
        execute_concurrent_with_args(session, insert, page, concurrency=64, raise_on_first_error=True)
        copied += len(page)
    if skipped:
        log.warning("v0019: %d rows of %s not copied (no value, or a grain other than %s)",
                    skipped, Tables.ANALYTICS_COUNTERS, "/".join(GRAINS))
    session.execute(f"DROP TABLE IF EXISTS {ks}.{Tables.ANALYTICS_COUNTERS}", timeout=120)
    return copied
