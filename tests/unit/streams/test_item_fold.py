"""The recommender's item fold (streams/usersignals.py ``fold`` into one ``ItemDelta`` per item, with
the item fences applied in the fold) equals the per-entry fold it replaced: one ``Entry`` per (item,
source partition, event), merged per item after dropping the entries at or below each fence. Random
histories over several partitions, with stored sequences, user fences and item fences anywhere
(below, inside or above the batch's offsets, as after a crash between the item and the user writes).
Views and ratings give bit-equal results; carts and purchases equal within 1e-12 (the lines of one
order may add to the same pair twice, and the per-entry fold summed those first)."""

from __future__ import annotations

import math
import random
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from aura.state import trending
from aura.state.cooccurrence import BOUGHT_TYPES, INTERACTION_WEIGHTS, SeqEntry, model_of
from schemas.events import Behavior
from streams.intake import Accepted
from streams.itemsignals import item_lua_args, log_trend
from streams.usersignals import CoocParams, Fold, UserDelta, event_items, fold, item_candidates

HALF_LIFE = 3_600_000.0


@dataclass
class Entry:
    offset: int
    event_time: int
    weight: float = 0.0
    cooc: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    bought: dict[str, float] = field(default_factory=lambda: defaultdict(float))


@dataclass
class ItemApply:
    fences: dict[int, tuple[int | None, int]] = field(default_factory=dict)
    weight: float = 0.0
    log_trend: float = trending.NEG_INF
    cooc: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    bought: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    entries: int = 0


def per_entry_fold(events: list[Accepted], fences: dict[str, int], seqs: dict[str, list[SeqEntry]],
         p: CoocParams) -> dict[tuple[str, int], list[Entry]]:
    """The per-entry fold as the recommender had it: one ``Entry`` per (item, source partition,
    source event), the user-side results left out."""
    out = Fold()  # its .items: the per-entry lists
    work = {u: list(s) for u, s in seqs.items()}  # newest first, updated as we go

    def entry(item: str, part: int, acc: Accepted) -> Entry:
        lst = out.items.setdefault((item, part), [])
        if lst and lst[-1].offset == acc.offset:
            return lst[-1]
        e = Entry(acc.offset, acc.event.event_time)
        lst.append(e)
        return e

    for acc in sorted(events, key=lambda a: (a.partition, a.offset)):
        ev = acc.event
        if acc.offset <= fences.get(ev.user_id, -1):
            continue
        model = model_of(ev.raw.get("recommendation_id"))
        if model and ev.event_type == "impression":
            out.monitor[model]["impressions"] += 1
            out.monitor[model]["impressed_items"] += len(ev.items)
        if model and ev.event_type == "recommendation_click":
            out.monitor[model]["clicks"] += 1
        weight = INTERACTION_WEIGHTS.get(ev.event_type)
        d = out.users.get(ev.user_id)
        if d is None:
            d = out.users[ev.user_id] = UserDelta()
        d.offset = max(d.offset, acc.offset)
        if weight is None:
            d.seq = list(work.get(ev.user_id, []))
            continue
        seq = work.setdefault(ev.user_id, [])
        bought = ev.event_type in BOUGHT_TYPES
        for x in event_items(acc):
            ex = entry(x, acc.partition, acc)
            ex.weight += weight
            k = 0
            for prev in seq[: p.window]:
                if prev.item == x:
                    continue
                if p.max_gap_ms is not None and ev.event_time - prev.time > p.max_gap_ms:
                    break
                w = p.decay ** k
                k += 1
                entry(prev.item, acc.partition, acc).cooc[x] += p.forward * w
                ex.cooc[prev.item] += p.backward * w
                if bought and prev.bought:
                    entry(prev.item, acc.partition, acc).bought[x] += 1.0
                    ex.bought[prev.item] += 1.0
            seq[:] = [e for e in seq if e.item != x]
            new = SeqEntry(x, weight, ev.event_time, bought)
            seq.insert(0, new)
            del seq[p.seq_max:]
            d.new = [e for e in d.new if e.item != x] + [new]
            d.seen[x] = max(d.seen.get(x, 0), ev.event_time)
            out.interactions.append((ev.user_id, ev.event_time, x, ev.event_id, ev.event_type, weight))
            out.positives.append((ev.user_id, x, weight))
        d.seq = list(seq)
    return out.items  # type: ignore[return-value]


def per_entry_merge(items: dict[tuple[str, int], list[Entry]], fences: dict[tuple[str, int], int | None],
               half_life_ms: float) -> dict[str, ItemApply]:
    """Merge item entries, dropping those at or below the (item, partition) fence (pure)."""
    out: dict[str, ItemApply] = {}
    for (item, part), entries in items.items():
        stored = fences.get((item, part))
        a = out.setdefault(item, ItemApply())
        expected, high = a.fences.get(part, (stored, -1 if stored is None else stored))
        for e in sorted(entries, key=lambda e: e.offset):
            if e.offset <= high:
                continue
            high = e.offset
            a.entries += 1
            a.weight += e.weight
            if e.weight > 0:
                a.log_trend = trending.log_add(a.log_trend, trending.log_weight(e.weight, e.event_time, half_life_ms))
            for j, w in e.cooc.items():
                a.cooc[j] += w
            for j, w in e.bought.items():
                a.bought[j] += w
        a.fences[part] = (expected, high)
    return out



def history(rng: random.Random, n: int, kinds: tuple[str, ...]) -> list[Accepted]:
    users = [f"u{k}" for k in range(6)]
    items = [f"i{k}" for k in range(12)]
    part_of = {u: rng.randrange(3) for u in users}
    offsets = [0, 0, 0]
    out = []
    for k in range(n):
        u = rng.choice(users)
        etype = rng.choice(kinds)
        raw: dict = {}
        item: str | None = rng.choice(items)
        if etype == "purchase":
            raw["order"] = {"order_id": f"o{k}", "lines": [{"item_id": rng.choice(items), "quantity": 1,
                                                            "unit_price": 1.0} for _ in range(rng.randint(1, 3))]}
            item = None if rng.random() < 0.5 else item
        p = part_of[u]
        out.append(Accepted(Behavior(f"e{k}", etype, u, item, 1_000_000 + 1000 * k, raw=raw), p, offsets[p]))
        offsets[p] += 1
    return out


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("kinds", [("view", "rating", "click"), ("view", "add_to_cart", "purchase", "impression")])
def test_item_fold_equals_the_per_entry_fold(seed: int, kinds: tuple[str, ...]) -> None:
    rng = random.Random(seed)
    events = history(rng, rng.randint(1, 120), kinds)
    p = CoocParams(window=rng.choice([1, 3, 10]), decay=0.85, seq_max=rng.choice([4, 50]))
    items = sorted({f"i{k}" for k in range(12)})
    seqs = {f"u{k}": [SeqEntry(rng.choice(items), 1.0, 1000 * j, rng.random() < 0.5) for j in range(rng.randint(0, 12))]
            for k in range(6)}
    seqs = {u: list({e.item: e for e in s}.values()) for u, s in seqs.items()}  # stored sequences hold each item once
    top = max(a.offset for a in events)
    fences = {u: rng.randint(-1, top) for u in seqs if rng.random() < 0.3}
    pairs = item_candidates(events, fences, seqs, p)
    item_fences = {ip: (None if rng.random() < 0.4 else rng.randint(-1, top)) for ip in pairs}

    new = fold(events, fences, seqs, p, item_fences).items
    old = per_entry_merge(per_entry_fold(events, fences, seqs, p), item_fences, HALF_LIFE)
    exact = not set(kinds) & BOUGHT_TYPES
    assert {i for i, a in new.items() if a.entries} == {i for i, a in old.items() if a.entries}
    for item, a in old.items():
        if not a.entries:
            continue
        b = new[item]
        assert b.entries == a.entries
        # the per-entry merge also re-asserted fences that did not move (every entry of that partition dropped)
        assert b.fences == {part: f for part, f in a.fences.items() if f[1] != f[0]}
        got_trend = log_trend(b, HALF_LIFE)
        if exact:
            assert b.weight == a.weight and got_trend == a.log_trend
            assert b.cooc == dict(a.cooc) and b.bought == dict(a.bought)
        else:
            assert b.weight == pytest.approx(a.weight, rel=1e-12)
            assert got_trend == pytest.approx(a.log_trend, rel=1e-12)
            assert b.cooc == pytest.approx(dict(a.cooc), rel=1e-12)
            assert b.bought == pytest.approx(dict(a.bought), rel=1e-12)
        assert item_lua_args(b, 10, HALF_LIFE)  # the script argument encodes


def test_a_pair_missing_from_the_item_fences_is_an_error() -> None:
    events = [Accepted(Behavior("e1", "view", "u", "a", 1000), 0, 0)]
    with pytest.raises(KeyError):
        fold(events, {}, {"u": [SeqEntry("b", 1.0, 1, False)]}, CoocParams(), {("a", 0): None})
    assert math.isfinite(log_trend(fold(events, {}, {}, CoocParams()).items["a"], HALF_LIFE))


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("kinds", [("view", "rating", "click"), ("view", "add_to_cart", "purchase")])
def test_one_catch_up_batch_adds_what_consecutive_batches_add(seed: int, kinds: tuple[str, ...]) -> None:
    """A worker catching up folds a backlog in larger batches (streams/behavior.py ``taken``): the
    item deltas of one batch sum to what the same events add batch after batch (sequences and item
    fences carried over as Redis would hold them), and the users end with the same sequences."""
    rng = random.Random(seed)
    events = history(rng, rng.randint(20, 150), kinds)
    p = CoocParams(window=rng.choice([1, 3, 10]), decay=0.85, seq_max=rng.choice([4, 50]))

    def run(sizes: int) -> tuple[dict, dict, dict]:
        seqs: dict[str, list[SeqEntry]] = {}
        fences: dict[tuple[str, int], int | None] = {}
        total: dict[tuple[str, str, str], float] = defaultdict(float)
        entries: dict[str, int] = defaultdict(int)
        for start in range(0, len(events), sizes):
            part = events[start:start + sizes]
            pairs = item_candidates(part, {}, seqs, p)
            f = fold(part, {}, seqs, p, {ip: fences.get(ip) for ip in pairs})
            for item, a in f.items.items():
                entries[item] += a.entries
                total[(item, "", "w")] += a.weight
                for kind, inc in (("c", a.cooc), ("b", a.bought)):
                    for j, w in inc.items():
                        total[(item, j, kind)] += w
                fences.update({(item, part_): new for part_, (_old, new) in a.fences.items()})
            seqs.update({u: d.seq for u, d in f.users.items()})
        return dict(total), dict(entries), seqs

    one, one_entries, one_seqs = run(len(events))
    many, many_entries, many_seqs = run(rng.choice([1, 7, 25]))
    assert one_entries == many_entries and one_seqs == many_seqs
    assert one.keys() == many.keys()
    assert one == pytest.approx(many, rel=1e-12)
