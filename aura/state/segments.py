"""Rule-defined segments (``vip``, ``buyer``, ...): the rule grammar and its evaluation, pure.

A segment is a list of conditions ``[field, op, value]`` that must all hold over the profile fields
of ``aura.state.profiles.segment_view`` (ltv, orders, sessions, stage, engagement, count.<action>,
affinity.<dim>) and the user's identity attributes (``attr.<name>``: the JSON values of the
``user_attrs`` hash, decoded, compared by type: see ``same``).
Rules come from settings (``AURA_SEGMENT_RULES``, JSON: the built-in segments) and
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
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aura.state.rules import RuleError

__all__ = ["ATTR_PREFIX", "CONFIG_KIND", "OPS", "RuleError", "Rules", "attribute_names", "attributes_view",
           "effective", "evaluate", "matches", "parse_rules", "same", "uses_attributes", "validate_segment"]

Rules = dict[str, list[list[Any]]]



def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def same(a: Any, b: Any) -> bool:
    """Typed equality: numbers as numbers (1 == 1.0), booleans only with booleans (True is not 1),
    strings only with strings ("1" is not 1), lists element by element."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _num(a) and _num(b):
        return bool(a == b)
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return False


def _ordered(cmp: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    """An ordering over two numbers or two strings (ISO dates order as strings); other pairs fail."""
    return lambda a, b: bool(cmp(a, b)) if (_num(a) and _num(b)) or (isinstance(a, str) and isinstance(b, str)) \
        else False


def _in(a: Any, b: Any) -> bool:
    """The value is one of ``b``; a list value: any of its elements is."""
    return any(same(x, v) for x in (a if isinstance(a, list) else [a]) for v in b)


def _contains(a: Any, b: Any) -> bool:
    """A list value holds ``b``; a string value contains the string ``b``."""
    if isinstance(a, list):
        return any(same(x, b) for x in a)
    return isinstance(a, str) and isinstance(b, str) and b in a


OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": _ordered(operator.gt), ">=": _ordered(operator.ge), "<": _ordered(operator.lt),
    "<=": _ordered(operator.le), "==": same, "!=": lambda a, b: not same(a, b), "in": _in,
    "not_in": lambda a, b: not _in(a, b), "contains": _contains,
    "exists": lambda a, b: True, "missing": lambda a, b: False,  # decided on presence in ``matches``
}
# the personalization rules' operator names, accepted in segment definitions and stored as the above
ALIASES = {"equals": "==", "not_equals": "!=", "gt": ">", "gte": ">=", "lt": "<", "lte": "<="}
SETTING = "segment_rules"  # where the rules come from (the ``loc`` of a RuleError)
CONFIG_KIND = "segments"  # the config cache kind of stored definitions (aura/configcache.py)
NAME_MAX, CONDITIONS_MAX = 64, 50
FIELD_PREFIXES = ("count.", "affinity.")
FIELDS = frozenset({"ltv", "orders", "sessions", "stage", "engagement"})
ATTR_PREFIX = "attr."  # an identity attribute: ``attr.<name>`` (the hash field ``x:<name>``)
ATTR_NAME_MAX = 128  # as the identity events' attribute keys (schemas/events.py)
ATTR_OPS = frozenset({"contains", "exists", "missing"})  # only over identity attributes
PRESENCE_OPS = frozenset({"exists", "missing"})  # take no value (stored as null)
_ABSENT = object()


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
    """Whether every condition holds for ``view`` (a missing count/affinity is 0; a missing attribute
    or other field fails every condition but ``missing``, and ``exists`` holds for any present value;
    a value of another type than the rule's fails, except for ``!=`` and ``not_in``)."""
    for fld, op, value in conds:
        actual = view.get(fld, 0 if fld.startswith(("count.", "affinity.")) else _ABSENT)
        if op in PRESENCE_OPS:
            if (actual is _ABSENT or actual is None) != (op == "missing"):
                return False
            continue
        if actual is _ABSENT or actual is None:
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


def uses_attributes(rules: Rules) -> bool:
    """Whether any rule tests an identity attribute (only then are the attributes read)."""
    return any(c[0].startswith(ATTR_PREFIX) for conds in rules.values() for c in conds)


def attribute_names(rules: Rules) -> list[str]:
    """The identity attributes the rules test, sorted (the fields to read: ``x:<name>``)."""
    return sorted({c[0][len(ATTR_PREFIX):] for conds in rules.values() for c in conds
                   if c[0].startswith(ATTR_PREFIX)})


def attributes_view(names: Iterable[str], stored: Iterable[str | None]) -> dict[str, Any]:
    """The attributes ``names`` as read (``HMGET`` of ``x:<name>``: JSON text or None) -> name ->
    decoded value; absent ones are left out, and a value that is not JSON counts as its text."""
    out: dict[str, Any] = {}
    for name, raw in zip(names, stored, strict=True):
        if raw is None:
            continue
        try:
            out[name] = json.loads(raw)
        except (ValueError, TypeError):
            out[name] = raw
    return out


def with_attributes(view: dict[str, Any], attrs: Mapping[str, Any] | None) -> dict[str, Any]:
    """``view`` with the identity attributes added as ``attr.<name>``."""
    if attrs:
        view.update({ATTR_PREFIX + k: v for k, v in attrs.items()})
    return view


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
        if isinstance(c, list) and len(c) == 2 and c[1] in PRESENCE_OPS:
            c = [*c, None]
        if not (isinstance(c, list) and len(c) == 3):
            raise RuleError([{"loc": ["conditions", i], "msg": "[field, op, value] or {field, op, value}"}])
        fld, op, value = c
        op = ALIASES.get(op, op) if isinstance(op, str) else op
        attr = isinstance(fld, str) and fld.startswith(ATTR_PREFIX)
        if not (isinstance(fld, str) and (fld in FIELDS or (fld.startswith(FIELD_PREFIXES) and len(fld) <= 200)
                                          or (attr and 0 < len(fld) - len(ATTR_PREFIX) <= ATTR_NAME_MAX))):
            raise RuleError([{"loc": ["conditions", i, "field"],
                              "msg": f"one of {sorted(FIELDS)} or count.<action>, affinity.<dimension>, "
                                     f"attr.<identity attribute of 1..{ATTR_NAME_MAX} characters>"}])
        if not isinstance(op, str) or op not in OPS:
            raise RuleError([{"loc": ["conditions", i, "op"], "msg": f"one of {sorted(OPS)} or {sorted(ALIASES)}"}])
        if op in ATTR_OPS and not attr:
            raise RuleError([{"loc": ["conditions", i, "op"],
                              "msg": f"{op} applies to identity attributes (attr.<name>) only"}])
        if op in PRESENCE_OPS:
            ok = value is None or value is True
            value = None
        elif op in ("in", "not_in"):
            ok = isinstance(value, list) and len(value) <= 200 and all(_scalar(v) for v in value)
        elif op in (">", ">=", "<", "<="):
            ok = _number(value) or ((fld == "stage" or attr) and isinstance(value, str) and len(value) <= 200)
        else:
            ok = _scalar(value)
        if not ok:
            raise RuleError([{"loc": ["conditions", i, "value"],
                              "msg": f"not a valid value for {op} on {fld}: "
                                     f"{_EXPECTED.get(op, 'a number, boolean or string')}"}])
        out.append([fld, op, value])
    description = doc.get("description")
    if description is not None and not (isinstance(description, str) and len(description) <= 1000):
        raise RuleError([{"loc": ["description"], "msg": "a string of at most 1000 characters"}])
    return {"id": name, "conditions": out, **({"description": description} if description else {})}


_EXPECTED = {"in": "a list of at most 200 numbers, booleans or strings", "not_in": "a list of at most 200 numbers, "
             "booleans or strings", "exists": "no value (or true)", "missing": "no value (or true)",
             ">": "a number (a string on stage or an attribute)", ">=": "a number (a string on stage or an attribute)",
             "<": "a number (a string on stage or an attribute)", "<=": "a number (a string on stage or an attribute)"}


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
