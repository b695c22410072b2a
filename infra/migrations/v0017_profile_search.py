"""The searchable copy of profiles (aura/state/profile_search.py): one partition per user, the static
columns of its ``attr = ''`` row holding the searchable state, one row per numeric attribute, and a
storage-attached index (SAI) per searched column. Users who existed before this migration are
copied in by ``aura job profile-search`` (resumable); the stream keeps the copy current after."""

from __future__ import annotations

from aura.layout import Tables
from aura.settings import Settings

VERSION = 17
DESCRIPTION = "profile_search table and its storage-attached indexes"
TOPICS = ()

INDEXED = ("attr", "num", "VALUES(terms)", "VALUES(segments)", "stage", "last_seen")


def cql(s: Settings) -> list[str]:
    ks, t = s.cassandra.keyspace, Tables.PROFILE_SEARCH
    out = [
        f"""CREATE TABLE IF NOT EXISTS {ks}.{t} (
              user_id text,
              attr text,
              num double,
              terms set<text> static,
              attrs text static,
              segments set<text> static,
              stage text static,
              last_seen timestamp static,
              eng double static,
              eng_t bigint static,
              PRIMARY KEY (user_id, attr)
            )""",
    ]
    for col in INDEXED:
        name = f"{t}_{col.replace('VALUES(', '').rstrip(')')}_sai"
        out.append(f"CREATE INDEX IF NOT EXISTS {name} ON {ks}.{t} ({col}) USING 'sai'")
    return out
