"""The catalog's item state as both sides read it: the compact per-item filter record.

The filter record holds what the ranking's filters and diversity need of an item (availability, price,
categories) in one short string, kept by the catalog agent (streams/catalog.py) in ONE shared hash
(``RedisKeys.recs_item_filters``: item -> record), so a request reads a few hundred candidates'
attributes with a single HMGET instead of one HMGET per item.
"""

from __future__ import annotations

from typing import Any

# ---------------------------------------------------------------------- item filter records
#
# Record: ``"<available 0|1>|<price or empty>|<category>\x1f<category>...[\x1e<brand>]"``; ``"-"`` marks a
# deleted item. Categories may contain ``|`` (the record is split at the first two only); ``\x1f`` (unit
# separator) and ``\x1e`` (record separator, before the brand when the item has one) are dropped from
# category and brand names. Records written before brands were kept have none (parsed: no ``brand``).
# Written with the item's ``meta`` hash, in the same pipeline, and backfilled with HSETNX when the
# content model is rebuilt (streams/catalog.py).

FILTER_DELETED = "-"
FILTER_SEP = "\x1f"
BRAND_SEP = "\x1e"


def _clean(name: Any) -> str:
    return str(name).replace(FILTER_SEP, "").replace(BRAND_SEP, "")


def filter_record(item: dict[str, Any]) -> str:
    """A catalog item document (``item`` of an upsert) -> its filter record."""
    stock = item.get("stock")
    available = bool(item.get("available", True)) and (stock is None or stock > 0)
    price = item.get("price")
    cats = FILTER_SEP.join(_clean(c) for c in (item.get("categories") or []))
    brand = item.get("brand")
    tail = f"{BRAND_SEP}{_clean(brand)}" if brand else ""
    return f"{int(available)}|{'' if price is None else repr(float(price))}|{cats}{tail}"


def parse_filter_record(raw: str | None) -> dict[str, Any] | None:
    """A record -> ``{"available", "price", "categories"}`` (and ``"brand"`` when it has one); ``None`` when
    the item is not in the catalog; ``{"deleted": True, ...}`` for a deleted item (never shown)."""
    if raw is None:
        return None
    if raw == FILTER_DELETED:
        return {"deleted": True, "available": False, "price": None, "categories": []}
    available, price, cats = raw.split("|", 2)
    brand = None
    if BRAND_SEP in cats:
        cats, brand = cats.split(BRAND_SEP, 1)
    out = {"available": available == "1", "price": float(price) if price else None,
           "categories": cats.split(FILTER_SEP) if cats else []}
    if brand:
        out["brand"] = brand
    return out
