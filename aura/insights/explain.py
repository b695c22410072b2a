"""Root cause of a change: which dimension values explain most of it (Adtributor, Bhagwan et al.,
NSDI 2014), pure.

For each dimension (device, channel, country, category, placement, experiment) the metric's
numerator and denominator are known per value *before* (the baseline window, per minute) and
*after* (since the change started, per minute). Per value:

* explanatory power (EP): the share of the total change that value accounts for. Additive metrics:
  ``(A_e - F_e) / (A - F)``. Rates (``N / D``): the change the total would show if only that value had
  moved, ``((F_N - F_Ne + A_Ne) / (F_D - F_De + A_De) - F_N / F_D) / (A_N / A_D - F_N / F_D)``;
* surprise: the Jensen-Shannon divergence between the value's share before and after (numerator and
  denominator shares summed for rates), so a value whose share moved outranks one that moved with the
  rest.

Per dimension, values are taken by surprise while each explains at least ``min_ep`` until together
they explain ``ep_target``, and are reported in that order; dimensions are ranked by the surprise
of their set, and one whose shares did not move (set surprise below ``min_surprise``: every value
changed alike) explains nothing. Library note: no maintained Python package implements Adtributor
(the PyPI ``adtributor`` projects are unmaintained single-file scripts), and the algorithm is a few
dozen lines over plain dicts.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

Pair = tuple[float, float]  # (numerator, denominator); additive metrics use denominator 1


@dataclass(frozen=True)
class Cause:
    """One dimension value's part in a change."""

    dimension: str
    value: str
    ep: float          # explanatory power: share of the total change
    surprise: float
    before: float      # the value's own metric before (rate or per-minute amount)
    after: float


def ratio(p: Pair, rate: bool) -> float:
    if rate:
        return p[0] / p[1] if p[1] > 0 else 0.0
    return p[0]


def _js(p: float, q: float) -> float:
    """Jensen-Shannon divergence term of one element's shares ``p`` (before) and ``q`` (after)."""
    out = 0.0
    m = (p + q) / 2
    if p > 0:
        out += 0.5 * p * math.log(p / m)
    if q > 0:
        out += 0.5 * q * math.log(q / m)
    return out


def causes(before: dict[str, dict[str, Pair]], after: dict[str, dict[str, Pair]], total_before: Pair,
           total_after: Pair, rate: bool, min_ep: float = 0.1, ep_target: float = 0.67,
           min_surprise: float = 1e-4) -> list[Cause]:
    """The explaining values, best dimension first and, within it, most surprising first (a value
    whose share moved before one that only moved with the rest, e.g. with the daily traffic).

    ``before``/``after``: dimension -> value -> (numerator, denominator) per minute."""
    fr, ar = ratio(total_before, rate), ratio(total_after, rate)
    change = ar - fr
    if change == 0:
        return []
    ranked: list[tuple[float, list[Cause]]] = []
    for dim in sorted(set(before) | set(after)):
        b, a = before.get(dim, {}), after.get(dim, {})
        fn = sum(v[0] for v in b.values()) or 1e-12
        an = sum(v[0] for v in a.values()) or 1e-12
        fd = sum(v[1] for v in b.values()) or 1e-12
        ad = sum(v[1] for v in a.values()) or 1e-12
        cands: list[Cause] = []
        for val in set(b) | set(a):
            bn, bd = b.get(val, (0.0, 0.0))
            an_e, ad_e = a.get(val, (0.0, 0.0))
            if rate:
                num = total_before[0] - bn + an_e
                den = total_before[1] - bd + ad_e
                ep = ((num / den if den > 0 else 0.0) - fr) / change
                sur = _js(bn / fn, an_e / an) + _js(bd / fd, ad_e / ad)
            else:
                ep = (an_e - bn) / change
                sur = _js(bn / fn, an_e / an)
            cands.append(Cause(dim, val, ep, sur, ratio((bn, bd), rate), ratio((an_e, ad_e), rate)))
        cands.sort(key=lambda c: (-c.surprise, -c.ep, c.value))
        chosen: list[Cause] = []
        total_ep = 0.0
        for c in cands:
            if c.ep < min_ep:
                continue
            chosen.append(c)
            total_ep += c.ep
            if total_ep >= ep_target:
                break
        if chosen and total_ep >= ep_target and sum(c.surprise for c in chosen) >= min_surprise:
            ranked.append((sum(c.surprise for c in chosen), chosen))  # most surprising first
    ranked.sort(key=lambda r: -r[0])
    return [c for _s, cs in ranked for c in cs]
