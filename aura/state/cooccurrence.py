"""Recommender signals as both sides read them: the stored formats of the co-occurrence state.

Two owners write this state (the state has two keys): streams/usersignals.py keeps the
``recs_user_*`` keys (a user's recent sequence, seen items, MF factors and candidates, fenced by
``_off``) and the MF item factors; streams/itemsignals.py keeps the ``recs_item_*`` keys (popularity,
trending log-score, raw co-occurrence, fences per source partition), ``recs_popular``,
``recs_trending`` and the published neighbour lists. The API and the worker's pool refresher read it.
Here: the codecs of every stored value (sequence entries, hash fields, factor vectors, the neighbour
list argument), the per-event weights, the monitoring hash name, what one batch adds to one item
(``ItemDelta``, handed from the user side to the item side) and the neighbour normalisation.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

INTERACTION_WEIGHTS: dict[str, float] = {
    "view": 1.0, "click": 1.0, "recommendation_click": 1.0, "rating": 1.0, "add_to_cart": 2.0, "purchase": 3.0,
}
BOUGHT_TYPES = frozenset({"add_to_cart", "purchase"})
MONITOR_STREAM = "stream"  # recs_monitor(...) hash of the agents' own counters

# Fields of recs_user_state(user): the offset fence and the MF user factors.
USER_FENCE = "_off"
USER_MF = "mf"
# Fields of recs_item_state(item): interaction weight and trending log-score (aura/state/trending.py);
# ``f:<source partition>`` fences and ``pub:<source>`` publish marks (``fence_field``, ``published_field``).
ITEM_POP = "pop"
ITEM_TREND = "tr"


@dataclass(frozen=True, slots=True)
class SeqEntry:
    """One entry of ``recs_user_seq``: ``"item|weight|time|bought"`` (the item may contain ``|``)."""

    item: str
    weight: float
    time: int
    bought: bool

    def encode(self) -> str:
        return f"{self.item}|{self.weight:g}|{self.time}|{int(self.bought)}"

    @staticmethod
    def decode(raw: str) -> SeqEntry:
        item, w, t, b = raw.rsplit("|", 3)
        return SeqEntry(item, float(w), int(t), b == "1")


@dataclass(slots=True)
class ItemDelta:
    """What one batch adds to one item, above the item's fences (handed from the user side's fold to
    the item side). Entries at or below the fence of their (item, source partition) were dropped by
    the fold; ``entries`` counts the source events that touched the item."""

    fences: dict[int, tuple[int | None, int]] = field(default_factory=dict)  # partition -> (stored, new)
    entries: int = 0
    hits: list[tuple[int, float]] = field(default_factory=list)  # (event time, weight) per interacting event
    cooc: dict[str, float] = field(default_factory=dict)
    bought: dict[str, float] = field(default_factory=dict)
    last: tuple[int, int] = (-1, -1)  # (partition, offset) of the last event counted
    hit_at: tuple[int, int] = (-1, -1)  # (partition, offset) of the last hit

    def touch(self, stored: int | None, part: int, offset: int) -> bool:
        """Count the event at ``offset`` of ``part`` once; False when it is at or below the fence."""
        if self.last == (part, offset):
            return True
        fe = self.fences.get(part)
        high = (-1 if stored is None else stored) if fe is None else fe[1]
        if offset <= high:
            return False
        self.fences[part] = (stored if fe is None else fe[0], offset)
        self.entries += 1
        self.last = (part, offset)
        return True

    def hit(self, part: int, offset: int, event_time: int, weight: float) -> None:
        """The event's own interaction with the item (the lines of one order add up)."""
        if self.hit_at == (part, offset):
            t, w = self.hits[-1]
            self.hits[-1] = (t, w + weight)
        else:
            self.hits.append((event_time, weight))
            self.hit_at = (part, offset)

    @property
    def weight(self) -> float:
        total = 0.0
        for _t, w in self.hits:
            total += w
        return total


def model_of(recommendation_id: str | None) -> str | None:
    """Served lists carry ``recommendation_id = "<model>:<version>:<request id>"``."""
    if not recommendation_id or ":" not in recommendation_id:
        return None
    return recommendation_id.split(":", 1)[0]


# ------------------------------------------------------------------------------ stored values


def fence_field(partition: int) -> str:
    """The item hash field of the fence of one source partition."""
    return f"f:{partition}"


def published_field(source: str) -> str:
    """The item hash field that records the last publish of the item's ``source`` list."""
    return f"pub:{source}"


def encode_published(weight: float, wall_time: float) -> str:
    """``"<interaction weight then>|<wall time then>"`` of a list's last publish."""
    return f"{weight!r}|{wall_time!r}"


def decode_published(raw: str) -> tuple[float, float]:
    pop, t = raw.split("|")
    return float(pop), float(t)


def encode_vector(vector: np.ndarray) -> str:
    """MF factors (float32; item factors carry their bias last) as hex text."""
    return vector.tobytes().hex()


def decode_vector(raw: str) -> np.ndarray:
    """Hex text -> a writable float32 vector."""
    return np.frombuffer(bytes.fromhex(raw), dtype=np.float32).copy()


def compact_json(x: Any) -> bytes:
    """The JSON text of a script argument (no spaces; orjson: strings, ints and lists only here)."""
    return orjson.dumps(x)


# A sorted set replaced by a new one (a neighbour list): the members as one JSON argument and their
# scores as one argument of little-endian float64s, read by ``struct.unpack`` in the script (formatting
# hundreds of floats as text cost the writer more than the rest of its step); Redis turns the Lua number
# back into the same double.
ZSET_FROM_ARGS = """
local function zset_replace(key, members, scores)
  redis.call('DEL', key)
  for j = 1, #members, 250 do
    local a = {}
    for i = j, math.min(j + 249, #members) do
      a[#a + 1] = struct.unpack('<d', scores, 8 * i - 7)
      a[#a + 1] = members[i]
    end
    redis.call('ZADD', key, unpack(a))
  end
  return #members
end
"""
REPLACE_ZSET_LUA = ZSET_FROM_ARGS + """
return zset_replace(KEYS[1], cjson.decode(ARGV[1]), ARGV[2])
"""


def zset_scores(members: Sequence[str], scores: Any) -> bytes:
    """The scores argument of a replaced sorted set: little-endian float64s in ``members`` order
    (``scores``: floats or a numpy array; each must be finite)."""
    packed = np.asarray(scores, dtype="<f8")
    if packed.shape != (len(members),) or not np.isfinite(packed).all():
        raise ValueError(f"{len(members)} members need as many finite scores, got {packed.shape}")
    return packed.tobytes()


def zset_args(members: Sequence[str], scores: Any) -> list[bytes]:
    """The arguments of ``REPLACE_ZSET_LUA``: ``[members as JSON, scores as float64s]``."""
    return [compact_json(list(members)), zset_scores(members, scores)]


def replace_zset_args(pairs: Iterable[tuple[str, float]]) -> list[Any]:
    """The arguments of ``REPLACE_ZSET_LUA`` for (member, score) pairs."""
    members: list[str] = []
    scores: list[float] = []
    for member, score in pairs:
        members.append(member)
        scores.append(score)
    return zset_args(members, scores)


# ------------------------------------------------------------------------- neighbour lists


def score_pairs(reply: list[Any]) -> list[tuple[str, float]]:
    """A raw ``ZREVRANGE .. WITHSCORES`` reply as (member, score) pairs: RESP3 gives pairs, RESP2 a
    flat member, score, ... list."""
    if reply and isinstance(reply[0], list | tuple):
        return [(j, float(c)) for j, c in reply]
    it = iter(reply)
    return [(j, float(c)) for j, c in zip(it, it, strict=True)]


def normalise_neighbours(pop_i: float, neighbours: list[tuple[str, float]], pops: dict[str, float],
                         k: int, alpha: float = 0.5, powered: dict[str, float] | None = None
                         ) -> list[tuple[str, float]]:
    """Raw co-occurrence -> similarity ``c_ij / (pop_i ** alpha * pop_j ** (1 - alpha))``, top ``k``.

    ``powered`` (optional): ``pop_j ** (1 - alpha)`` of every ``j`` with ``pop_j > 0``, computed once
    per publishing round for all lists (same values, fewer powers)."""
    if pop_i <= 0:
        return []
    if powered is None:
        powered = {j: p ** (1 - alpha) for j, p in pops.items() if p and p > 0}
    pi = pop_i ** alpha
    scored = [(j, c / (pi * pw)) for j, c in neighbours if (pw := powered.get(j)) is not None]
    scored.sort(key=lambda t: -t[1])
    return scored[:k]


# One item's published neighbour list, normalised inside Redis: ``normalise_neighbours``'s formula and
# choice, bit-equal (tests/integration/test_publish_neighbours.py), without a score crossing to the
# worker. KEYS (one {item} slot): the raw list, the published list, the item's state hash. ARGV:
# ``pi`` = pop_i ** alpha as exact text ('' when pop_i <= 0: the list is emptied), k, the publish
# mark's field and value, and one JSON argument [names, powers]: the raw list's top-m members as the
# client read them (in rank order) and each one's ``pop_j ** (1 - alpha)`` (null: no popularity, left
# out). Popularity lives in the global ``recs_popular``, outside the item's slot, so the client reads it
# (one ZMSCORE per pass) and passes the powers: computed by the worker's libm ``pow`` as before, the
# script only reads the raw scores (ZMSCORE), divides, multiplies and compares, so the doubles match
# whatever libm Redis runs on. The top k: every score above the k-th largest and, of the scores equal
# to it, the first in raw rank (Python's stable sort); one C ``table.sort`` of the negated scores finds
# it. Lua numbers reach ZADD as exact text (Redis formats them with 17 significant digits).
NEIGHBOURS_LUA = """
redis.call('DEL', KEYS[2])
local n = 0
if ARGV[1] ~= '' then
  local pi = tonumber(ARGV[1])
  local a = cjson.decode(ARGV[5])
  local names, pw = a[1], a[2]
  local raw = {}
  for s = 1, #names, 500 do
    local e = math.min(s + 499, #names)
    local cur = redis.call('ZMSCORE', KEYS[1], unpack(names, s, e))
    for x = s, e do raw[x] = cur[x - s + 1] end
  end
  local sc, mem = {}, {}
  for x = 1, #names do
    local w, c = pw[x], raw[x]
    if c and type(w) == 'number' then
      n = n + 1
      sc[n] = tonumber(c) / (pi * w)
      mem[n] = names[x]
    end
  end
  local k = tonumber(ARGV[2])
  local t, ties = -math.huge, n
  if n > k then
    local neg = {}
    for x = 1, n do neg[x] = -sc[x] end
    table.sort(neg)
    t = -neg[k]
    ties = 0
    for x = k, 1, -1 do
      if neg[x] ~= -t then break end
      ties = ties + 1
    end
  end
  local flat = {}
  for x = 1, n do
    local v = sc[x]
    if v > t or (v == t and ties > 0) then
      if v == t then ties = ties - 1 end
      flat[#flat + 1] = v
      flat[#flat + 1] = mem[x]
    end
  end
  n = #flat / 2
  for j = 1, #flat, 500 do redis.call('ZADD', KEYS[2], unpack(flat, j, math.min(j + 499, #flat))) end
end
redis.call('HSET', KEYS[3], ARGV[3], ARGV[4])
return n
"""


def neighbours_args(pop_i: float, names: list[str], powered: dict[str, float], k: int, mark_field: str,
                    mark: str, alpha: float = 0.5) -> list[Any]:
    """The arguments of ``NEIGHBOURS_LUA``: ``names`` are the raw list's top-m members as read (rank
    order), ``powered`` maps every item with a popularity to ``pop_j ** (1 - alpha)``. Built with C loops
    only (``map``, orjson, which writes a float as its shortest exact text): no Python step per member."""
    pi = repr(pop_i ** alpha) if pop_i > 0 else ""
    return [pi, k, mark_field, mark, orjson.dumps([names, list(map(powered.get, names))]) if pi else b""]
