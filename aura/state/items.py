"""Catalog items as both sides read them: the ``recs_item_meta`` hash and its rules.

The catalog agent (streams/catalog.py) writes one flat hash per item (``meta_fields``) and the
``catalog_items`` rows; the content routes and the content model rebuild read the hash back as an item
document (``parse_meta``). ``latest`` is the state's ordering rule: per item the newest change wins,
so replays and reordering are harmless.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from schemas.events import CatalogChange

DELETED = "deleted"  # field set to "1" on a deleted item's hash (with its event_time)
EVENT_TIME = "event_time"


def meta_fields(change_item: dict[str, Any], event_time: int) -> dict[str, str]:
    """A catalog item -> the flat Redis hash the API and the agents read."""
    item = change_item
    stock = item.get("stock")
    return {
        "title": item.get("title") or "",
        "categories": json.dumps(list(item.get("categories") or [])),
        "tags": json.dumps(list(item.get("tags") or [])),
        "brand": item.get("brand") or "",
        "price": "" if item.get("price") is None else repr(float(item["price"])),
        "stock": "" if stock is None else str(int(stock)),
        "available": "1" if item.get("available", True) and (stock is None or stock > 0) else "0",
        "text": (item.get("text") or "")[:5000],
        "metadata": json.dumps(dict(item.get("metadata") or {})),
        "event_time": str(event_time),
    }


def deleted_fields(event_time: int) -> dict[str, str]:
    """The hash of a deleted item: a tombstone with the time of the delete."""
    return {DELETED: "1", EVENT_TIME: str(event_time)}


def is_deleted(raw: dict[str, str]) -> bool:
    return raw.get(DELETED) == "1"


def parse_meta(raw: dict[str, str]) -> dict[str, Any]:
    """The Redis hash -> the item document (API responses, content model input)."""
    return {
        "title": raw.get("title", ""),
        "categories": json.loads(raw.get("categories") or "[]"),
        "tags": json.loads(raw.get("tags") or "[]"),
        "brand": raw.get("brand") or None,
        "price": float(raw["price"]) if raw.get("price") else None,
        "stock": int(raw["stock"]) if raw.get("stock") else None,
        "available": raw.get("available", "1") == "1",
        "text": raw.get("text") or None,
        "metadata": json.loads(raw.get("metadata") or "{}"),
        "event_time": int(raw["event_time"]) if raw.get("event_time") else None,
    }


def latest(changes: Iterable[CatalogChange], stored_times: dict[str, int | None]) -> dict[str, CatalogChange]:
    """Per item, the newest change of the batch that is newer than what is stored (pure)."""
    out: dict[str, CatalogChange] = {}
    for ch in changes:
        cur = out.get(ch.item_id)
        if cur is None or ch.event_time >= cur.event_time:
            out[ch.item_id] = ch
    return {i: ch for i, ch in out.items() if stored_times.get(i) is None or ch.event_time >= stored_times[i]}


def matches(doc: dict[str, Any], category: str | None = None, tag: str | None = None, q: str | None = None,
            available_only: bool = False) -> bool:
    """Whether an item document (``parse_meta``) passes a content search: in ``category``, tagged
    ``tag``, every word of ``q`` in its title, text, tags or categories (case-insensitive)."""
    if category is not None and category not in doc["categories"]:
        return False
    if tag is not None and tag not in doc["tags"]:
        return False
    if available_only and not doc["available"]:
        return False
    if q:
        hay = " ".join([doc["title"], doc.get("text") or "", *doc["tags"], *doc["categories"]]).casefold()
        return all(word in hay for word in q.casefold().split())
    return True
