"""The user's explicit preferences applied to a ranking request: what the identity hash
(``RedisKeys.user_attrs``, format in aura/state/profiles.py) says becomes filters.

- blocked items: never served (``exclude_ids``);
- a category weighed -1 ("never"): excluded (``exclude_categories``); other category weights and
  brand weights in [-1, 1]: score multipliers ``1 + strength * w`` (demoted below 0, promoted above);
- the price range: an item priced outside it is demoted (``outside_price``), items without a price
  are left alone: a soft filter, so a narrow range never empties a page.

Every recommender request of a known user goes through ``personalise`` with the hash fields read
in the request's own first round trip (the ranker's pipeline, or the pool script). Pure.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping

from aura.ranking.blend import Filters, Soft

# the identity hash fields the ranking reads (HMGET order of the pool script)
PREF_FIELDS = ("p:blocked_items", "p:categories", "p:brands", "p:price_range")
NEVER = -1.0  # a category weight that excludes


@dataclasses.dataclass(frozen=True)
class Parsed:
    blocked: frozenset[str]
    excluded: frozenset[str]
    soft: Soft | None


def _load(raw: str | None, default: object) -> object:
    if not raw:
        return default
    try:
        return json.loads(raw)
    except ValueError:
        return default


@functools.lru_cache(maxsize=4096)
def parse(blocked: str | None, categories: str | None, brands: str | None, price_range: str | None) -> Parsed:
    """The four stored fields (JSON, as streams/identity.py writes them) -> what the ranking applies.
    Cached: many requests of one user (and many users with the same preferences) parse once."""
    b = _load(blocked, [])
    cats = _load(categories, {})
    brs = _load(brands, {})
    band = _load(price_range, {})
    cats = cats if isinstance(cats, dict) else {}
    brs = brs if isinstance(brs, dict) else {}
    band = band if isinstance(band, dict) else {}
    excluded = frozenset(c for c, w in cats.items() if isinstance(w, int | float) and w <= NEVER)
    soft_cats = {c: float(w) for c, w in cats.items() if isinstance(w, int | float) and w > NEVER and w != 0}
    soft_brands = {c: float(w) for c, w in brs.items() if isinstance(w, int | float) and w != 0}
    lo, hi = (v if isinstance(v, int | float) and not isinstance(v, bool) else None
              for v in (band.get("min"), band.get("max")))
    soft = None
    if soft_cats or soft_brands or lo is not None or hi is not None:
        soft = Soft(categories=soft_cats, brands=soft_brands, min_price=lo, max_price=hi)
    return Parsed(blocked=frozenset(str(x) for x in b) if isinstance(b, list) else frozenset(),
                  excluded=excluded, soft=soft)


def of_hash(attrs: Mapping[str, str] | None) -> Parsed:
    """From the whole identity hash (HGETALL)."""
    attrs = attrs or {}
    return parse(*(attrs.get(f) for f in PREF_FIELDS))


def personalise(f: Filters, prefs: Parsed) -> Filters:
    """``f`` with the user's preferences added (the request's own filters are kept)."""
    if not (prefs.blocked or prefs.excluded or prefs.soft):
        return f
    return dataclasses.replace(f, exclude_ids=f.exclude_ids | prefs.blocked,
                               exclude_categories=f.exclude_categories | prefs.excluded,
                               soft=prefs.soft if prefs.soft is not None else f.soft)
