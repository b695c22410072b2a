"""Personalization rules: validation and evaluation, pure functions over plain data.

A rule is a JSON document (stored by serving/routes/personalization.py in Cassandra, cached in
Redis); this module owns its grammar and semantics and nothing else::

    {"id": "fr-mobile-promo", "priority": 10, "enabled": true, "channels": ["web", "mobile"],
     "conditions": {"all": [
         {"field": "profile.country", "op": "equals", "value": "FR"},
         {"any": [{"field": "segments", "op": "contains", "value": "vip"},
                  {"field": "profile.ltv", "op": "gte", "value": 500}]},
         {"field": "context.device", "op": "in", "value": ["ios", "android"]}]},
     "content": {"banner": "promo-fr"}, "variant": "promo"}

Fields: ``profile.<name>`` (any profile field, e.g. ``profile.ltv``, ``profile.count.view``),
``segments`` (the user's segments) and ``context.<name>`` (page, placement, device, channel,
locale, referrer, time (epoch ms), hour (0-23 UTC), weekday (0 = Monday), date ("YYYY-MM-DD")).
Groups: ``all`` (AND), ``any`` (OR), ``not``; nested up to ``MAX_DEPTH``. Evaluation returns the
enabled rule of highest priority (ties: smallest id) whose channel list admits the request's
channel and whose conditions hold.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aura.errors import DefinitionError

CHANNELS = ("web", "email", "mobile")
CONTEXT_FIELDS = frozenset({"page", "placement", "device", "channel", "locale", "referrer", "time", "hour",
                            "weekday", "date"})
OPS = ("equals", "not_equals", "in", "not_in", "gt", "gte", "lt", "lte", "contains", "exists")
SEGMENT_OPS = frozenset({"contains", "in", "not_in"})
ORDER_OPS = frozenset({"gt", "gte", "lt", "lte"})
ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
MAX_DEPTH = 8
MAX_CONDITIONS = 200
MAX_LIST = 1000

Scalar = str | int | float | bool


class RuleError(DefinitionError):
    """A rule document that cannot be accepted; ``errors`` lists ``{"loc": [...], "msg": ...}``."""


@dataclass(frozen=True, slots=True)
class Condition:
    field: str
    op: str
    value: Any = None


@dataclass(frozen=True, slots=True)
class Group:
    kind: str  # all | any | not
    children: tuple[Condition | Group, ...]


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    priority: int
    enabled: bool
    channels: frozenset[str]
    conditions: Condition | Group | None
    content: Any
    variant: str | None
    doc: dict[str, Any] = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Match:
    rule_id: str
    priority: int
    content: Any
    variant: str | None


# ---------------------------------------------------------------------------------------------
# validation


def _is_scalar(v: Any) -> bool:
    return isinstance(v, str | int | float | bool) and v is not None


def parse_condition(node: Any, loc: list[Any], errors: list[dict[str, Any]], depth: int,
                     count: list[int]) -> Condition | Group | None:
    count[0] += 1
    if count[0] > MAX_CONDITIONS:
        if count[0] == MAX_CONDITIONS + 1:
            errors.append({"loc": loc, "msg": f"more than {MAX_CONDITIONS} conditions"})
        return None
    if depth > MAX_DEPTH:
        errors.append({"loc": loc, "msg": f"groups nested deeper than {MAX_DEPTH}"})
        return None
    if not isinstance(node, dict):
        errors.append({"loc": loc, "msg": "a condition must be an object"})
        return None
    groups = [k for k in ("all", "any", "not") if k in node]
    if groups:
        if len(node) != 1:
            errors.append({"loc": loc, "msg": "a group has exactly one key: all, any or not"})
            return None
        kind = groups[0]
        raw = node[kind]
        if kind == "not":
            child = parse_condition(raw, [*loc, "not"], errors, depth + 1, count)
            return Group("not", (child,)) if child is not None else None
        if not isinstance(raw, list) or not raw:
            errors.append({"loc": [*loc, kind], "msg": f"'{kind}' needs a non-empty list of conditions"})
            return None
        children = [parse_condition(c, [*loc, kind, i], errors, depth + 1, count) for i, c in enumerate(raw)]
        if any(c is None for c in children):
            return None
        return Group(kind, tuple(children))  # type: ignore[arg-type]
    unknown = set(node) - {"field", "op", "value"}
    if unknown:
        errors.append({"loc": loc, "msg": f"unknown keys {sorted(unknown)}; a condition has field, op, value"})
        return None
    fname, op, value = node.get("field"), node.get("op"), node.get("value")
    n_before = len(errors)
    if not isinstance(fname, str) or not fname:
        errors.append({"loc": [*loc, "field"], "msg": "field is required (profile.<name>, segments, context.<name>)"})
    elif fname == "segments":
        if op not in SEGMENT_OPS:
            errors.append({"loc": [*loc, "op"], "msg": f"segments supports {sorted(SEGMENT_OPS)}, not {op!r}"})
    elif fname.startswith("context."):
        if fname[8:] not in CONTEXT_FIELDS:
            errors.append({"loc": [*loc, "field"], "msg": f"unknown context field {fname[8:]!r}; "
                                                          f"known: {sorted(CONTEXT_FIELDS)}"})
    elif not (fname.startswith("profile.") and len(fname) > 8):
        errors.append({"loc": [*loc, "field"], "msg": f"unknown field {fname!r}; use profile.<name>, segments "
                                                      "or context.<name>"})
    if op not in OPS:
        errors.append({"loc": [*loc, "op"], "msg": f"unknown operator {op!r}; known: {list(OPS)}"})
    elif op in ("in", "not_in"):
        if not isinstance(value, list) or not value or len(value) > MAX_LIST or not all(map(_is_scalar, value)):
            errors.append({"loc": [*loc, "value"], "msg": f"'{op}' needs a non-empty list (<= {MAX_LIST}) of "
                                                          "strings or numbers"})
    elif op in ORDER_OPS:
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            errors.append({"loc": [*loc, "value"], "msg": f"'{op}' needs a number (or an ISO date string)"})
    elif op == "exists":
        if value is not None and not isinstance(value, bool):
            errors.append({"loc": [*loc, "value"], "msg": "'exists' takes true, false or no value"})
    elif not _is_scalar(value):
        errors.append({"loc": [*loc, "value"], "msg": f"'{op}' needs a string, number or boolean value"})
    if len(errors) > n_before:
        return None
    return Condition(fname, op, True if op == "exists" and value is None else value)


def validate_rule(doc: Any) -> Rule:
    """Check a rule document and compile it; raises RuleError listing every problem."""
    errors: list[dict[str, Any]] = []
    if not isinstance(doc, dict):
        raise RuleError([{"loc": [], "msg": "a rule must be a JSON object"}])
    known = {"id", "name", "description", "priority", "enabled", "channels", "conditions", "content", "variant"}
    for k in sorted(set(doc) - known):
        errors.append({"loc": [k], "msg": f"unknown key; known: {sorted(known)}"})
    rid = doc.get("id")
    if not isinstance(rid, str) or not ID_RE.match(rid):
        errors.append({"loc": ["id"], "msg": "id is required: 1-64 of letters, digits, '_', '.', '-'"})
    priority = doc.get("priority", 0)
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > 1_000_000:
        errors.append({"loc": ["priority"], "msg": "priority must be an integer in [-1e6, 1e6]"})
    enabled = doc.get("enabled", True)
    if not isinstance(enabled, bool):
        errors.append({"loc": ["enabled"], "msg": "enabled must be true or false"})
    channels = doc.get("channels", list(CHANNELS))
    if not isinstance(channels, list) or not channels or any(c not in CHANNELS for c in channels):
        errors.append({"loc": ["channels"], "msg": f"channels must be a non-empty list of {list(CHANNELS)}"})
    variant = doc.get("variant")
    if variant is not None and (not isinstance(variant, str) or not 0 < len(variant) <= 128):
        errors.append({"loc": ["variant"], "msg": "variant must be a string of 1-128 characters"})
    if doc.get("content") is None and variant is None:
        errors.append({"loc": ["content"], "msg": "a rule needs content, a variant, or both"})
    conditions = None
    if doc.get("conditions") is not None:
        conditions = parse_condition(doc["conditions"], ["conditions"], errors, 1, [0])
    if errors:
        raise RuleError(errors)
    return Rule(id=rid, priority=priority, enabled=enabled, channels=frozenset(channels), conditions=conditions,
                content=doc.get("content"), variant=variant, doc=doc)


# ---------------------------------------------------------------------------------------------
# evaluation


def _number(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return None
    return None


def _equal(actual: Any, expected: Any) -> bool:
    if isinstance(expected, bool) or isinstance(actual, bool):
        if isinstance(actual, str):
            return actual.lower() == str(expected).lower()
        return actual == expected
    if isinstance(expected, int | float):
        a = _number(actual)
        return a is not None and a == float(expected)
    return str(actual) == expected


def _order(actual: Any, op: str, expected: Any) -> bool:
    if isinstance(expected, str) and isinstance(actual, str):
        a, b = actual, expected  # ISO dates compare as strings
    else:
        a, b = _number(actual), _number(expected)  # type: ignore[assignment]
        if a is None or b is None:
            return False
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]


def check(cond: Condition, profile: Mapping[str, Any], segments: frozenset[str] | set[str],
          context: Mapping[str, Any]) -> bool:
    """Whether one condition holds."""
    op, expected = cond.op, cond.value
    if cond.field == "segments":
        if op == "contains":
            return expected in segments
        overlap = any(str(v) in segments for v in expected)
        return overlap if op == "in" else not overlap
    actual = context.get(cond.field[8:]) if cond.field.startswith("context.") else profile.get(cond.field[8:])
    if op == "exists":
        return (actual is not None and actual != "") == expected
    if actual is None:
        return op in ("not_equals", "not_in")
    if op == "equals":
        return _equal(actual, expected)
    if op == "not_equals":
        return not _equal(actual, expected)
    if op in ("in", "not_in"):
        values = actual if isinstance(actual, list | tuple | set | frozenset | dict) else [actual]
        hit = any(_equal(a, e) for a in values for e in expected)
        return hit if op == "in" else not hit
    if op in ORDER_OPS:
        return _order(actual, op, expected)
    # contains
    if isinstance(actual, str):
        return str(expected) in actual
    if isinstance(actual, list | tuple | set | frozenset | dict):  # a dict: its keys (e.g. categories)
        return any(_equal(a, expected) for a in actual)
    return False


def holds(node: Condition | Group | None, profile: Mapping[str, Any], segments: frozenset[str] | set[str],
          context: Mapping[str, Any]) -> bool:
    """Whether a condition tree holds (None: always)."""
    if node is None:
        return True
    if isinstance(node, Condition):
        return check(node, profile, segments, context)
    if node.kind == "all":
        return all(holds(c, profile, segments, context) for c in node.children)
    if node.kind == "any":
        return any(holds(c, profile, segments, context) for c in node.children)
    return not holds(node.children[0], profile, segments, context)


def with_time(context: Mapping[str, Any], now_ms: int) -> dict[str, Any]:
    """The context with ``time`` defaulted to now and ``hour``, ``weekday``, ``date`` derived (UTC)."""
    ctx = {k: v for k, v in context.items() if v is not None}
    t = _number(ctx.get("time"))
    t = now_ms if t is None else t
    dt = datetime.fromtimestamp(t / 1000, tz=UTC)
    ctx["time"] = int(t)
    ctx.setdefault("hour", dt.hour)
    ctx.setdefault("weekday", dt.weekday())
    ctx.setdefault("date", dt.strftime("%Y-%m-%d"))
    return ctx


def ordered(rules: Iterable[Rule]) -> list[Rule]:
    """Rules in evaluation order: priority descending, then id."""
    return sorted(rules, key=lambda r: (-r.priority, r.id))


def evaluate(rules: list[Rule], channel: str, profile: Mapping[str, Any], segments: frozenset[str] | set[str],
             context: Mapping[str, Any], *, first_only: bool = True) -> list[Match]:
    """Matching rules for a user in a context, best first (``rules`` must be ``ordered``).

    ``context`` should have passed through ``with_time``. With ``first_only`` the list holds at
    most the winning rule.
    """
    ctx = dict(context)
    ctx.setdefault("channel", channel)
    out: list[Match] = []
    for r in rules:
        if not r.enabled or channel not in r.channels:
            continue
        if holds(r.conditions, profile, segments, ctx):
            out.append(Match(r.id, r.priority, r.content, r.variant))
            if first_only:
                break
    return out


def segments_in(node: Condition | Group | None) -> set[str]:
    """Segment names a condition tree tests."""
    if isinstance(node, Group):
        return set().union(*(segments_in(c) for c in node.children))
    if isinstance(node, Condition) and node.field == "segments":
        return {node.value} if isinstance(node.value, str) else set(map(str, node.value))
    return set()


def referenced_segments(rules: Iterable[Rule]) -> set[str]:
    """Segment names any rule tests (the serving layer checks only these memberships)."""
    return set().union(*(segments_in(r.conditions) for r in rules))


def _json_value(v: str) -> Any:
    """A stored identity value: JSON (what the identity agent writes), else the text itself."""
    try:
        return json.loads(v)
    except ValueError:
        return v


def profile_fields(*hashes: Mapping[str, str]) -> dict[str, Any]:
    """Merge profile hashes (later ones win) into rule fields: numbers parsed; identity attributes and
    preferences (``x:``/``p:``, stored as JSON by streams/identity.py) decoded to their types (a string
    attribute compares as the string, not its JSON quoting) and also exposed without the prefix."""
    out: dict[str, Any] = {}
    for h in hashes:
        for k, v in h.items():
            if k.startswith("_"):
                continue
            if k[:2] in ("x:", "p:") and isinstance(v, str):
                value: Any = _json_value(v)
            else:
                num = _number(v)
                value = num if num is not None and not isinstance(v, bool) else v
            out[k] = value
            if k[:2] in ("x:", "p:"):
                out.setdefault(k[2:], value)
    return out
