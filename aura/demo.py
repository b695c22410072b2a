"""A seeded synthetic storefront: catalog, users with latent tastes, and sessions that view, click,
add to cart and sometimes buy, with impressions that carry recommendation and experiment ids.

``Storefront.events`` is a pure, repeatable generator of behavior-event dicts; ``run`` produces them
to Kafka at a steady rate (the demo traffic of ``make run`` and the load of the benchmarks).

Scripted incidents (``INCIDENTS``: a conversion drop on one device, a price error that spikes one
category's revenue, a category surge, a placement whose click-through collapses) change the sessions
while they last, on the demo's own clock: ``run(history_min=..., speed=...)`` starts the event clock
``history_min`` minutes in the past and runs it ``speed`` times faster than the wall clock until it
meets it, so the insight engine is warm and has seen every incident a few minutes after start; the
incidents are the ground truth of the insight tests.

``configure`` first creates the configuration that traffic refers to (``DEMO_CONFIG``): the
experiment its impressions carry, a personalization rule, a managed segment, and a strategy bandit
for one placement, through the same versioned configuration stores the API writes
(aura/configcache.py), each created only when absent, so that every id in the demo's events exists.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aura.configcache import ConfigCache
from aura.keys import RedisKeys
from aura.layout import Tables

CATEGORIES = ("electronics", "books", "home", "fashion", "sports", "beauty", "toys", "grocery")
BRANDS = ("acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka", "tyrell", "soylent")
PLACEMENTS = ("homepage", "product_page", "cart", "search_results", "email")
DEVICES = ("mobile", "desktop", "tablet")


@dataclass(frozen=True)
class Incident:
    """A scripted change of the shop's behaviour, from ``start_min`` (minutes after the demo's clock
    starts) for ``minutes``."""

    name: str
    kind: str          # conversion_drop | price_error | category_surge | ctr_collapse
    target: str        # the device, category or placement it hits
    start_min: int
    minutes: int
    size: float        # conversion and CTR multiplier, price multiplier, share of picks moved to the category


INCIDENTS: tuple[Incident, ...] = (
    Incident("checkout conversion drop on mobile", "conversion_drop", "mobile", 70, 20, 0.3),
    Incident("price error in electronics", "price_error", "electronics", 100, 15, 4.0),
    Incident("surge of toys", "category_surge", "toys", 125, 15, 0.5),
    Incident("homepage recommendations stop being clicked", "ctr_collapse", "homepage", 150, 15, 0.2),
)
DEMO_HISTORY_MIN = 180  # `aura run`: the event clock starts this far back, after every incident


@dataclass
class Effects:
    """What the incidents active at one minute change (empty: nothing)."""

    conversion: dict[str, float] = field(default_factory=dict)   # device -> purchase probability multiplier
    price: dict[str, float] = field(default_factory=dict)        # category -> price multiplier
    surge: dict[str, float] = field(default_factory=dict)        # category -> share of item picks moved to it
    ctr: dict[str, float] = field(default_factory=dict)          # placement -> recommendation click multiplier


def effects_at(incidents: tuple[Incident, ...], minute: int) -> Effects:
    fx = Effects()
    for inc in incidents:
        if inc.start_min <= minute < inc.start_min + inc.minutes:
            {"conversion_drop": fx.conversion, "price_error": fx.price, "category_surge": fx.surge,
             "ctr_collapse": fx.ctr}[inc.kind][inc.target] = inc.size
    return fx


NO_EFFECTS = Effects()
LOCALES = ("en-US", "en-US", "fr-FR", "de-DE", "ja-JP")


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

    def _pick_item(self, user: int, fx: Effects = NO_EFFECTS) -> Item:
        rng = self.rng
        for cat, share in fx.surge.items():
            if rng.random() < share and self.by_category.get(cat):
                pool = self.by_category[cat]
                return self.items[pool[int(rng.integers(len(pool)))]]
        if rng.random() < 0.3:
            return self.items[int(rng.choice(len(self.items), p=self.popularity))]
        cat = CATEGORIES[int(rng.choice(len(CATEGORIES), p=self.taste[user]))]
        pool = self.by_category.get(cat) or list(range(len(self.items)))
        return self.items[pool[int(rng.integers(len(pool)))]]

    def session(self, now_ms: int, fx: Effects = NO_EFFECTS) -> list[dict[str, Any]]:
        """One user session: impressions, views, clicks, carts, maybe a purchase (``fx``: the
        scripted incidents active now)."""
        rng = self.rng
        # mostly uniform users, plus a head of regulars (u000000 is the most frequent visitor)
        n = len(self.users)
        u = min(int(rng.zipf(1.3)) - 1, n - 1) if rng.random() < 0.1 else int(rng.integers(n))
        user_id = self.users[u]
        ctx = {"session_id": self._token(8), "device": DEVICES[int(rng.integers(3))],
               "channel": "web" if u % 3 else "app", "locale": LOCALES[u % len(LOCALES)]}
        events: list[dict[str, Any]] = []
        t = now_ms
        cart: list[Item] = []
        for _ in range(int(rng.integers(1, 8))):
            placement = PLACEMENTS[int(rng.integers(len(PLACEMENTS)))]
            shown = [self._pick_item(u, fx) for _ in range(6)]
            rec_id = f"rec-{self._token(12)}"
            exp = ("exp-homepage", "A" if rng.random() < 0.5 else "B") if placement == "homepage" else (None, None)
            events.append(self._event("impression", user_id, None, t, {**ctx, "placement": placement},
                                      items=[i.item_id for i in shown], recommendation_id=rec_id,
                                      experiment_id=exp[0], variant_id=exp[1]))
            t += int(rng.integers(200, 3000))
            clicks = 0.35 * fx.ctr.get(placement, 1.0)
            item = shown[int(rng.integers(len(shown)))] if rng.random() < clicks else self._pick_item(u, fx)
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
        if cart and rng.random() < 0.45 * fx.conversion.get(ctx["device"], 1.0):
            lines = [{"item_id": i.item_id, "quantity": int(rng.integers(1, 3)),
                      "unit_price": round(i.price * fx.price.get(i.category, 1.0), 2)} for i in cart]
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
               "attributes": {"country": ("US", "FR", "DE", "JP")[i % 4], "newsletter": i % 3 == 0,
                              "email": f"{user}@demo.aura.test", "first_name": f"Shopper {user[-3:]}"}}


def demo_campaigns(cart_delay_s: int = 60) -> list[dict[str, Any]]:
    """The campaigns ``make run`` starts: a welcome email on a user's first visit (one per user per
    year) and a cart-abandonment email ``cart_delay_s`` after an add_to_cart without a purchase, both
    listing the user's live recommendations; 10% of the abandoners are held out to measure lift."""
    recs = ("{% for r in recommendations %}  - {{ r.title }} ({{ r.item_id }})\n{% endfor %}"
            "\nUnsubscribe or track: {{ message.click_url }}\n")
    return [
        {"id": "demo-welcome", "name": "Welcome", "channel": "email", "audience": {"type": "everyone"},
         "trigger": {"type": "event", "event_type": "view"},
         "template": {"subject": "Welcome to the demo shop, {{ user.first_name | default('friend') }}",
                      "body": "Hello {{ user.first_name | default('friend') }},\n\nPicked for you:\n" + recs},
         "caps": {"per_campaign_user": 1, "window_s": 366 * 86400},
         "goal": {"event_type": "purchase", "window_s": 7 * 86400}},
        {"id": "demo-cart-abandonment", "name": "Cart abandonment", "channel": "email",
         "audience": {"type": "everyone"},
         "trigger": {"type": "event", "event_type": "add_to_cart", "delay_s": cart_delay_s, "unless": "purchase"},
         "template": {"subject": "You left {{ event.item_id }} in your cart",
                      "body": "Still thinking about {{ event.item_id }}? Customers like you also chose:\n" + recs},
         "caps": {"per_user": 3, "per_campaign_user": 1, "window_s": 86400}, "holdout": 0.1,
         "goal": {"event_type": "purchase", "window_s": 86400}},
    ]


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
        report_every_s: float = 10.0, history_min: int = 0, speed: float = 1.0,
        incidents: tuple[Incident, ...] = ()) -> int:
    """Produce demo events, ``rate`` per second of event time, until ``duration_s`` (wall).

    The event clock starts ``history_min`` minutes ago and runs ``speed`` times faster than the wall
    clock until it meets it (so ``rate * speed`` events/s are sent meanwhile), then in real time;
    ``incidents`` apply by minute of that clock."""
    shop = Storefront(seed=seed, run_id=f"{uuid.uuid4().hex[:8]}-")
    wall0 = int(time.time() * 1000)
    sim0 = wall0 - history_min * 60_000
    if hasattr(producer, "send_catalog"):  # the catalog and a few known users first
        for ev in catalog_events(shop, sim0):
            producer.send_catalog(ev)
        for ev in identity_events(shop, sim0):
            producer.send_identity(ev)
        producer.flush(30)
    sent = 0
    started = time.monotonic()
    last_report = started
    while duration_s is None or time.monotonic() - started < duration_s:
        tick = time.monotonic()
        wall = int(time.time() * 1000)
        sim = min(wall, sim0 + int((tick - started) * 1000 * speed))
        fx = effects_at(incidents, (sim - sim0) // 60_000) if incidents else NO_EFFECTS
        for ev in shop.session(sim, fx):
            ev["event_time"] = sim
            producer.send(ev)
            sent += 1
        ahead = sent / rate - (sim - sim0) / 1000  # seconds of event time sent beyond the clock
        if ahead > 0:
            time.sleep(ahead / (speed if sim < wall else 1.0))
        if tick - last_report >= report_every_s:
            producer.flush(5)
            elapsed = max(tick - started, 1e-9)
            behind = (wall - sim) / 60_000
            print(f"[demo] {sent} events sent ({sent / elapsed:.0f}/s)"  # noqa: T201
                  + (f"; event clock {behind:.0f} min behind, catching up" if behind >= 1 else ""), flush=True)
            last_report = tick
    producer.flush(30)
    return sent
