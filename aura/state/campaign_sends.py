"""What happens to one campaign message: its deterministic id, its place in the due set, the guards
it must pass, its rendered content, and the statistics of a campaign's sends against its holdout.

Pure functions over plain data, shared by the worker (streams/campaigns.py triggers and guards,
streams/connectors.py delivers) and the API (serving/routes/campaigns.py: preview, test-send,
performance). The Redis keys are in aura/layout.py (``campaign_*``).

- Message id: ``sha256(campaign|user|occurrence)`` (the occurrence is the trigger event's id, or
  the API call's id), so a replayed trigger yields the same id and the connectors' send record
  (``campaign_sent``) refuses it; the id is also the SMTP Message-ID and the webhooks'
  Idempotency-Key.
- Due entries: the sorted set ``campaign_due`` holds ``Due.member`` -> due time (ms). ZADD NX makes a
  replayed trigger harmless; an ``unless`` event cancels a delayed message when it happened after the
  trigger and before the due time (the last time of each watched type per user is kept with ZADD GT,
  so the order in which the two events are folded does not matter).
- Guards (``decide``): campaign active, audience, holdout (sticky hash), channel consent from the
  profile preferences, an address for the channel, quiet hours in the user's zone (the message is
  deferred to their end), frequency caps per user and channel and per campaign and user.
- Templates: Jinja2's SandboxedEnvironment with StrictUndefined; a render error is the message's
  dead-letter reason.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from aura.state.campaigns import Campaign
from aura.state.experiments import assign, hash_unit, results, two_proportion_test, wilson_interval

ADDRESS_ATTR = {"email": "email", "sms": "phone", "push": "push_token"}  # identity attribute per channel
Z95 = 1.959963984540054

_ENV = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False)


# ---------------------------------------------------------------------------------------------
# ids and due entries


def message_id(campaign_id: str, user_id: str, occurrence: str) -> str:
    """The deterministic id of the message ``campaign_id`` sends ``user_id`` for one trigger occurrence."""
    return hashlib.sha256(f"{campaign_id}|{user_id}|{occurrence}".encode()).hexdigest()[:32]


@dataclass(frozen=True, slots=True)
class Due:
    """One message waiting for its due time: the campaign, the user, the trigger occurrence."""

    campaign_id: str
    user_id: str
    occurrence: str  # trigger event id, or the API call's id
    trigger_ms: int
    event: dict[str, Any]  # the trigger event's fields templates may use (type, item, value, properties)

    @property
    def member(self) -> str:
        return json.dumps([self.campaign_id, self.user_id, self.occurrence, self.trigger_ms, self.event],
                          separators=(",", ":"), sort_keys=True)

    @property
    def message_id(self) -> str:
        return message_id(self.campaign_id, self.user_id, self.occurrence)

    @classmethod
    def parse(cls, member: str) -> Due:
        c, u, o, t, e = json.loads(member)
        return cls(c, u, o, int(t), e)


def trigger_fields(raw: dict[str, Any]) -> dict[str, Any]:
    """The part of a behavior event a due entry keeps for the template (small on purpose)."""
    return {k: raw[k] for k in ("event_type", "item_id", "value", "properties") if raw.get(k) not in (None, {}, [])}


def cancelled(c: Campaign, due: Due, last_unless_ms: int | None) -> bool:
    """Whether an ``unless`` event (its last time for the user) falls inside the trigger's window."""
    return (c.trigger.unless is not None and last_unless_ms is not None
            and due.trigger_ms <= last_unless_ms <= due.trigger_ms + c.trigger.delay_ms)


# ---------------------------------------------------------------------------------------------
# guards


def held_out(c: Campaign, user_id: str) -> bool:
    """Sticky holdout: the user's hash under the campaign decides, with no state per user."""
    return c.holdout > 0 and hash_unit(f"{c.id}:holdout:{user_id}") < c.holdout


def consent(channel: str, prefs: dict[str, Any]) -> bool:
    """Channel consent from the profile preferences (``channels``: opt-in per channel; absent: allowed)."""
    channels = prefs.get("channels") or {}
    return channels.get(channel, True) is not False and channels.get("all", True) is not False


def address(channel: str, attrs: dict[str, Any]) -> str | None:
    """Where the channel reaches the user (email, phone, push token); in-app and webhooks need none."""
    name = ADDRESS_ATTR.get(channel)
    if name is None:
        return ""
    value = attrs.get(name)
    return value if isinstance(value, str) and value else None


def zone(attrs: dict[str, Any], default: str) -> ZoneInfo:
    for name in (attrs.get("timezone"), default, "UTC"):
        if isinstance(name, str):
            try:
                return ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def quiet_until(c: Campaign, attrs: dict[str, Any], now_ms: int) -> int | None:
    """The end of the current quiet period in the user's zone (epoch ms), or None outside one."""
    q = c.quiet_hours
    if q is None:
        return None
    local = datetime.fromtimestamp(now_ms / 1000, tz=UTC).astimezone(zone(attrs, q.tz))
    h = local.hour
    inside = (q.start_hour <= h < q.end_hour) if q.start_hour < q.end_hour else (h >= q.start_hour or h < q.end_hour)
    if not inside:
        return None
    end = local.replace(hour=q.end_hour, minute=0, second=0, microsecond=0)
    if end <= local:
        end += timedelta(days=1)
    return int(end.timestamp() * 1000)


def cap_counts(members: list[str], campaign_id: str) -> tuple[int, int]:
    """(messages of the channel, messages of this campaign) among the cap set's members in the window."""
    return len(members), sum(1 for m in members if m.split("|", 1)[0] == campaign_id)


@dataclass(frozen=True, slots=True)
class Verdict:
    outcome: str  # send | held_out | suppressed | deferred | cancelled
    reason: str = ""
    retry_at: int | None = None  # deferred: when to try again


def decide(c: Campaign, user_id: str, now_ms: int, *, in_audience: bool, prefs: dict[str, Any],
           attrs: dict[str, Any], cap_members: list[str], exists: bool, forced: bool = False) -> Verdict:
    """Whether one due message is sent now (pure). ``forced`` (a test-send) skips schedule, audience,
    holdout, quiet hours and caps, never consent."""
    if not forced:
        if not c.active(now_ms):
            return Verdict("suppressed", f"campaign_{c.status}" if c.status != "running" else "outside_schedule")
        if not in_audience:
            return Verdict("suppressed", "not_in_audience")
    if not exists:
        return Verdict("suppressed", "unknown_or_erased_user")
    if not consent(c.channel, prefs):
        return Verdict("suppressed", "no_consent")
    if address(c.channel, attrs) is None:
        return Verdict("suppressed", f"no_{ADDRESS_ATTR[c.channel]}")
    if forced:
        return Verdict("send")
    if held_out(c, user_id):
        return Verdict("held_out")
    channel_n, campaign_n = cap_counts(cap_members, c.id)
    if c.caps.per_user and channel_n >= c.caps.per_user:
        return Verdict("suppressed", "channel_cap")
    if c.caps.per_campaign_user and campaign_n >= c.caps.per_campaign_user:
        return Verdict("suppressed", "campaign_cap")
    until = quiet_until(c, attrs, now_ms)
    if until is not None:
        return Verdict("deferred", "quiet_hours", until)
    return Verdict("send")


# ---------------------------------------------------------------------------------------------
# templates


def template_error(text: str) -> str | None:
    """A template's syntax error (None: it compiles)."""
    try:
        _ENV.parse(text)
    except TemplateError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


@functools.lru_cache(maxsize=1024)
def compiled(text: str) -> Template:
    """A template part compiled once (the sandbox's checks run at render time, so sharing is safe)."""
    return _ENV.from_string(text)


def variant_of(c: Campaign, user_id: str) -> str | None:
    """The content variant of a treated user (the experiment assignment: sticky, deterministic,
    independent of the holdout's hash); None for a campaign with one content."""
    return assign(c.experiment, user_id) if c.experiment is not None else None


def template_of(c: Campaign, variant: str | None) -> dict[str, str]:
    v = c.experiment.variant(variant) if c.experiment is not None and variant else None
    return v.payload["template"] if v is not None else c.template


def render(c: Campaign, context: dict[str, Any], variant: str | None = None) -> dict[str, str]:
    """Every template part (of ``variant``'s template) rendered with ``context``; raises TemplateError
    (the dead-letter reason)."""
    return {part: compiled(text).render(context) for part, text in template_of(c, variant).items()}


def context(user_id: str, attrs: dict[str, Any], profile: dict[str, Any], event: dict[str, Any],
            recommendations: list[dict[str, Any]], message: dict[str, str]) -> dict[str, Any]:
    """What a template sees: ``user`` (id and identity attributes), ``profile`` (the served profile
    fields), ``event`` (the trigger), ``recommendations`` (item id, score, title, url) and ``message``
    (id, open pixel and click URLs)."""
    return {"user": {"id": user_id, **attrs}, "profile": profile, "event": event,
            "recommendations": recommendations, "message": message}


# ---------------------------------------------------------------------------------------------
# statistics: counts, rates, conversions, lift against the holdout


def lift(treated_c: float, treated_n: float, held_c: float, held_n: float) -> dict[str, Any]:
    """Treated rate - holdout rate with a 95% normal interval, the relative lift and the pooled
    two-proportion z-test (aura/state/experiments.py)."""
    rate_t = treated_c / treated_n if treated_n else 0.0
    rate_h = held_c / held_n if held_n else 0.0
    se = math.sqrt(rate_t * (1 - rate_t) / treated_n + rate_h * (1 - rate_h) / held_n) if treated_n and held_n else 0
    z, p = two_proportion_test(held_c, held_n, treated_c, treated_n)
    return {"absolute": rate_t - rate_h, "ci95": [rate_t - rate_h - Z95 * se, rate_t - rate_h + Z95 * se],
            "relative": (rate_t - rate_h) / rate_h if rate_h else None, "z": z, "p_value": p,
            "significant": bool(treated_n and held_n and p < 0.05)}


def group(g: dict[str, float], name: str) -> dict[str, Any]:
    n, c = g.get(f"qualified:{name}", 0.0), g.get(f"converted:{name}", 0.0)
    return {"users": int(n), "conversions": int(c), "rate": c / n if n else 0.0,
            "ci95": list(wilson_interval(c, n)), "revenue": g.get(f"revenue:{name}", 0.0)}


def variants(c: Campaign, g: dict[str, float]) -> list[dict[str, Any]]:
    """Per content variant: its treated users, conversions, sends, lift against the holdout, and the
    experiment comparison with the first variant (uplift, z-test, chance to beat it)."""
    assert c.experiment is not None
    held_n, held_c = g.get("qualified:holdout", 0.0), g.get("converted:holdout", 0.0)
    tally = {v.id: {"exposed": g.get(f"qualified:treated@{v.id}", 0.0),
                    f"conv:{c.goal.event_type}": g.get(f"converted:treated@{v.id}", 0.0),
                    "revenue": g.get(f"revenue:treated@{v.id}", 0.0)} for v in c.experiment.variants}
    compared = {r["variant"]: r for r in results(c.experiment, tally)["variants"]}
    out = []
    for v in c.experiment.variants:
        row = group(g, f"treated@{v.id}")
        r = compared[v.id]
        out.append({"variant": v.id, "weight": v.weight, **row,
                    "counts": {k.split("@")[0]: int(x) for k, x in g.items()
                               if k.endswith(f"@{v.id}") and ":" not in k},
                    "lift": lift(row["conversions"], row["users"], held_c, held_n),
                    "vs_control": {k: r[k] for k in ("uplift", "z", "p_value", "chance_to_beat_control",
                                                     "expected_loss") if k in r}})
    return out


def performance(c: Campaign, tally: dict[str, float]) -> dict[str, Any]:
    """The campaign's counts and rates from its stats hash, and the lift of its conversion rate over
    the holdout's (difference of proportions with a 95% normal interval, a pooled z-test and each
    group's Wilson interval; the experiment statistics of aura/state/experiments.py); per content
    variant too for an A/B campaign."""
    g = {k: float(v) for k, v in tally.items()}
    sent = g.get("sent", 0.0)
    treated, held = group(g, "treated"), group(g, "holdout")
    counts = {k: int(v) for k, v in sorted(g.items())
              if not k.startswith(("qualified:", "converted:", "revenue")) and "@" not in k}
    out = {
        "campaign_id": c.id, "status": c.status, "channel": c.channel, "counts": counts,
        "rates": {"delivery": g.get("delivered", sent) / sent if sent else 0.0,
                  "open": g.get("opened", 0.0) / sent if sent else 0.0,
                  "click": g.get("clicked", 0.0) / sent if sent else 0.0},
        "goal": {"event_type": c.goal.event_type, "window_s": c.goal.window_ms // 1000},
        "treated": treated, "holdout": held,
        "lift": lift(treated["conversions"], treated["users"], held["conversions"], held["users"]),
    }
    if c.experiment is not None:
        out["variants"] = variants(c, g)
    return out


def aggregates(c: Campaign, tally: dict[str, str], now_ms: int) -> list[dict[str, Any]]:
    """The ``agg_campaign`` records of a campaign: the whole campaign, then each content variant."""
    perf = performance(c, tally)
    counts = perf["counts"]
    base = {"campaign_id": c.id, "status": c.status, "channel": c.channel, "goal_event_type": c.goal.event_type,
            "emitted_at": now_ms, "holdout_users": perf["holdout"]["users"],
            "holdout_conversions": perf["holdout"]["conversions"], "holdout_revenue": perf["holdout"]["revenue"]}

    def record(variant: str | None, counts: dict[str, int], treated: dict[str, Any], lift: dict[str, Any]) -> dict:
        return {**base, "variant": variant, "queued": counts.get("queued", 0), "sent": counts.get("sent", 0),
                "failed": counts.get("failed", 0), "cancelled": counts.get("cancelled", 0),
                "suppressed": sum(n for k, n in counts.items() if k.startswith("suppressed:")),
                "template_errors": counts.get("template_error", 0), "opened": counts.get("opened", 0),
                "clicked": counts.get("clicked", 0), "treated_users": treated["users"],
                "treated_conversions": treated["conversions"], "treated_revenue": treated["revenue"],
                "lift": lift["absolute"], "lift_ci_low": lift["ci95"][0], "lift_ci_high": lift["ci95"][1],
                "p_value": lift["p_value"]}

    out = [record(None, counts, perf["treated"], perf["lift"])]
    for v in perf.get("variants", []):
        out.append(record(v["variant"], v["counts"], v, v["lift"]))
    return out
