"""The compact per-item filter record: what the API's filters and diversity need of an item
(availability, price, categories) in one short string, kept by the catalog agent in ONE shared hash
(``RedisKeys.recs_item_filters``: item -> record), so a request reads a few hundred candidates'
attributes with a single HMGET instead of one HMGET per item.

Owner of the state: streams/catalog.py (written in the same pipeline as the item's ``meta`` hash;
backfilled with HSETNX when the content model is rebuilt). Pure and without faust, so serving imports it.

Record: ``"<available 0|1>|<price or empty>|<category>\\x1f<category>..."``; ``"-"`` marks a deleted item.
Categories may contain ``|`` (the record is split at the first two only); ``\\x1f`` (unit separator) is
dropped from category names.
"""

from __future__ import annotations

from typing import Any

DELETED = "-"
SEP = "\x1f"


def encode(item: dict[str, Any]) -> str:
    """A catalog item document (``item`` of an upsert) -> its filter record."""
    stock = item.get("stock")
    available = bool(item.get("available", True)) and (stock is None or stock > 0)
    price = item.get("price")
    cats = SEP.join(str(c).replace(SEP, "") for c in (item.get("categories") or []))
    return f"{int(available)}|{'' if price is None else repr(float(price))}|{cats}"


def decode(raw: str | None) -> dict[str, Any] | None:
    """A record -> ``{"available", "price", "categories"}``; ``None`` when the item is not in the catalog;
    ``{"deleted": True, ...}`` for a deleted item (never shown)."""
    if raw is None:
        return None
    if raw == DELETED:
        return {"deleted": True, "available": False, "price": None, "categories": []}
    available, price, cats = raw.split("|", 2)
    return {"available": available == "1", "price": float(price) if price else None,
            "categories": cats.split(SEP) if cats else []}
