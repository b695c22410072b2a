"""Rule-defined segments (``vip``, ``buyer``, ...): the rule grammar and its evaluation, pure.

A segment is a list of conditions ``[field, op, value]`` that must all hold over the profile fields
of ``aura.state.profiles.segment_view`` (ltv, orders, sessions, stage, engagement, count.<action>,
affinity.<dim>). Rules come from settings (``AURA_SEGMENT_RULES``, JSON). The profile fold evaluates
them (streams/profiles.py), the member sets are kept by streams/segments.py, and the API lists the
rules (serving/routes/profiles.py): all three read the grammar here. A bad rule raises the one
``RuleError`` of the personalization rules.
"""

from __future__ import annotations

import json
import operator
from collections.abc import Callable
from typing import Any

from aura.state.rules import RuleError

__all__ = ["OPS", "RuleError", "Rules", "evaluate", "matches", "parse_rules"]

Rules = dict[str, list[list[Any]]]

OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le, "==": operator.eq,
    "!=": operator.ne, "in": lambda a, b: a in b,
}
SETTING = "segment_rules"  # where the rules come from (the ``loc`` of a RuleError)


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
