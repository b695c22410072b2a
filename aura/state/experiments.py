"""Experiments: definitions, lifecycle, deterministic assignment and the statistics of results.

Pure functions over plain data. Definitions are JSON documents (stored by
serving/routes/experiments.py); tallies are the hash that streams/experiments.py keeps per
experiment. Formulas are written out in docs/decisions.md.

- Assignment is sticky without state: ``u = H(salt:user)`` decides coverage, an independent
  ``v = H(salt:variant:user)`` picks the variant by cumulative weight (H = first 8 bytes of
  SHA-256 / 2^64), so raising coverage adds users without moving anyone already assigned.
- Multivariate experiments are the full factorial of their factors (one variant per combination).
- Statistics per variant against control: conversion rate with a Wilson interval, a pooled
  two-proportion z-test, Beta(1+c, 1+n-c) posteriors with the chance to beat control and the
  expected loss (closed form by normal approximation, or Monte Carlo), and a chi-square
  sample-ratio-mismatch test of exposures against the configured weights.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from aura.errors import DefinitionError
from aura.state.rules import Condition, Group, holds, parse_condition

STATUSES = ("draft", "running", "paused", "stopped", "winner")
TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"running"}),
    "running": frozenset({"paused", "stopped", "winner"}),
    "paused": frozenset({"running", "stopped", "winner"}),
    "stopped": frozenset({"winner"}),
    "winner": frozenset(),
}
ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
VARIANT_RE = re.compile(r"^[A-Za-z0-9_.=;:\-]{1,128}$")
MAX_VARIANTS = 64
SRM_ALPHA = 0.001  # GrowthBook's default threshold for a sample-ratio mismatch
DEFAULT_CONVERSIONS = ("purchase",)


class ExperimentError(DefinitionError):
    """An experiment document or transition that cannot be accepted; ``errors`` like RuleError."""


@dataclass(frozen=True, slots=True)
class Variant:
    id: str
    weight: float
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Experiment:
    id: str
    status: str
    salt: str
    variants: tuple[Variant, ...]
    control: str
    coverage: float
    targeting: Condition | Group | None
    conversion_events: tuple[str, ...]
    winner: str | None
    doc: dict[str, Any] = field(compare=False, repr=False)

    def variant(self, vid: str) -> Variant | None:
        return next((v for v in self.variants if v.id == vid), None)


# ---------------------------------------------------------------------------------------------
# definitions


def full_factorial(factors: dict[str, list[Any]]) -> list[Variant]:
    """One variant per combination of factor levels, id ``f1=a;f2=b``, equal weights."""
    names = list(factors)
    combos = list(itertools.product(*(factors[n] for n in names)))
    return [Variant(";".join(f"{n}={lvl}" for n, lvl in zip(names, combo, strict=True)), 1.0 / len(combos),
                    dict(zip(names, combo, strict=True))) for combo in combos]


def validate_experiment(doc: Any) -> Experiment:
    """Check an experiment document and build it; raises ExperimentError listing every problem."""
    if not isinstance(doc, dict):
        raise ExperimentError([{"loc": [], "msg": "an experiment must be a JSON object"}])
    errors: list[dict[str, Any]] = []
    known = {"id", "name", "description", "status", "salt", "variants", "factors", "control", "coverage",
             "targeting", "conversion_events", "winner", "created_at", "updated_at", *(f"{s}_at" for s in STATUSES)}
    for k in sorted(set(doc) - known):
        errors.append({"loc": [k], "msg": f"unknown key; known: {sorted(known)}"})
    eid = doc.get("id")
    if not isinstance(eid, str) or not ID_RE.match(eid):
        errors.append({"loc": ["id"], "msg": "id is required: 1-64 of letters, digits, '_', '.', '-'"})
    status = doc.get("status", "draft")
    if status not in STATUSES:
        errors.append({"loc": ["status"], "msg": f"status must be one of {list(STATUSES)}"})
    variants: list[Variant] = []
    if ("variants" in doc) == ("factors" in doc):
        errors.append({"loc": ["variants"], "msg": "give either variants (A/B/n) or factors (multivariate)"})
    elif "factors" in doc:
        factors = doc["factors"]
        if (not isinstance(factors, dict) or not factors
                or not all(isinstance(v, list) and len(v) >= 2 and len(set(map(str, v))) == len(v)
                           for v in factors.values())):
            errors.append({"loc": ["factors"], "msg": "factors maps each factor name to a list of >= 2 distinct "
                                                      "levels"})
        else:
            if math.prod(len(v) for v in factors.values()) > MAX_VARIANTS:
                errors.append({"loc": ["factors"], "msg": f"more than {MAX_VARIANTS} combinations"})
            else:
                variants = full_factorial(factors)
    else:
        raw = doc["variants"]
        if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_VARIANTS:
            errors.append({"loc": ["variants"], "msg": f"variants needs 2 to {MAX_VARIANTS} entries"})
        else:
            for i, v in enumerate(raw):
                if not isinstance(v, dict) or not isinstance(v.get("id"), str) or not VARIANT_RE.match(v["id"]):
                    errors.append({"loc": ["variants", i, "id"], "msg": "each variant needs an id (1-128 of "
                                                                        "letters, digits, _.=;:-)"})
                    continue
                w = v.get("weight", 1.0)
                if isinstance(w, bool) or not isinstance(w, int | float) or not w > 0:
                    errors.append({"loc": ["variants", i, "weight"], "msg": "weight must be a positive number"})
                    continue
                payload = v.get("payload", {})
                if not isinstance(payload, dict):
                    errors.append({"loc": ["variants", i, "payload"], "msg": "payload must be an object"})
                    continue
                variants.append(Variant(v["id"], float(w), payload))
            if len({v.id for v in variants}) != len(variants):
                errors.append({"loc": ["variants"], "msg": "variant ids must be unique"})
    total = sum(v.weight for v in variants)
    variants = [Variant(v.id, v.weight / total, v.payload) for v in variants] if total > 0 else variants
    ids = [v.id for v in variants]
    control = doc.get("control", ids[0] if ids else None)
    if variants and control not in ids:
        errors.append({"loc": ["control"], "msg": f"control must be one of the variant ids {ids[:10]}"})
    coverage = doc.get("coverage", 1.0)
    if isinstance(coverage, bool) or not isinstance(coverage, int | float) or not 0 < coverage <= 1:
        errors.append({"loc": ["coverage"], "msg": "coverage must be in (0, 1]"})
    targeting = None
    if doc.get("targeting") is not None:
        targeting = parse_condition(doc["targeting"], ["targeting"], errors, 1, [0])
    conv = doc.get("conversion_events", list(DEFAULT_CONVERSIONS))
    if not isinstance(conv, list) or not conv or not all(isinstance(c, str) and c for c in conv):
        errors.append({"loc": ["conversion_events"], "msg": "a non-empty list of behavior event types"})
    winner = doc.get("winner")
    if status == "winner" and winner not in ids:
        errors.append({"loc": ["winner"], "msg": "status winner needs winner set to one of the variant ids"})
    salt = doc.get("salt", eid)
    if not isinstance(salt, str) or not salt:
        errors.append({"loc": ["salt"], "msg": "salt must be a non-empty string"})
    if errors:
        raise ExperimentError(errors)
    return Experiment(id=eid, status=status, salt=salt, variants=tuple(variants), control=control,
                      coverage=float(coverage), targeting=targeting, conversion_events=tuple(conv),
                      winner=winner, doc=doc)


def transition(doc: dict[str, Any], to: str, winner: str | None = None) -> dict[str, Any]:
    """The document after a lifecycle change; raises ExperimentError on an illegal one."""
    current = doc.get("status", "draft")
    if to not in STATUSES:
        raise ExperimentError([{"loc": ["status"], "msg": f"status must be one of {list(STATUSES)}"}])
    if to not in TRANSITIONS[current]:
        raise ExperimentError([{"loc": ["status"], "msg": f"cannot go from {current} to {to}; allowed: "
                                                          f"{sorted(TRANSITIONS[current]) or 'none (final)'}"}])
    new = {**doc, "status": to}
    if to == "winner":
        new["winner"] = winner
    validate_experiment(new)
    return new


# ---------------------------------------------------------------------------------------------
# assignment


def hash_unit(text: str) -> float:
    """A uniform number in [0, 1) from a string (first 8 bytes of SHA-256)."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2.0**64


def assign(exp: Experiment, user_id: str) -> str | None:
    """The variant of ``user_id`` (None: outside the coverage); deterministic and sticky."""
    if hash_unit(f"{exp.salt}:{user_id}") >= exp.coverage:
        return None
    v = hash_unit(f"{exp.salt}:variant:{user_id}")
    acc = 0.0
    for variant in exp.variants:
        acc += variant.weight
        if v < acc:
            return variant.id
    return exp.variants[-1].id


@dataclass(frozen=True, slots=True)
class Decision:
    variant: str  # what to show
    in_experiment: bool  # True: count an exposure
    reason: str  # assigned | not_running | not_targeted | not_covered | winner


def decide(exp: Experiment, user_id: str, profile: dict[str, Any], segments: frozenset[str],
           context: dict[str, Any]) -> Decision:
    """What ``user_id`` sees in this context and whether it is an exposure."""
    if exp.status == "winner":
        return Decision(exp.winner or exp.control, False, "winner")
    if exp.status != "running":
        return Decision(exp.control, False, "not_running")
    if not holds(exp.targeting, profile, segments, context):
        return Decision(exp.control, False, "not_targeted")
    variant = assign(exp, user_id)
    if variant is None:
        return Decision(exp.control, False, "not_covered")
    return Decision(variant, True, "assigned")


# ---------------------------------------------------------------------------------------------
# statistics


def normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def normal_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def wilson_interval(conversions: float, n: float, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (good at small n and near 0 or 1)."""
    if n <= 0:
        return 0.0, 1.0
    p = conversions / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def two_proportion_test(c_a: float, n_a: float, c_b: float, n_b: float) -> tuple[float, float]:
    """Pooled two-proportion z-test of B against A: (z, two-sided p-value)."""
    if n_a <= 0 or n_b <= 0:
        return 0.0, 1.0
    pooled = (c_a + c_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return 0.0, 1.0
    z = (c_b / n_b - c_a / n_a) / se
    return z, 2 * normal_cdf(-abs(z))


def beta_params(conversions: float, n: float, prior: tuple[float, float] = (1.0, 1.0)) -> tuple[float, float]:
    return prior[0] + conversions, prior[1] + max(n - conversions, 0.0)


def _beta_moments(a: float, b: float) -> tuple[float, float]:
    mean = a / (a + b)
    return mean, a * b / ((a + b) ** 2 * (a + b + 1))


def bayes_compare(c_a: float, n_a: float, c_b: float, n_b: float) -> tuple[float, float]:
    """Chance that B beats A, and the expected loss of choosing B, under Beta(1+c, 1+n-c)
    posteriors approximated as normals (closed form; see docs/decisions.md)."""
    m_a, v_a = _beta_moments(*beta_params(c_a, n_a))
    m_b, v_b = _beta_moments(*beta_params(c_b, n_b))
    mu, sd = m_b - m_a, math.sqrt(v_a + v_b)
    chance = normal_cdf(mu / sd)
    loss = sd * normal_pdf(mu / sd) - mu * normal_cdf(-mu / sd)  # E[max(A - B, 0)]
    return chance, max(loss, 0.0)


def bayes_compare_mc(c_a: float, n_a: float, c_b: float, n_b: float, rng: np.random.Generator,
                     draws: int = 100_000) -> tuple[float, float]:
    """The same two quantities by sampling the Beta posteriors (exact up to Monte Carlo error)."""
    a = rng.beta(*beta_params(c_a, n_a), size=draws)
    b = rng.beta(*beta_params(c_b, n_b), size=draws)
    return float(np.mean(b > a)), float(np.mean(np.maximum(a - b, 0.0)))


def srm_test(observed: list[float], weights: list[float]) -> tuple[float, float]:
    """Chi-square goodness of fit of exposures to the configured weights: (statistic, p-value)."""
    from scipy.special import chdtrc  # scipy is heavy: loaded by the first results read, not at import

    total = sum(observed)
    if total <= 0 or len(observed) < 2:
        return 0.0, 1.0
    wsum = sum(weights)
    chi2 = sum((o - total * w / wsum) ** 2 / (total * w / wsum) for o, w in zip(observed, weights, strict=True))
    return chi2, float(chdtrc(len(observed) - 1, chi2))


def parse_tally(raw: dict[str, str]) -> dict[str, dict[str, float]]:
    """The experiment tally hash -> {variant: {"exposed": n, "conv:<type>": n, "revenue": x}}."""
    out: dict[str, dict[str, float]] = {}
    for k, v in raw.items():
        if k.startswith("_") or "|" not in k:
            continue
        variant, metric = k.rsplit("|", 1)
        out.setdefault(variant, {})[metric] = float(v)
    return out


def results(exp: Experiment, tally: dict[str, dict[str, float]], metric: str | None = None) -> dict[str, Any]:
    """Per-variant results against control for one conversion event type (default: the first)."""
    metric = metric or exp.conversion_events[0]
    ctrl = tally.get(exp.control, {})
    c_ctrl, n_ctrl = ctrl.get(f"conv:{metric}", 0.0), ctrl.get("exposed", 0.0)
    variants = []
    for v in exp.variants:
        t = tally.get(v.id, {})
        n, c, rev = t.get("exposed", 0.0), t.get(f"conv:{metric}", 0.0), t.get("revenue", 0.0)
        lo, hi = wilson_interval(c, n)
        row: dict[str, Any] = {
            "variant": v.id, "weight": v.weight, "exposures": int(n), "conversions": int(c),
            "conversion_rate": c / n if n else 0.0, "ci95": [lo, hi], "revenue": rev,
            "revenue_per_exposure": rev / n if n else 0.0,
            "conversions_by_event": {k[5:]: int(x) for k, x in t.items() if k.startswith("conv:")},
        }
        if v.id != exp.control:
            z, p = two_proportion_test(c_ctrl, n_ctrl, c, n)
            chance, loss = bayes_compare(c_ctrl, n_ctrl, c, n)
            rate_ctrl = c_ctrl / n_ctrl if n_ctrl else 0.0
            row.update({"uplift": (row["conversion_rate"] - rate_ctrl) / rate_ctrl if rate_ctrl else None,
                        "z": z, "p_value": p, "chance_to_beat_control": chance, "expected_loss": loss})
        variants.append(row)
    chi2, p_srm = srm_test([r["exposures"] for r in variants], [v.weight for v in exp.variants])
    return {"experiment_id": exp.id, "status": exp.status, "metric": metric, "control": exp.control,
            "winner": exp.winner, "variants": variants,
            "srm": {"chi2": chi2, "p_value": p_srm, "mismatch": p_srm < SRM_ALPHA}}
