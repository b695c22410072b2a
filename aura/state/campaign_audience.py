"""Who is in a campaign's audience, and how large the audience is.

Pure functions over plain data, shared by the worker and the API so that "is this user in the
audience" has one implementation:

- ``in_audience`` decides one user: ``everyone`` (always), ``users`` (the id is on the list),
  ``segment`` (the caller read the segment's member set), ``rule`` (the condition tree of
  aura/state/rules.py evaluated on the user's stored profile and identity attributes, with the
  profile's segments). The drainer (streams/campaign_drain.py) asks it for each due message; the
  audience estimate (serving/routes/campaigns.py ``GET /campaigns/{id}/audience``) for each user it
  scans.
- ``Population`` names the users an ``everyone`` or ``rule`` audience is drawn from: every user with
  a stored profile (``user_state``) or identity attributes (``user_attrs``), found by SCAN over the
  process's key prefix. The scheduler's audience expansion (streams/campaign_schedule.py) and the
  estimate scan the same population.
- ``estimate`` turns what a scan saw (users scanned, users matched, whether the scan covered the
  whole population) into the estimate's answer: exact counts, or the matched share of the scanned
  users with a 95% Wilson interval (aura/state/experiments.py ``wilson_interval``). SCAN visits
  keys in hash-table order, which is unrelated to who the users are, so the scanned users are
  treated as a random sample of the population; no total is extrapolated, since Redis holds no
  count of the population that a SCAN does not make (DBSIZE counts every kind of key).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from aura.keys import RedisKeys, glob_escape
from aura.state import profile_codec
from aura.state.campaigns import Audience
from aura.state.experiments import wilson_interval
from aura.state.profiles import Profile
from aura.state.rules import Condition, Group, holds, profile_fields

_USER = "\x00"  # stands for the user id in a key built by RedisKeys, to derive the key's pattern


def in_audience(a: Audience, user_id: str, profile: Profile | None, attrs: Mapping[str, str], *,
                segment_member: bool = False) -> bool:
    """Whether ``user_id`` is in the audience ``a``. ``profile``: the user's stored profile (None when
    there is none); ``attrs``: the raw identity attributes hash (``RedisKeys.user_attrs``);
    ``segment_member``: whether the user is in the audience's segment (read only for a segment
    audience). A rule sees the profile's rule fields (aura/state/profile_codec.py ``rule_fields``)
    overlaid by the attributes, and the profile's segments; it gets no request context."""
    if a.kind == "everyone":
        return True
    if a.kind == "users":
        return user_id in a.users
    if a.kind == "segment":
        return segment_member
    names = _profile_names(a.rule)
    if profile is None:
        return holds(a.rule, profile_fields(_only(attrs, names)), frozenset(), {})
    fields = profile_fields(_only(profile_codec.rule_fields(profile), names), _only(attrs, names))
    return holds(a.rule, fields, set(profile.segments), {})


def _profile_names(node: Condition | Group | None) -> set[str]:
    """The ``profile.<name>`` fields a condition tree reads."""
    if isinstance(node, Group):
        return set().union(*(_profile_names(c) for c in node.children))
    if isinstance(node, Condition) and node.field.startswith("profile."):
        return {node.field[8:]}
    return set()


def _only(h: Mapping[str, str], names: set[str]) -> dict[str, str]:
    """The entries of a profile hash that can give a field in ``names`` its value (the field itself, or
    the identity attribute or preference ``x:``/``p:`` that ``profile_fields`` exposes under it), in
    their order: the rule sees the same values as over the whole hash, and the rest is not parsed."""
    return {k: v for k, v in h.items() if k in names or (k[:2] in ("x:", "p:") and k[2:] in names)}


class Population:
    """The users an ``everyone`` or ``rule`` audience is drawn from: key names -> user ids."""

    def __init__(self, keys: RedisKeys) -> None:
        # ``<prefix>:u:{id}`` and ``<prefix>:user:{id}:attrs`` both start with ``<prefix>:u``
        self.pattern = glob_escape(keys.prefix) + ":u*"
        self._res = [re.compile("^" + re.escape(k).replace(_USER, "(.+)") + "$")
                     for k in (keys.user_state(_USER), keys.user_attrs(_USER))]

    def user(self, key: str) -> str | None:
        """The user whose profile or attributes ``key`` holds; None for any other key."""
        found = self.owner(key)
        return found[0] if found else None

    def owner(self, key: str) -> tuple[str, bool] | None:
        """(user, whether ``key`` is the user's profile rather than their attributes); None for any
        other key. A scan that must name each user once takes a user from their profile key, and from
        their attributes key only when they have no profile."""
        for i, r in enumerate(self._res):
            m = r.match(key)
            if m:
                return m.group(1), i == 0
        return None


def estimate(matched: int, scanned: int, complete: bool) -> dict[str, Any]:
    """The estimate's figures: ``size`` (users matched), ``scanned``, ``exact`` (the scan covered every
    user of the population), ``share`` (matched / scanned) and its 95% Wilson interval
    (``share_low``, ``share_high``; the share itself when exact)."""
    share = matched / scanned if scanned else 0.0
    if complete:
        low = high = share
    else:
        low, high = wilson_interval(matched, scanned)
    return {"size": matched, "scanned": scanned, "exact": complete, "share": share, "share_low": low,
            "share_high": high}
