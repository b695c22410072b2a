"""Versioned cache of decision configuration (rules, experiments, bandits), shared by API and worker.

Cassandra holds the truth (one JSON document per definition); Redis holds a version number per
kind (``config_version``, INCR after every durable write, all lightweight transactions) and a
blob ``{"ver": n, "docs": [...]}``
(``config_cache``); each process memoises the parsed definitions of the last version it saw. A
warm read is one GET of the version (callers may pipeline it with their other reads); a version
change costs one GET of the blob; only a missing or stale blob reads Cassandra (and refreshes it).

Scopes: with ``keys.config_scope`` set, a document's row id is ``<scope>\x1f<id>`` and the process
reads and writes only the rows of its scope; unscoped (the default, production) a row id is the
document id as before, and rows written under a scope are not seen (tests share one keyspace, each
in its own scope; the API and the documents themselves never show the scope).

Why this is safe against races: a writer writes Cassandra first and INCRs the version after; a
reader stamps the blob it rebuilds with the version it read *before* reading Cassandra, so a
blob built from pre-write data carries an old version and is ignored by later readers.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from aura.bootstrap import cassandra_execute
from aura.errors import AuraError
from aura.keys import RedisKeys
from schemas.validation import BODY_LIMITS, check_json

log = logging.getLogger(__name__)
T = TypeVar("T")
SCOPE_SEP = "\x1f"  # between a scope and a document id in a row id (the ASCII unit separator)


class ConfigUnavailable(AuraError, RuntimeError):
    """The durable store is needed and cannot be reached."""


class ConfigCache(Generic[T]):
    """Definitions of one kind, by id, parsed with ``parse`` (which raises on an invalid document)."""

    def __init__(self, kind: str, table: str, id_column: str, redis: Any, keys: RedisKeys, session: Any,
                 parse: Callable[[dict[str, Any]], T]) -> None:
        self.kind, self.table, self.id_column = kind, table, id_column
        self.redis, self.keys, self.session, self.parse = redis, keys, session, parse
        self.ver_key = keys.config_version(kind)
        self.blob_key = keys.config_cache(kind)
        self._memo: tuple[str, dict[str, T]] | None = None
        self._stmts: dict[str, Any] | None = None
        self.durable_reads = 0  # how often Cassandra was read (tests and metrics)
        self.scope: str = getattr(keys, "config_scope", "")

    def in_scope(self, row_id: str, doc: Any) -> bool:
        """Whether the row ``row_id`` holding ``doc`` belongs to this cache's scope. Unscoped, every
        row does except those written under a scope (``<scope>\x1f<its doc's id>``)."""
        doc_id = doc.get("id") if isinstance(doc, dict) else None
        if self.scope:
            return row_id == self.row_id(str(doc_id))
        return not (isinstance(doc_id, str) and row_id != doc_id and row_id.endswith(SCOPE_SEP + doc_id))

    def row_id(self, doc_id: str) -> str:
        """The Cassandra row id of ``doc_id`` in this cache's scope."""
        return f"{self.scope}{SCOPE_SEP}{doc_id}" if self.scope else doc_id

    def bind_session(self, session: Any) -> None:
        """Use ``session`` from now on (the API reconnects Cassandra after an outage at start-up)."""
        if session is not self.session:
            self.session = session
            self._stmts = None

    async def _statements(self) -> dict[str, Any]:
        if self.session is None:
            raise ConfigUnavailable("Cassandra is not connected")
        if self._stmts is None:
            t, c = self.table, self.id_column
            queries = {
                "all": f"SELECT {c}, doc FROM {t}",
                "one": f"SELECT doc FROM {t} WHERE {c} = ?",
                "insert": f"INSERT INTO {t} ({c}, doc, updated_at) VALUES (?, ?, toTimestamp(now())) IF NOT EXISTS",
                "update": f"UPDATE {t} SET doc = ?, updated_at = toTimestamp(now()) WHERE {c} = ? IF EXISTS",
                "delete": f"DELETE FROM {t} WHERE {c} = ? IF EXISTS",
            }
            prepared = await asyncio.to_thread(lambda: {k: self.session.prepare(q) for k, q in queries.items()})
            self._stmts = prepared
        return self._stmts

    async def _execute(self, name: str, params: tuple[Any, ...]) -> Any:
        stmts = await self._statements()
        try:
            return await cassandra_execute(self.session, stmts[name].bind(params), timeout=5.0)
        except Exception as exc:  # noqa: BLE001 - any driver error means the durable store is unavailable
            raise ConfigUnavailable(f"Cassandra: {type(exc).__name__}: {exc}") from exc

    def _parse_all(self, docs: list[dict[str, Any]]) -> dict[str, T]:
        out: dict[str, T] = {}
        for d in docs:
            try:
                check_json(d, BODY_LIMITS)  # a document the API cannot encode must not break every read
                out[d["id"]] = self.parse(d)
            except Exception as exc:  # noqa: BLE001 - a bad stored document must not hide the others
                log.error("skipping invalid stored %s %r: %s", self.kind, d.get("id"), exc)
        return out

    async def version(self) -> str:
        ver = await self.redis.get(self.ver_key)
        if ver is None:  # fresh or flushed Redis: start from a time-based version, never reused
            await self.redis.set(self.ver_key, str(int(time.time() * 1000)), nx=True)
            ver = await self.redis.get(self.ver_key)
        return str(ver)

    async def get(self, ver: str | None = None) -> dict[str, T]:
        """Every definition, by id, as of the current version (``ver``: already read by the caller)."""
        if ver is None:
            ver = await self.version()
        memo = self._memo
        if memo is not None and memo[0] == ver:
            return memo[1]
        raw = await self.redis.get(self.blob_key)
        blob = json.loads(raw) if raw else None
        if blob is not None and str(blob.get("ver")) == ver and blob.get("scope", "") == self.scope:
            parsed = self._parse_all(blob["docs"])
        else:
            docs = await self.load_durable()
            parsed = self._parse_all(docs)
            stored: dict[str, Any] = {"ver": ver, "docs": docs, **({"scope": self.scope} if self.scope else {})}
            await self.redis.set(self.blob_key, json.dumps(stored))
        self._memo = (ver, parsed)
        return parsed

    async def load_durable(self) -> list[dict[str, Any]]:
        self.durable_reads += 1
        rows = await self._execute("all", ())
        docs = [(r[0], json.loads(r.doc)) for r in rows]
        return [doc for row_id, doc in docs if self.in_scope(row_id, doc)]

    async def get_doc(self, doc_id: str) -> dict[str, Any] | None:
        """One stored document, read from Cassandra (admin reads, read-modify-write)."""
        rows = await self._execute("one", (self.row_id(doc_id),))
        row = rows[0] if rows else None
        return json.loads(row.doc) if row is not None else None

    # Every write is a lightweight transaction (never mixed with plain writes on the same row), so
    # create / replace / delete are linearisable and report whether the row existed.

    async def _write(self, name: str, params: tuple[Any, ...]) -> bool:
        rows = await self._execute(name, params)
        applied = bool(rows[0].applied) if rows else False
        if applied:
            await self.redis.incr(self.ver_key)
        return applied

    async def insert(self, doc_id: str, doc: dict[str, Any]) -> bool:
        """Store a new document; False when the id exists."""
        return await self._write("insert", (self.row_id(doc_id), json.dumps(doc)))

    async def update(self, doc_id: str, doc: dict[str, Any]) -> bool:
        """Replace a document; False when it does not exist."""
        return await self._write("update", (json.dumps(doc), self.row_id(doc_id)))

    async def delete(self, doc_id: str) -> bool:
        """Delete a document; False when it does not exist."""
        return await self._write("delete", (self.row_id(doc_id),))
