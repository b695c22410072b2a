"""A seeded synthetic storefront: catalog, users with latent tastes, and sessions that view, click,
add to cart and sometimes buy, with impressions that carry recommendation and experiment ids.

``Storefront.events`` is a pure, repeatable generator of behavior-event dicts; ``run`` produces them
to Kafka at a steady rate (the demo traffic of ``make run`` and the load of the benchmarks).
``configure`` first creates the configuration that traffic refers to (``DEMO_CONFIG``): the
experiment its impressions carry, a personalization rule, a managed segment, and a strategy bandit
for one placement, through the same versioned configuration stores the API writes
(aura/configcache.py), each created only when absent, so that every id in the demo's events exists.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from aura.configcache import ConfigCache
from aura.layout import RedisKeys, Tables

CATEGORIES = ("electronics", "books", "home", "fashion", "sports", "beauty", "toys", "grocery")
BRANDS = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell", "soylent")
PLACEMENTS = ("homepage", "product_page", "cart", "search_results", "email")
DEVICES = ("mobile", "desktop", "tablet")


@dataclass(frozen=True)
class Item:
    item_id: str
    category: str
    brand: str
    price: float


class Storefront:
    """A model of a shop's traffic; the same seed gives the same stream."""

    def __init__(self, seed: int = 7, n_users: int = 2000, n_items: int = 500, user_prefix: str = "u",
                 run_id: str = "") -> None:
        self.run_id = run_id  # prefixes event ids, so that two runs of one seed are not duplicates
        self.rng = np.random.default_rng(seed)
        rng = self.rng
        self.items = [
            Item(f"item-{i:05d}", CATEGORIES[rng.integers(len(CATEGORIES))], BRANDS[rng.integers(len(BRANDS))],
                 round(float(rng.lognormal(3.2, 0.8)), 2))
            for i in range(n_items)
        ]
        self.by_category: dict[str, list[int]] = {}
        for idx, it in enumerate(self.items):
            self.by_category.setdefault(it.category, []).append(idx)
        self.popularity = rng.zipf(1.6, n_items).astype(float)
        self.popularity /= self.popularity.sum()
        self.users = [f"{user_prefix}{i:06d}" for i in range(n_users)]
        # each user's taste: a distribution over categories
        self.taste = rng.dirichlet(np.full(len(CATEGORIES), 0.3), size=n_users)
        self.uuid_rng = np.random.default_rng(seed + 1)

    def _eid(self) -> str:
        return self.run_id + str(uuid.UUID(bytes=self.uuid_rng.bytes(16), version=4))

    def _token(self, n: int) -> str:
        return self.run_id + self.uuid_rng.bytes(16).hex()[:n]

    def _pick_item(self, user: int) -> Item:
        rng = self.rng
        if rng.random() < 0.3:
            return self.items[int(rng.choice(len(self.items), p=self.popularity))]
        cat = CATEGORIES[int(rng.choice(len(CATEGORIES), p=self.taste[user]))]
        pool = self.by_category.get(cat) or list(range(len(self.items)))
        return self.items[pool[int(rng.integers(len(pool)))]]

    def session(self, now_ms: int) -> list[dict[str, Any]]:
        """One user session: impressions, views, clicks, carts, maybe a purchase."""
        rng = self.rng
        # mostly uniform users, plus a head of regulars (u000000 is the most frequent visitor)
        n = len(self.users)
        u = min(int(rng.zipf(1.3)) - 1, n - 1) if rng.random() < 0.1 else int(rng.integers(n))
        user_id = self.users[u]
        ctx = {"session_id": self._token(8), "device": DEVICES[int(rng.integers(3))],
               "channel": "web", "locale": "en-US"}
        events: list[dict[str, Any]] = []
        t = now_ms
        cart: list[Item] = []
        for _ in range(int(rng.integers(1, 8))):
            placement = PLACEMENTS[int(rng.integers(len(PLACEMENTS)))]
            shown = [self._pick_item(u) for _ in range(6)]
            rec_id = f"rec-{self._token(12)}"
            exp = ("exp-homepage", "A" if rng.random() < 0.5 else "B") if placement == "homepage" else (None, None)
            events.append(self._event("impression", user_id, None, t, {**ctx, "placement": placement},
                                      items=[i.item_id for i in shown], recommendation_id=rec_id,
                                      experiment_id=exp[0], variant_id=exp[1]))
            t += int(rng.integers(200, 3000))
            item = shown[int(rng.integers(len(shown)))] if rng.random() < 0.35 else self._pick_item(u)
            clicked_rec = item in shown
            if clicked_rec:
                events.append(self._event("recommendation_click", user_id, item.item_id, t,
                                          {**ctx, "placement": placement}, recommendation_id=rec_id,
                                          experiment_id=exp[0], variant_id=exp[1]))
            events.append(self._event("view", user_id, item.item_id, t, {**ctx, "page": "product"}))
            t += int(rng.integers(500, 20000))
            if rng.random() < 0.12:
                cart.append(item)
                events.append(self._event("add_to_cart", user_id, item.item_id, t, {**ctx, "page": "product"}))
        if cart and rng.random() < 0.45:
            lines = [{"item_id": i.item_id, "quantity": int(rng.integers(1, 3)), "unit_price": i.price} for i in cart]
            events.append(self._event("purchase", user_id, cart[0].item_id, t + 1000, {**ctx, "page": "checkout"},
                                      order={"order_id": f"ord-{self._token(12)}", "currency": "USD",
                                             "lines": lines}))
        return events

    def _event(self, event_type: str, user_id: str, item_id: str | None, t: int, ctx: dict[str, Any],
               **extra: Any) -> dict[str, Any]:
        return {"event_id": self._eid(), "event_type": event_type, "user_id": user_id, "item_id": item_id,
                "event_time": t, "context": ctx, **{k: v for k, v in extra.items() if v is not None}}

    def events(self, start_ms: int | None = None) -> Iterator[dict[str, Any]]:
        """An endless stream of events; event times start at ``start_ms`` and advance."""
        now = start_ms if start_ms is not None else int(time.time() * 1000)
        while True:
            batch = self.session(now)
            yield from batch
            now += 50


def catalog_events(shop: Storefront, now_ms: int) -> Iterator[dict[str, Any]]:
    """Upserts of the shop's items for ``catalog.items`` (category, brand, price: what the profile
    affinities and the content model read)."""
    for it in shop.items:
        yield {"event_id": f"cat-{it.item_id}-{now_ms}", "event_type": "upsert", "item_id": it.item_id,
               "event_time": now_ms, "item": {"title": f"{it.brand} {it.category} {it.item_id[-5:]}",
                                              "categories": [it.category], "brand": it.brand, "price": it.price}}


def identity_events(shop: Storefront, now_ms: int, n: int = 50) -> Iterator[dict[str, Any]]:
    """``create`` events with a few attributes for the first ``n`` users."""
    for i, user in enumerate(shop.users[:n]):
        yield {"event_id": f"id-{user}-{now_ms}", "event_type": "create", "user_id": user, "event_time": now_ms,
               "attributes": {"country": ("US", "FR", "DE", "JP")[i % 4], "newsletter": i % 3 == 0}}


# The configuration the demo traffic uses: (config cache kind, table, id column, document).
DEMO_CONFIG: tuple[tuple[str, str, str, dict[str, Any]], ...] = (
    ("experiments", Tables.EXPERIMENTS, "experiment_id", {
        "id": "exp-homepage", "name": "Homepage recommendations A/B", "status": "running",
        "variants": [{"id": "A"}, {"id": "B"}], "control": "A", "conversion_events": ["purchase"]}),
    ("rules", Tables.PERSONALIZATION_RULES, "rule_id", {
        "id": "demo-us-mobile", "priority": 10, "channels": ["web", "mobile"],
        "conditions": {"all": [{"field": "profile.country", "op": "equals", "value": "US"},
                               {"field": "context.device", "op": "equals", "value": "mobile"}]},
        "content": {"banner": "us-mobile-free-shipping"}, "variant": "us-mobile"}),
    ("segments", Tables.SEGMENTS, "segment_id", {
        "id": "demo_cart_abandoners", "description": "Carted at least twice, never bought",
        "conditions": [["count.add_to_cart", ">=", 2], ["orders", "==", 0]]}),
    ("bandits", Tables.BANDITS, "bandit_id", {
        "id": "strategy.search_results", "policy": "thompson", "floor": 0.05, "placement": "search_results",
        "arms": ["hybrid", "collaborative", "trending", "popular"]}),
)


async def configure(redis: Any, keys: RedisKeys, session: Any) -> list[str]:
    """Create what the demo traffic refers to (``DEMO_CONFIG``) when absent; returns the ids created.
    Each document is a valid definition of its kind (tests/unit/test_demo.py checks them with the
    validators the API uses)."""
    created = []
    for kind, table, column, doc in DEMO_CONFIG:
        cache: ConfigCache[dict[str, Any]] = ConfigCache(kind, table, column, redis, keys, session, dict)
        stamped = {**doc, "created_at": int(time.time() * 1000)} if kind == "experiments" else doc
        if await cache.insert(doc["id"], stamped):
            created.append(f"{kind}:{doc['id']}")
    return created


def run(producer: Any, rate: float, duration_s: float | None = None, seed: int = 7,
        report_every_s: float = 10.0) -> int:
    """Produce demo events at ``rate`` events/s (wall clock event times) until ``duration_s``."""
    shop = Storefront(seed=seed, run_id=f"{uuid.uuid4().hex[:8]}-")
    if hasattr(producer, "send_catalog"):  # the catalog and a few known users first
        now = int(time.time() * 1000)
        for ev in catalog_events(shop, now):
            producer.send_catalog(ev)
        for ev in identity_events(shop, now):
            producer.send_identity(ev)
        producer.flush(30)
    sent = 0
    started = time.monotonic()
    last_report = started
    while duration_s is None or time.monotonic() - started < duration_s:
        tick = time.monotonic()
        for ev in shop.session(int(time.time() * 1000)):
            ev["event_time"] = int(time.time() * 1000)
            producer.send(ev)
            sent += 1
        elapsed = time.monotonic() - started
        ahead = sent / rate - elapsed
        if ahead > 0:
            time.sleep(ahead)
        if tick - last_report >= report_every_s:
            producer.flush(5)
            print(f"[demo] {sent} events sent ({sent / max(elapsed, 1e-9):.0f}/s)", flush=True)  # noqa: T201
            last_report = tick
    producer.flush(30)
    return sent
