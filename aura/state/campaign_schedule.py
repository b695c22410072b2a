"""Scheduled and segment-triggered campaigns: the schedule's definition and occurrences, and the
segment transition records; pure functions shared by the worker (streams/campaign_schedule.py,
streams/segments.py) and the API (validation through aura/state/campaigns.py, progress).

- A **schedule** is a one-off wall-clock time or a cron string (croniter: 5 fields, or 6 with
  seconds last), read in each user's ``timezone`` attribute when ``user_tz`` (else in ``tz``, the
  campaign's zone). An occurrence is named by its wall-clock time (``2026-12-24T09:00:00``); the
  instant it is due for a user is that wall-clock time in the user's zone, so one occurrence spans
  the zones' offsets: it is expanded from its earliest instant (UTC+14) and is over after its
  latest (UTC-12). An ``at`` given in epoch milliseconds or with a UTC offset is an absolute
  instant (the same for everyone).
- A **segment transition** is one real join or leave of a segment, recorded by the segments
  writer's script in the segment's transition stream (``RedisKeys.segment_transitions``) in the
  same atomic step as the SADD/SREM that made it: fields ``u`` (user), ``k`` (``enter``/``leave``),
  ``o`` (origin: ``fold``, ``sweep``, ``backfill``, ``remove``); the stream entry id is the
  occurrence and its time (Redis's clock) the transition's time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

EARLIEST_OFFSET = timedelta(hours=14)  # the most advanced zone (UTC+14) reaches a wall-clock time first
LATEST_OFFSET = timedelta(hours=12)  # the most delayed (UTC-12) last
TRANSITIONS_MAXLEN = 100_000  # a segment's transition stream keeps about this many entries unconsumed
ORIGINS = ("fold", "sweep", "backfill", "remove")
MAX_SCAN = 100_000  # occurrences looked at to find the next one (a cron that never matches in time)


def zone_of(name: Any) -> ZoneInfo | None:
    if not isinstance(name, str):
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return None


@dataclass(frozen=True, slots=True)
class Schedule:
    at: datetime | None  # naive wall-clock (one-off)
    cron: str | None
    tz: str = "UTC"
    user_tz: bool = True

    def instant_ms(self, w: datetime, zone: str | None = None) -> int:
        """``w`` in ``zone`` (a user's; None or unknown: the campaign's) as epoch ms."""
        z = (zone_of(zone) if self.user_tz else None) or zone_of(self.tz) or ZoneInfo("UTC")
        return int(w.replace(tzinfo=z).timestamp() * 1000)

    def window_ms(self, w: datetime) -> tuple[int, int]:
        """(earliest, latest) instant the occurrence ``w`` is due for some user."""
        if not self.user_tz:
            t = self.instant_ms(w)
            return t, t
        utc = int(w.replace(tzinfo=UTC).timestamp() * 1000)
        own = self.instant_ms(w)
        return (min(own, utc - int(EARLIEST_OFFSET.total_seconds() * 1000)),
                max(own, utc + int(LATEST_OFFSET.total_seconds() * 1000)))

    def next_occurrence(self, after: datetime | None, not_before_ms: int) -> datetime | None:
        """The first occurrence after ``after`` (None: any) whose latest instant is >= ``not_before_ms``."""
        if self.at is not None:
            ok = (after is None or self.at > after) and self.window_ms(self.at)[1] >= not_before_ms
            return self.at if ok else None
        slack = EARLIEST_OFFSET + LATEST_OFFSET + timedelta(days=1)  # DST and zone spread
        base = datetime.fromtimestamp(not_before_ms / 1000, tz=UTC).replace(tzinfo=None) - slack
        if after is not None and after > base:
            base = after
        it = croniter(self.cron, base)
        for _ in range(MAX_SCAN):
            w = it.get_next(datetime)
            if self.window_ms(w)[1] >= not_before_ms:
                return w
        return None


def occurrence_key(w: datetime) -> str:
    return w.isoformat()  # full precision: a one-off time in ms must not compare before itself


def parse_occurrence(key: str) -> datetime:
    return datetime.fromisoformat(key)


def parse_schedule(raw: dict[str, Any], errors: list[dict[str, Any]]) -> Schedule | None:
    """``{"type": "schedule", "at" | "cron", "tz", "user_tz"}`` (``raw`` is the trigger) -> Schedule."""
    loc = ["trigger"]
    extra = set(raw) - {"type", "at", "cron", "tz", "user_tz"}
    if extra:
        errors.append({"loc": loc, "msg": f"unknown keys {sorted(extra)}"})
    at, cron = raw.get("at"), raw.get("cron")
    if (at is None) == (cron is None):
        errors.append({"loc": [*loc, "cron" if at is None else "at"],
                       "msg": "exactly one of 'at' (a one-off time) and 'cron' (a recurring schedule)"})
        return None
    tz = raw.get("tz", "UTC")
    if zone_of(tz) is None:
        errors.append({"loc": [*loc, "tz"], "msg": f"unknown time zone {tz!r} (IANA name, e.g. Europe/Paris)"})
        tz = "UTC"
    user_tz = raw.get("user_tz", True)
    if not isinstance(user_tz, bool):
        errors.append({"loc": [*loc, "user_tz"], "msg": "true (each user's time zone) or false (tz only)"})
        user_tz = True
    if cron is not None:
        if not isinstance(cron, str) or len(cron) > 200 or len(cron.split()) not in (5, 6) \
                or not croniter.is_valid(cron):
            errors.append({"loc": [*loc, "cron"],
                           "msg": "a cron string: 5 fields (minute hour day month weekday), or 6 with seconds last"})
            return None
        return Schedule(None, cron, tz, user_tz)
    if isinstance(at, int) and not isinstance(at, bool) and 0 <= at <= 2**53:
        w = datetime.fromtimestamp(at / 1000, tz=UTC).replace(tzinfo=None)
        return Schedule(w, None, "UTC", False)
    if isinstance(at, str) and len(at) <= 64:
        try:
            w = datetime.fromisoformat(at)
        except ValueError:
            w = None
        if w is not None:
            if w.tzinfo is not None:  # an absolute instant
                return Schedule(w.astimezone(UTC).replace(tzinfo=None), None, "UTC", False)
            return Schedule(w, None, tz, user_tz)
    errors.append({"loc": [*loc, "at"], "msg": "epoch milliseconds, or an ISO time: local wall-clock "
                                               "(2026-12-24T09:00) or with an offset (...+01:00)"})
    return None


@dataclass(frozen=True, slots=True)
class Transition:
    id: str  # the stream entry id: the occurrence
    user_id: str
    kind: str  # enter | leave
    origin: str
    at_ms: int


def parse_transition(entry_id: str, fields: dict[str, str]) -> Transition | None:
    try:
        return Transition(entry_id, fields["u"], fields["k"], fields.get("o", "fold"), int(entry_id.split("-")[0]))
    except (KeyError, ValueError):
        return None


def stream_id(text: str | None) -> tuple[int, int]:
    """A stream entry id as a comparable pair (None or malformed: the smallest)."""
    try:
        ms, _, seq = (text or "").partition("-")
        return int(ms), int(seq or 0)
    except ValueError:
        return 0, 0


def fires(on: str, backfill: bool, t: Transition) -> bool:
    """Whether a segment trigger (``on`` enter/leave; ``backfill``: re-evaluations of every profile
    after a segment's definition changed count too) fires on the transition ``t``. A user taken out
    of every segment by an erasure or merge (``remove``) never fires."""
    return t.kind == on and t.origin != "remove" and (backfill or t.origin != "backfill")
