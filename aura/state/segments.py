"""Rule-defined segments (``vip``, ``buyer``, ...): the rule grammar and its evaluation, pure.

A segment is a list of conditions ``[field, op, value]`` that must all hold over the profile fields
of ``aura.state.profiles.segment_view`` (ltv, orders, sessions, stage, engagement, count.<action>,
affinity.<dim>). Rules come from settings (``AURA_SEGMENT_RULES``, JSON: the built-in segments) and
from segment definitions stored through the API (Cassandra ``segments``, read through the config
cache, kind ``segments``; ``effective`` overlays them). The profile fold evaluates them
(streams/profiles.py), the member sets are kept by streams/segments.py, and the API manages and
lists them (serving/routes/segments.py): all read the grammar here. A bad rule raises the one
``RuleError`` of the personalization rules.
"""

from __future__ import annotations

import json
import math
import operator
from collections.abc import Callable
from typing import Any

from aura.state.rules import RuleError

__all__ = ["CONFIG_KIND", "OPS", "RuleError", "Rules", "effective", "evaluate", "matches", "parse_rules",
           "validate_segment"]

Rules = dict[str, list[list[Any]]]

OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
    "!=": operator.ne, "in": lambda a, b: a in b, "not_in": lambda a, b: a not in b,
}
# the personalization rules' operator names, accepted in segment definitions and stored as the above
ALIASES = {"equals": "==", "not_equals": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
SETTING = "segment_rules"  # where the rules come from (the ``loc`` of a RuleError)
CONFIG_KIND = "segments"  # the config cache kind of stored definitions (aura/configcache.py)
NAME_MAX, CONDITIONS_MAX = 64, 50
FIELD_PREFIXES = ("count.", "affinity.")
FIELDS = frozenset({"ltv", "orders", "sessions", "stage", "engagement"})


def _refused(msg: str, *loc: Any) -> RuleError:
    return RuleError([{"loc": [SETTING, *loc], "msg": msg}])


def parse_rules(text: str) -> Rules:
    """Parse and check the JSON rules; raises RuleError on a bad rule."""
    try:
        rules = json.loads(text) if text else {}
    except json.JSONDecodeError as exc:
        raise _refused(f"segment rules are not JSON: {exc}") from exc
    if not isinstance(rules, dict):
        raise _refused("segment rules must be an object: name -> [[field, op, value], ...]")
    for name, conds in rules.items():
        if not isinstance(name, str) or not name or not isinstance(conds, list) or not conds:
            raise _refused("needs a non-empty list of conditions", name)
        for c in conds:
            if not (isinstance(c, list) and len(c) == 3 and isinstance(c[0], str) and c[1] in OPS):
                raise _refused(f"bad condition {c!r} (ops: {sorted(OPS)})", name)
    return rules


def matches(conds: list[list[Any]], view: dict[str, Any]) -> bool:
    """Whether every condition holds for ``view`` (a missing count/affinity is 0, any other missing
    field fails the condition, as does a value of the wrong type)."""
    for fld, op, value in conds:
        actual = view.get(fld, 0 if fld.startswith(("count.", "affinity.")) else None)
        if actual is None:
            return False
        try:
            if not OPS[op](actual, value):
                return False
        except TypeError:
            return False
    return True


def evaluate(rules: Rules, view: dict[str, Any]) -> list[str]:
    """The sorted names of the segments whose conditions all hold for ``view``."""
    return sorted(name for name, conds in rules.items() if matches(conds, view))


def validate_segment(doc: Any) -> dict[str, Any]:
    """A segment definition ``{"id", "conditions": [[field, op, value], ...] or [{"field", "op",
    "value"}, ...], "description"?}`` checked and normalised (operator aliases resolved, fields known,
    values typed for their operator); raises RuleError with the offending place."""
    if not isinstance(doc, dict):
        raise RuleError([{"loc": [], "msg": "a segment must be a JSON object"}])
    unknown = set(doc) - {"id", "conditions", "description"}
    if unknown:
        raise RuleError([{"loc": [sorted(unknown)[0]], "msg": "unknown field"}])
    name = doc.get("id")
    if not (isinstance(name, str) and 0 < len(name) <= NAME_MAX and name.replace("_", "").replace("-", "").isalnum()
            and name.isascii()):
        raise RuleError([{"loc": ["id"], "msg": f"1..{NAME_MAX} ASCII letters, digits, _ or -"}])
    conds = doc.get("conditions")
    if not isinstance(conds, list) or not 0 < len(conds) <= CONDITIONS_MAX:
        raise RuleError([{"loc": ["conditions"], "msg": f"1..{CONDITIONS_MAX} conditions"}])
    out: list[list[Any]] = []
    for i, c in enumerate(conds):
        if isinstance(c, dict) and set(c) <= {"field", "op", "value"}:
            c = [c.get("field"), c.get("op"), c.get("value")]
        if not (isinstance(c, list) and len(c) == 3):
            raise RuleError([{"loc": ["conditions", i], "msg": "[field, op, value] or {field, op, value}"}])
        fld, op, value = c
        op = ALIASES.get(op, op) if isinstance(op, str) else op
        if not (isinstance(fld, str) and (fld in FIELDS or (fld.startswith(FIELD_PREFIXES) and len(fld) <= 200))):
            raise RuleError([{"loc": ["conditions", i, "field"],
                              "msg": f"one of {sorted(FIELDS)} or count.<action>, affinity.<dimension>"}])
        if not isinstance(op, str) or op not in OPS:
            raise RuleError([{"loc": ["conditions", i, "op"], "msg": f"one of {sorted(OPS)} or {sorted(ALIASES)}"}])
        if op in ("in", "not_in"):
            ok = isinstance(value, list) and len(value) <= 200 and all(_scalar(v) for v in value)
        elif op in (">", ">=", "<", "<="):
            ok = _number(value) or (fld == "stage" and isinstance(value, str) and len(value) <= 200)
        else:
            ok = _scalar(value)
        if not ok:
            raise RuleError([{"loc": ["conditions", i, "value"], "msg": f"not a valid value for {op}"}])
        out.append([fld, op, value])
    description = doc.get("description")
    if description is not None and not (isinstance(description, str) and len(description) <= 1000):
        raise RuleError([{"loc": ["description"], "msg": "a string of at most 1000 characters"}])
    return {"id": name, "conditions": out, **({"description": description} if description else {})}


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _scalar(v: Any) -> bool:
    return _number(v) or isinstance(v, bool) or (isinstance(v, str) and len(v) <= 200)


def effective(base: Rules, stored: dict[str, dict[str, Any]]) -> Rules:
    """The rules in force: the settings' built-in segments, overlaid by the stored definitions."""
    return {**base, **{name: doc["conditions"] for name, doc in stored.items()}}


# ------------------------------------------------------------------ membership counts over time

HOUR_MS = 3_600_000
GRAINS = {"hour": HOUR_MS, "day": 24 * HOUR_MS}


def hour_of(now_ms: int) -> int:
    """The hour bucket (epoch ms) a membership change made at ``now_ms`` counts in."""
    return now_ms - now_ms % HOUR_MS


def history(raw: dict[str, str], grain: str, start: int, end: int) -> list[dict[str, int]]:
    """The ``segment_history`` hash -> buckets of ``grain`` within [start, end), oldest first: joined
    and left summed over the bucket's hours, ``members`` as after the bucket's last change (carried
    forward through buckets without changes; None before the first). Buckets without a change are
    listed once members are known, so a chart has no holes."""
    step = GRAINS[grain]
    hours: dict[int, dict[str, int]] = {}
    for f, v in raw.items():
        h, _, kind = f.partition(":")
        if kind in ("j", "l", "n") and h.isdigit():
            hours.setdefault(int(h), {})[kind] = int(v)
    members: int | None = None
    for h in sorted(hours):  # the size before the window
        if h >= start - start % step:
            break
        members = hours[h].get("n", members)
    out = []
    first = start - start % step
    for b in range(first, end, step):
        j = l_ = 0
        changed = False
        for h in range(b, b + step, HOUR_MS):
            d = hours.get(h)
            if d:
                changed = True
                j += d.get("j", 0)
                l_ += d.get("l", 0)
                members = d.get("n", members)
        if changed or members is not None:
            out.append({"start": b, "joined": j, "left": l_, "members": members})
    return out
