"""Campaign definitions: the document, its validation and its lifecycle.

A campaign is a JSON document (stored by serving/routes/campaigns.py in Cassandra behind the
versioned configuration cache, aura/configcache.py; read by the worker's trigger owner,
streams/campaigns.py, through the same cache). Pure functions over plain data:

- ``validate_campaign`` checks a document and builds a ``Campaign``, naming every bad field
  (``CampaignError.errors`` in the rules' and experiments' ``{"loc", "msg"}`` shape, a 422 at the API);
- ``transition`` moves it through draft -> scheduled -> running <-> paused -> completed -> archived;
- ``triggered_by`` says which campaigns an event starts and which event cancels a delayed trigger.

What happens to one message (ids, guards, templates, statistics) is aura/state/campaign_sends.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aura.errors import DefinitionError
from aura.state.campaign_schedule import Schedule, parse_schedule
from aura.state.experiments import Experiment, Variant
from aura.state.rules import Condition, Group, parse_condition
from schemas.events import BEHAVIOR_TYPES

CHANNELS = ("email", "push", "sms", "webhook", "in_app")
STATUSES = ("draft", "scheduled", "running", "paused", "completed", "archived")
TRANSITIONS: dict[str, frozenset[str]] = {
    "draft": frozenset({"scheduled", "running", "archived"}),
    "scheduled": frozenset({"running", "paused", "draft", "archived"}),
    "running": frozenset({"paused", "completed"}),
    "paused": frozenset({"running", "completed"}),
    "completed": frozenset({"archived"}),
    "archived": frozenset(),
}
LIVE = frozenset({"scheduled", "running", "paused"})  # count toward max_concurrent_campaigns when running
ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
AUDIENCES = ("everyone", "segment", "rule", "users")
TRIGGERS = ("event", "api", "segment", "schedule")
MAX_USERS = 100_000  # explicit user list
MAX_TEMPLATE = 100_000  # characters per template part
MAX_DELAY_S = 30 * 24 * 3600
MAX_VARIANTS = 10
VARIANT_ID_RE = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")
TEMPLATE_PARTS = ("subject", "body", "html", "title", "url")
REQUIRED_PARTS = {"email": ("subject", "body"), "push": ("title", "body"), "sms": ("body",),
                  "webhook": ("body",), "in_app": ("title", "body")}
KNOWN = {"id", "name", "description", "channel", "status", "audience", "trigger", "template", "schedule",
         "caps", "quiet_hours", "holdout", "goal", "variants", "created_at", "updated_at", "version",
         *(f"{s}_at" for s in STATUSES)}


class CampaignError(DefinitionError):
    """A campaign document or transition that cannot be accepted; ``errors`` lists ``{"loc", "msg"}``."""


@dataclass(frozen=True, slots=True)
class Audience:
    kind: str  # everyone | segment | rule | users
    segment: str | None = None
    rule: Condition | Group | None = None
    users: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Trigger:
    kind: str  # event | api
    event_type: str | None = None
    delay_ms: int = 0
    unless: str | None = None  # an event of this type inside the delay cancels the message
    item_id: str | None = None  # only events on this item
    segment: str | None = None  # segment: the segment whose joins (on=enter) or leaves fire it
    on: str = "enter"
    backfill: bool = False  # segment: joins found by a backfill (a new or changed segment) fire too
    schedule: Schedule | None = None  # schedule: when its audience is sent to


@dataclass(frozen=True, slots=True)
class Caps:
    per_user: int = 0  # messages of this channel per user per window, over every campaign (0: no cap)
    window_ms: int = 24 * 3600 * 1000
    per_campaign_user: int = 1  # messages of this campaign per user and window (0: no cap)


@dataclass(frozen=True, slots=True)
class QuietHours:
    start_hour: int  # local hour the quiet period starts (inclusive)
    end_hour: int  # local hour it ends (exclusive); start > end wraps midnight
    tz: str = "UTC"  # default zone; a user's ``timezone`` attribute wins


@dataclass(frozen=True, slots=True)
class Goal:
    event_type: str = "purchase"
    window_ms: int = 7 * 24 * 3600 * 1000
    item_id: str | None = None


@dataclass(frozen=True, slots=True)
class Campaign:
    id: str
    status: str
    channel: str
    audience: Audience
    trigger: Trigger
    template: dict[str, str]
    caps: Caps
    quiet_hours: QuietHours | None
    holdout: float
    goal: Goal
    start_ms: int | None
    end_ms: int | None
    doc: dict[str, Any] = field(compare=False, repr=False)
    running_at: int | None = None  # when it last started running: older events never trigger it
    # A/B content: an experiment over the treated users (salt ``campaign:<id>``, full coverage, the
    # first variant the control); each variant's payload is its whole template (None: one content)
    experiment: Experiment | None = None

    def triggers_at(self, event_ms: int, now_ms: int) -> bool:
        """Active now, and the event happened since the campaign (last) started running: a replay of
        older history (a new consumer group reads from the earliest offset) sends nothing."""
        return self.active(now_ms) and (self.running_at is None or event_ms >= self.running_at)

    def active(self, now_ms: int) -> bool:
        """Running, and inside its schedule window."""
        return (self.status == "running" and (self.start_ms is None or now_ms >= self.start_ms)
                and (self.end_ms is None or now_ms < self.end_ms))


def _int(v: Any, lo: int, hi: int) -> int | None:
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        return None
    return v


def _audience(raw: Any, errors: list[dict[str, Any]], segments: frozenset[str] | None) -> Audience:
    if raw is None:
        return Audience("everyone")
    if not isinstance(raw, dict) or raw.get("type") not in AUDIENCES:
        errors.append({"loc": ["audience", "type"], "msg": f"audience type must be one of {list(AUDIENCES)}"})
        return Audience("everyone")
    kind = raw["type"]
    extra = set(raw) - {"type", {"segment": "segment", "rule": "condition", "users": "users"}.get(kind, "type")}
    if extra:
        errors.append({"loc": ["audience"], "msg": f"unknown keys {sorted(extra)} for audience type {kind}"})
    if kind == "segment":
        seg = raw.get("segment")
        if not isinstance(seg, str) or not seg:
            errors.append({"loc": ["audience", "segment"], "msg": "a segment name is required"})
        elif segments is not None and seg not in segments:
            errors.append({"loc": ["audience", "segment"],
                           "msg": f"unknown segment {seg!r}; known: {sorted(segments)}"})
        return Audience("segment", segment=seg if isinstance(seg, str) else None)
    if kind == "rule":
        cond = parse_condition(raw.get("condition"), ["audience", "condition"], errors, 1, [0])
        return Audience("rule", rule=cond)
    if kind == "users":
        users = raw.get("users")
        if (not isinstance(users, list) or not users or len(users) > MAX_USERS
                or not all(isinstance(u, str) and 0 < len(u) <= 256 for u in users)):
            errors.append({"loc": ["audience", "users"], "msg": f"a non-empty list (<= {MAX_USERS}) of user ids"})
            return Audience("users")
        return Audience("users", users=frozenset(users))
    return Audience("everyone")


def _trigger(raw: Any, errors: list[dict[str, Any]], segments: frozenset[str] | None = None) -> Trigger:
    if not isinstance(raw, dict) or raw.get("type") not in TRIGGERS:
        errors.append({"loc": ["trigger", "type"], "msg": f"trigger type must be one of {list(TRIGGERS)}"})
        return Trigger("api")
    if raw["type"] == "schedule":
        return Trigger("schedule", schedule=parse_schedule(raw, errors))
    if raw["type"] == "segment":
        return _segment_trigger(raw, errors, segments)
    if raw["type"] == "api":
        if set(raw) - {"type"}:
            errors.append({"loc": ["trigger"], "msg": "an api trigger takes no other keys"})
        return Trigger("api")
    extra = set(raw) - {"type", "event_type", "delay_s", "unless", "item_id"}
    if extra:
        errors.append({"loc": ["trigger"], "msg": f"unknown keys {sorted(extra)}"})
    ev = raw.get("event_type")
    if ev not in BEHAVIOR_TYPES:
        errors.append({"loc": ["trigger", "event_type"], "msg": f"one of the behavior types {sorted(BEHAVIOR_TYPES)}"})
    delay = raw.get("delay_s", 0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= MAX_DELAY_S:
        errors.append({"loc": ["trigger", "delay_s"], "msg": f"seconds in [0, {MAX_DELAY_S}]"})
        delay = 0
    unless = raw.get("unless")
    if unless is not None:
        if unless not in BEHAVIOR_TYPES:
            errors.append({"loc": ["trigger", "unless"], "msg": f"one of the behavior types {sorted(BEHAVIOR_TYPES)}"})
        elif not delay:
            errors.append({"loc": ["trigger", "delay_s"], "msg": "'unless' needs a positive delay_s (the window)"})
    item = raw.get("item_id")
    if item is not None and (not isinstance(item, str) or not item):
        errors.append({"loc": ["trigger", "item_id"], "msg": "an item id"})
    return Trigger("event", ev if isinstance(ev, str) else None, int(delay * 1000), unless, item)


def _segment_trigger(raw: dict[str, Any], errors: list[dict[str, Any]], segments: frozenset[str] | None) -> Trigger:
    """``{"type": "segment", "segment", "on": "enter" | "leave", "delay_s", "backfill": false}``."""
    extra = set(raw) - {"type", "segment", "on", "delay_s", "backfill"}
    if extra:
        errors.append({"loc": ["trigger"], "msg": f"unknown keys {sorted(extra)}"})
    seg, on, backfill = raw.get("segment"), raw.get("on", "enter"), raw.get("backfill", False)
    if not isinstance(seg, str) or not seg:
        errors.append({"loc": ["trigger", "segment"], "msg": "a segment name is required"})
    elif segments is not None and seg not in segments:
        errors.append({"loc": ["trigger", "segment"], "msg": f"unknown segment {seg!r}; known: {sorted(segments)}"})
    if on not in ("enter", "leave"):
        errors.append({"loc": ["trigger", "on"], "msg": "'enter' or 'leave'"})
    if not isinstance(backfill, bool):
        errors.append({"loc": ["trigger", "backfill"], "msg": "true or false"})
    delay = raw.get("delay_s", 0)
    if isinstance(delay, bool) or not isinstance(delay, int | float) or not 0 <= delay <= MAX_DELAY_S:
        errors.append({"loc": ["trigger", "delay_s"], "msg": f"seconds in [0, {MAX_DELAY_S}]"})
        delay = 0
    return Trigger("segment", delay_ms=int(delay * 1000), segment=seg if isinstance(seg, str) else None,
                   on=on if on in ("enter", "leave") else "enter", backfill=backfill is True)


def _caps(raw: Any, errors: list[dict[str, Any]]) -> Caps:
    if raw is None:
        return Caps()
    if not isinstance(raw, dict) or set(raw) - {"per_user", "window_s", "per_campaign_user"}:
        errors.append({"loc": ["caps"], "msg": "an object with per_user, window_s, per_campaign_user"})
        return Caps()
    out = {}
    for k, lo, hi, default in (("per_user", 0, 1000, 0), ("window_s", 1, 366 * 86400, 86400),
                               ("per_campaign_user", 0, 1000, 1)):
        v = _int(raw.get(k, default), lo, hi)
        if v is None:
            errors.append({"loc": ["caps", k], "msg": f"an integer in [{lo}, {hi}]"})
            v = default
        out[k] = v
    return Caps(out["per_user"], out["window_s"] * 1000, out["per_campaign_user"])


def _quiet(raw: Any, errors: list[dict[str, Any]]) -> QuietHours | None:
    if raw is None:
        return None
    if not isinstance(raw, dict) or set(raw) - {"start_hour", "end_hour", "tz"}:
        errors.append({"loc": ["quiet_hours"], "msg": "an object with start_hour, end_hour and tz"})
        return None
    start, end = _int(raw.get("start_hour"), 0, 23), _int(raw.get("end_hour"), 0, 23)
    if start is None:
        errors.append({"loc": ["quiet_hours", "start_hour"], "msg": "an hour in [0, 23]"})
    if end is None:
        errors.append({"loc": ["quiet_hours", "end_hour"], "msg": "an hour in [0, 23]"})
    tz = raw.get("tz", "UTC")
    if not isinstance(tz, str) or not zone_ok(tz):
        errors.append({"loc": ["quiet_hours", "tz"], "msg": f"unknown time zone {tz!r} (IANA name, e.g. Europe/Paris)"})
    if start is None or end is None or start == end:
        if start is not None and start == end:
            errors.append({"loc": ["quiet_hours", "end_hour"], "msg": "must differ from start_hour"})
        return None
    return QuietHours(start, end, tz if isinstance(tz, str) else "UTC")


def zone_ok(name: str) -> bool:
    """Whether ``name`` is a time zone this machine knows."""
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a name too long for a file name
        return False
    return True


def _goal(raw: Any, errors: list[dict[str, Any]]) -> Goal:
    if raw is None:
        return Goal()
    if not isinstance(raw, dict) or set(raw) - {"event_type", "window_s", "item_id"}:
        errors.append({"loc": ["goal"], "msg": "an object with event_type, window_s, item_id"})
        return Goal()
    ev = raw.get("event_type", "purchase")
    if ev not in BEHAVIOR_TYPES:
        errors.append({"loc": ["goal", "event_type"], "msg": f"one of the behavior types {sorted(BEHAVIOR_TYPES)}"})
    window = _int(raw.get("window_s", 7 * 86400), 60, 90 * 86400)
    if window is None:
        errors.append({"loc": ["goal", "window_s"], "msg": "an integer of seconds in [60, 7776000]"})
        window = 7 * 86400
    item = raw.get("item_id")
    if item is not None and (not isinstance(item, str) or not item):
        errors.append({"loc": ["goal", "item_id"], "msg": "an item id"})
    return Goal(ev, window * 1000, item)


def validate_campaign(doc: Any, segments: frozenset[str] | None = None,
                      check_template: Any = None) -> Campaign:
    """Check a campaign document and build it; raises CampaignError listing every problem.

    ``segments``: the known segment names (None: not checked); ``check_template(text) -> str | None``
    returns a template's syntax error (aura/state/campaign_sends.py ``template_error``)."""
    if not isinstance(doc, dict):
        raise CampaignError([{"loc": [], "msg": "a campaign must be a JSON object"}])
    errors: list[dict[str, Any]] = []
    for k in sorted(set(doc) - KNOWN):
        errors.append({"loc": [k], "msg": f"unknown key; known: {sorted(KNOWN)}"})
    cid = doc.get("id")
    if not isinstance(cid, str) or not ID_RE.match(cid):
        errors.append({"loc": ["id"], "msg": "id is required: 1-64 of letters, digits, '_', '.', '-'"})
    name = doc.get("name", cid)
    if not isinstance(name, str) or len(name) > 200:
        errors.append({"loc": ["name"], "msg": "a string of at most 200 characters"})
    status = doc.get("status", "draft")
    if status not in STATUSES:
        errors.append({"loc": ["status"], "msg": f"status must be one of {list(STATUSES)}"})
    channel = doc.get("channel")
    if channel not in CHANNELS:
        errors.append({"loc": ["channel"], "msg": f"channel must be one of {list(CHANNELS)}"})
    audience = _audience(doc.get("audience"), errors, segments)
    trigger = _trigger(doc.get("trigger", {"type": "api"}), errors, segments)
    template: dict[str, str] = {}
    raw_t = doc.get("template")
    if not isinstance(raw_t, dict):
        errors.append({"loc": ["template"], "msg": f"an object with the parts {list(TEMPLATE_PARTS)}"})
    else:
        for k in sorted(set(raw_t) - set(TEMPLATE_PARTS)):
            errors.append({"loc": ["template", k], "msg": f"unknown part; known: {list(TEMPLATE_PARTS)}"})
        for part in REQUIRED_PARTS.get(channel, ()) if isinstance(channel, str) else ():
            if part not in raw_t:
                errors.append({"loc": ["template", part], "msg": f"required for the {channel} channel"})
        for part, text in raw_t.items():
            if part not in TEMPLATE_PARTS:
                continue
            if not isinstance(text, str) or len(text) > MAX_TEMPLATE:
                errors.append({"loc": ["template", part], "msg": f"a string of at most {MAX_TEMPLATE} characters"})
                continue
            problem = check_template(text) if check_template else None
            if problem:
                errors.append({"loc": ["template", part], "msg": f"invalid template: {problem}"})
            template[part] = text
    start = end = None
    sched = doc.get("schedule")
    if sched is not None:
        if not isinstance(sched, dict) or set(sched) - {"start_at", "end_at"}:
            errors.append({"loc": ["schedule"], "msg": "an object with start_at and end_at (epoch ms)"})
        else:
            start, end = sched.get("start_at"), sched.get("end_at")
            for k, v in (("start_at", start), ("end_at", end)):
                if v is not None and _int(v, 0, 2**53) is None:
                    errors.append({"loc": ["schedule", k], "msg": "epoch milliseconds"})
            if isinstance(start, int) and isinstance(end, int) and end <= start:
                errors.append({"loc": ["schedule", "end_at"], "msg": "must be after start_at"})
    holdout = doc.get("holdout", 0.0)
    if isinstance(holdout, bool) or not isinstance(holdout, int | float) or not 0 <= holdout < 1:
        errors.append({"loc": ["holdout"], "msg": "the held-out share of qualifying users, in [0, 1)"})
        holdout = 0.0
    caps, quiet, goal = _caps(doc.get("caps"), errors), _quiet(doc.get("quiet_hours"), errors), _goal(doc.get("goal"),
                                                                                                      errors)
    variants = _variants(doc.get("variants"), template, channel, errors, check_template)
    experiment = Experiment(id=f"campaign:{cid}", status="running", salt=f"campaign:{cid}", variants=variants,
                            control=variants[0].id, coverage=1.0, targeting=None,
                            conversion_events=(goal.event_type,), winner=None, doc={}) if variants else None
    if errors:
        raise CampaignError(errors)
    return Campaign(id=cid, status=status, channel=channel, audience=audience, trigger=trigger, template=template,
                    caps=caps, quiet_hours=quiet, holdout=float(holdout), goal=goal, start_ms=start, end_ms=end,
                    doc=doc, running_at=doc.get("running_at") if isinstance(doc.get("running_at"), int) else None,
                    experiment=experiment)


def _variants(raw: Any, base: dict[str, str], channel: Any, errors: list[dict[str, Any]],
              check_template: Any) -> tuple[Variant, ...]:
    """``[{"id", "weight", "template": {parts replacing the campaign's}}, ...]``: 2 to 10 contents,
    each user getting one by the experiment assignment; weights are relative."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or not 2 <= len(raw) <= MAX_VARIANTS:
        errors.append({"loc": ["variants"], "msg": f"a list of 2 to {MAX_VARIANTS} variants"})
        return ()
    out: list[tuple[str, float, dict[str, str]]] = []
    for i, v in enumerate(raw):
        if not isinstance(v, dict) or set(v) - {"id", "weight", "template"}:
            errors.append({"loc": ["variants", i], "msg": "an object with id, weight and template"})
            continue
        vid, weight, parts = v.get("id"), v.get("weight", 1.0), v.get("template", {})
        if not isinstance(vid, str) or not VARIANT_ID_RE.match(vid) or vid in {o[0] for o in out}:
            errors.append({"loc": ["variants", i, "id"], "msg": "a unique id: 1-32 of letters, digits, '_', '-'"})
            continue
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight <= 1e6:
            errors.append({"loc": ["variants", i, "weight"], "msg": "a positive relative weight"})
            continue
        if not isinstance(parts, dict) or set(parts) - set(TEMPLATE_PARTS):
            errors.append({"loc": ["variants", i, "template"],
                           "msg": f"an object with some of the parts {list(TEMPLATE_PARTS)}"})
            continue
        merged = dict(base)
        for part, text in parts.items():
            if not isinstance(text, str) or len(text) > MAX_TEMPLATE:
                errors.append({"loc": ["variants", i, "template", part],
                               "msg": f"a string of at most {MAX_TEMPLATE} characters"})
                continue
            problem = check_template(text) if check_template else None
            if problem:
                errors.append({"loc": ["variants", i, "template", part], "msg": f"invalid template: {problem}"})
            merged[part] = text
        out.append((vid, float(weight), merged))
    total = sum(w for _i, w, _t in out)
    return tuple(Variant(vid, w / total, {"template": t}) for vid, w, t in out) if len(out) == len(raw) else ()


def transition(doc: dict[str, Any], to: str) -> dict[str, Any]:
    """The document after a lifecycle change; raises CampaignError on an illegal one."""
    current = doc.get("status", "draft")
    if to not in STATUSES:
        raise CampaignError([{"loc": ["status"], "msg": f"status must be one of {list(STATUSES)}"}])
    if to not in TRANSITIONS[current]:
        raise CampaignError([{"loc": ["status"], "msg": f"cannot go from {current} to {to}; allowed: "
                                                        f"{sorted(TRANSITIONS[current]) or 'none (final)'}"}])
    return {**doc, "status": to}


def triggered_by(campaigns: list[Campaign], event_type: str, item_id: str | None, now_ms: int,
                 event_ms: int | None = None) -> list[Campaign]:
    """The active campaigns an event of ``event_type`` (on ``item_id``, at ``event_ms``) triggers."""
    at = now_ms if event_ms is None else event_ms
    return [c for c in campaigns if c.trigger.kind == "event" and c.trigger.event_type == event_type
            and (c.trigger.item_id is None or c.trigger.item_id == item_id) and c.triggers_at(at, now_ms)]


API_TRIGGER_PROPERTY = "aura_campaign"  # a custom event with this property triggers that api campaign


def api_triggered(campaigns: dict[str, Campaign], event_type: str, properties: dict[str, Any],
                  now_ms: int, event_ms: int | None = None) -> list[Campaign]:
    """The active api-triggered campaign a transactional trigger event names (POST /campaigns/{id}/trigger
    produces a ``custom`` event carrying ``properties.aura_campaign``)."""
    if event_type != "custom":
        return []
    c = campaigns.get(str(properties.get(API_TRIGGER_PROPERTY) or ""))
    at = now_ms if event_ms is None else event_ms
    return [c] if c is not None and c.trigger.kind == "api" and c.triggers_at(at, now_ms) else []


def watched_types(campaigns: list[Campaign]) -> frozenset[str]:
    """Event types whose last time per user the trigger owner records (cancellations and goals)."""
    return frozenset({c.trigger.unless for c in campaigns if c.trigger.unless})
