"""The searchable copy of profiles in Cassandra (table ``profile_search``, storage-attached indexes of
migration v0017): its rows, the search filters and the query they become, and the opaque cursor.

One partition per user. The row with ``attr = ''`` carries the user's searchable state in static
columns: ``terms`` (every identity attribute as ``name=value`` terms, lists one term per element),
``attrs`` (the attributes as JSON, for display), ``segments``, ``stage`` (the lifecycle stage at the
last event), ``last_seen``, ``eng``/``eng_t`` (decayed engagement points). Each numeric attribute
also has a row ``attr = <name>`` with its value in ``num``: Cassandra 5.0 answers only equality on
map entries, so a numeric range is a range over ``num`` restricted to ``attr = <name>`` (the static
columns of the same partition answer the other filters in the same query). A search therefore names
at most one numeric-range attribute.

Writers (the stream only): the profile fold's rows (streams/profiles.py ``durable_statements``: segments,
stage, last seen, engagement) and the identity agent's attribute rows (streams/identity.py), both
through the worker's write-behind; the erase deletes the partition. Every statement carries an
explicit write time, so a backfill (jobs/profile_search.py) that writes with the time it read Redis
never overwrites a newer write of the stream. Reader: serving/routes/profile_search.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
from dataclasses import dataclass, field
from typing import Any

from aura.errors import AuraError
from aura.layout import Tables
from aura.state.profiles import Profile, ProfileConfig

PROFILE_ROW = ""  # the clustering key of the row that carries the static columns
TERM_MAX_BYTES = 512  # longer attribute terms are not indexed (SAI refuses very large terms)
LIFECYCLES = ("new", "active", "reactivated", "at-risk", "churned")
MAX_SEGMENTS, MAX_ATTRIBUTES = 5, 10


class SearchError(AuraError):
    """A search filter or cursor the API must refuse; ``param`` names the query parameter."""

    def __init__(self, param: str, msg: str) -> None:
        super().__init__(msg)
        self.param, self.msg = param, msg


# ---------------------------------------------------------------------------------------------
# Values: attribute terms and numbers


def canonical_number(x: float) -> str:
    """``30`` for 30 and 30.0, ``30.5`` for 30.5: one spelling per number."""
    return str(int(x)) if float(x).is_integer() and abs(x) < 2**53 else repr(float(x))


def _scalar_terms(name: str, v: Any) -> list[str]:
    if isinstance(v, bool):
        return [f"{name}={'true' if v else 'false'}"]
    if isinstance(v, int | float):
        return [f"{name}={canonical_number(v)}"]
    if isinstance(v, str):
        out = [f"{name}={v}"]
        try:  # a number spelt as text also matches its canonical spelling ("02134" and "2134")
            x = float(v)
            if math.isfinite(x):
                out.append(f"{name}={canonical_number(x)}")
        except ValueError:
            if v.lower() in ("true", "false"):
                out.append(f"{name}={v.lower()}")
        return out
    return []  # objects and null are not searchable


def terms_of(attributes: dict[str, Any]) -> set[str]:
    """The equality terms of decoded identity attributes (lists: one term per element)."""
    out: set[str] = set()
    for name, value in attributes.items():
        for v in value if isinstance(value, list) else [value]:
            out.update(t for t in _scalar_terms(name, v) if len(t.encode()) <= TERM_MAX_BYTES)
    return out


def numbers_of(attributes: dict[str, Any]) -> dict[str, float]:
    """The numeric attributes (numbers, not booleans or lists), range-searchable."""
    return {k: float(v) for k, v in attributes.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and k != PROFILE_ROW}


def query_term(name: str, text: str) -> str:
    """The term a query ``name:text`` looks up: numbers and booleans in their canonical spelling."""
    try:
        x = float(text)
        if math.isfinite(x):
            return f"{name}={canonical_number(x)}"
    except ValueError:
        pass
    if text.lower() in ("true", "false"):
        return f"{name}={text.lower()}"
    return f"{name}={text}"


# ---------------------------------------------------------------------------------------------
# Rows (explicit write times in microseconds)


def now_us() -> int:
    return time.time_ns() // 1000


def profile_cql(ks_table: str = Tables.PROFILE_SEARCH) -> str:
    return (f"INSERT INTO {ks_table} (user_id, attr, segments, stage, last_seen, eng, eng_t) "
            "VALUES (?, '', ?, ?, ?, ?, ?) USING TIMESTAMP ?")


def profile_params(user: str, p: Profile, ts: int) -> tuple[Any, ...]:
    return (user, set(p.segments), p.stage or "new", p.last_seen, p.eng, p.eng_t, ts)


def attrs_cql(ks_table: str = Tables.PROFILE_SEARCH) -> tuple[str, str, str]:
    """(clear the numeric rows, write the profile row's attribute columns, write one numeric row)."""
    return (f"DELETE FROM {ks_table} USING TIMESTAMP ? WHERE user_id = ? AND attr > ''",
            f"INSERT INTO {ks_table} (user_id, attr, terms, attrs) VALUES (?, '', ?, ?) USING TIMESTAMP ?",
            f"INSERT INTO {ks_table} (user_id, attr, num) VALUES (?, ?, ?) USING TIMESTAMP ?")


def attrs_params(user: str, attributes: dict[str, Any], ts: int) -> list[tuple[int, tuple[Any, ...]]]:
    """(which of ``attrs_cql``, parameters) for the absolute attribute state of ``user``: the old
    numeric rows are deleted just before (``ts - 1``) the current ones are written."""
    out: list[tuple[int, tuple[Any, ...]]] = [
        (0, (ts - 1, user)),
        (1, (user, terms_of(attributes), json.dumps(attributes, sort_keys=True, separators=(",", ":")), ts))]
    out += [(2, (user, name, x, ts)) for name, x in sorted(numbers_of(attributes).items())]
    return out


# ---------------------------------------------------------------------------------------------
# Filters -> one CQL query


@dataclass
class Filters:
    """A search: every filter must hold (AND)."""

    segments: list[str] = field(default_factory=list)
    terms: list[str] = field(default_factory=list)  # query_term(...) of each attribute equality
    range_attr: str | None = None
    num_min: float | None = None
    num_max: float | None = None
    since: int | None = None  # last event at or after (ms)
    before: int | None = None  # last event before (ms)
    stage: str | None = None

    def key(self) -> str:
        """Canonical text of the search (the cursor is bound to it)."""
        return json.dumps([sorted(self.segments), sorted(self.terms), self.range_attr, self.num_min,
                           self.num_max, self.since, self.before, self.stage], separators=(",", ":"))


def _name_value(param: str, raw: str) -> tuple[str, str]:
    name, sep, value = raw.partition(":")
    if not sep or not name:
        raise SearchError(param, f"{param}: expected name:value, got {raw[:40]!r}")
    return name, value


def _number(param: str, text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        x = math.nan
    if not math.isfinite(x):
        raise SearchError(param, f"{param}: {text[:40]!r} is not a finite number")
    return x


def parse_filters(segments: list[str], attributes: list[str], attribute_min: str | None,
                  attribute_max: str | None, since: int | None, before: int | None, lifecycle: str | None,
                  now_ms: int, cfg: ProfileConfig) -> Filters:
    """The filters of a search, checked (``SearchError`` names the parameter). ``lifecycle`` is the
    stage as of ``now_ms`` (aura/state/profiles.py ``lifecycle``), turned into a last-seen window and,
    for new/active/reactivated, the stage at the last event."""
    f = Filters(segments=list(dict.fromkeys(segments)), since=since, before=before)
    if len(f.segments) > MAX_SEGMENTS:
        raise SearchError("segment", f"segment: at most {MAX_SEGMENTS}")
    if len(attributes) > MAX_ATTRIBUTES:
        raise SearchError("attribute", f"attribute: at most {MAX_ATTRIBUTES}")
    if any(len(x.encode()) > TERM_MAX_BYTES for x in f.segments):
        raise SearchError("segment", f"segment: at most {TERM_MAX_BYTES} bytes")
    f.terms = list(dict.fromkeys(query_term(*_name_value("attribute", a)) for a in attributes))
    if any(len(t.encode()) > TERM_MAX_BYTES for t in f.terms):
        raise SearchError("attribute", f"attribute: name and value at most {TERM_MAX_BYTES - 1} bytes")
    for param, raw in (("attribute_min", attribute_min), ("attribute_max", attribute_max)):
        if raw is None:
            continue
        name, text = _name_value(param, raw)
        if len(name.encode()) > TERM_MAX_BYTES:
            raise SearchError(param, f"{param}: attribute name at most {TERM_MAX_BYTES} bytes")
        if f.range_attr is not None and name != f.range_attr:
            raise SearchError(param, "attribute_min and attribute_max must name the same attribute "
                                     "(one numeric range per search)")
        f.range_attr = name
        if param == "attribute_min":
            f.num_min = _number(param, text)
        else:
            f.num_max = _number(param, text)
    if lifecycle is not None:
        if lifecycle not in LIFECYCLES:
            raise SearchError("lifecycle", f"lifecycle: one of {', '.join(LIFECYCLES)}")
        lo, hi = lifecycle_window(lifecycle, now_ms, cfg)
        f.since = lo if f.since is None else max(f.since, lo if lo is not None else f.since)
        if hi is not None:
            f.before = hi if f.before is None else min(f.before, hi)
        if lifecycle in ("new", "active", "reactivated"):
            f.stage = lifecycle
    return f


def lifecycle_window(stage: str, now_ms: int, cfg: ProfileConfig) -> tuple[int | None, int | None]:
    """[since, before) of ``last_seen`` for the users whose lifecycle as of ``now_ms`` is ``stage``:
    churned when idle longer than ``churn_ms``, at-risk when longer than ``at_risk_ms``, else the
    stage at the last event."""
    risk, churn = now_ms - int(cfg.at_risk_ms), now_ms - int(cfg.churn_ms)
    if stage == "churned":
        return None, churn
    if stage == "at-risk":
        return churn, risk
    return risk, None


SELECT_COLUMNS = "user_id, attr, attrs, segments, stage, last_seen, eng, eng_t"


def build_query(f: Filters, ks_table: str = Tables.PROFILE_SEARCH) -> tuple[str, list[Any]]:
    """(CQL, parameters) of ``f``: each filter is a storage-attached index predicate, ANDed."""
    where, params = ["attr = ?"], [f.range_attr if f.range_attr is not None else PROFILE_ROW]
    if f.num_min is not None:
        where.append("num >= ?")
        params.append(f.num_min)
    if f.num_max is not None:
        where.append("num <= ?")
        params.append(f.num_max)
    for s in f.segments:
        where.append("segments CONTAINS ?")
        params.append(s)
    for t in f.terms:
        where.append("terms CONTAINS ?")
        params.append(t)
    if f.since is not None:
        where.append("last_seen >= ?")
        params.append(f.since)
    if f.before is not None:
        where.append("last_seen < ?")
        params.append(f.before)
    if f.stage is not None:
        where.append("stage = ?")
        params.append(f.stage)
    return f"SELECT {SELECT_COLUMNS} FROM {ks_table} WHERE {' AND '.join(where)}", params


# ---------------------------------------------------------------------------------------------
# The cursor: Cassandra's paging state, signed together with the search it continues


CURSOR_MAX_CHARS = 4096
_MAC_BYTES = 16


def _mac(secret: bytes, search_key: str, state: bytes) -> bytes:
    return hmac.new(secret, search_key.encode() + b"\x00" + state, hashlib.sha256).digest()[:_MAC_BYTES]


def encode_cursor(secret: bytes, search_key: str, paging_state: bytes | None) -> str | None:
    """The opaque cursor of the next page (None: the last page was served)."""
    if not paging_state:
        return None
    raw = _mac(secret, search_key, paging_state) + paging_state
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(secret: bytes, search_key: str, cursor: str) -> bytes:
    """The paging state of ``cursor``; ``SearchError("cursor")`` when it was not issued for this search."""
    if len(cursor) > CURSOR_MAX_CHARS:
        raise SearchError("cursor", "cursor: too long")
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except ValueError as exc:
        raise SearchError("cursor", "cursor: not a cursor of this search") from exc
    mac, state = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
    if not state or not hmac.compare_digest(mac, _mac(secret, search_key, state)):
        raise SearchError("cursor", "cursor: not a cursor of this search")
    return state
