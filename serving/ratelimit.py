"""Per-key rate limits: GCRA (generic cell rate algorithm), in Redis and as a local fallback.

Owns the ``RedisKeys.api_key_rate`` values (each key's theoretical arrival time, "TAT", in
microseconds of Redis' clock; it expires when the key goes idle).

GCRA is a token bucket stored as one number: a key with rate ``r``/s and burst ``b`` may send a
request at time ``now`` when ``max(tat, now) + 1/r - b/r <= now``; sending moves the TAT on by
``1/r``. One Lua call in Redis authenticates the key AND applies its limit (see
``serving/security.py``), so the shared limit across API processes costs one round trip. While
Redis is down, :class:`LocalGcra` applies the same limit per process (so N API processes allow up
to N times the rate during an outage; documented in docs/api.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# KEYS[1]: cached key record (hash), KEYS[2]: the key's TAT; ARGV[1]: SHA-256 of the presented token.
# Returns {-1} cache miss, {-2} wrong token, {-3} revoked,
#         {0, scopes, retry_after_us, rate, burst} limited, {1, scopes, remaining, rate, burst} allowed.
AUTH_AND_LIMIT_LUA = """
local rec = redis.call('HMGET', KEYS[1], 'hash', 'scopes', 'rate', 'burst', 'revoked')
if not rec[1] then return {-1} end
if rec[1] ~= ARGV[1] then return {-2} end
if rec[5] == '1' then return {-3} end
local rate = tonumber(rec[3])
local burst = tonumber(rec[4])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = 1000000 / rate
local tat = tonumber(redis.call('GET', KEYS[2]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - burst * interval
if allow_at > now then
  return {0, rec[2], math.ceil(allow_at - now), rec[3], rec[4]}
end
redis.call('SET', KEYS[2], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, rec[2], math.floor((now - allow_at) / interval), rec[3], rec[4]}
"""


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    retry_after_s: float  # 0 when allowed
    remaining: int  # requests still allowed right now (burst left)


def gcra(tat: float, now: float, rate_per_s: float, burst: int) -> tuple[Verdict, float]:
    """One GCRA step (pure): the verdict and the new TAT (unchanged when refused). Times in seconds."""
    interval = 1.0 / rate_per_s
    new_tat = max(tat, now) + interval
    allow_at = new_tat - burst * interval
    if allow_at > now:
        return Verdict(False, allow_at - now, 0), tat
    return Verdict(True, 0.0, int((now - allow_at) / interval)), new_tat


def retry_after_header(seconds: float) -> str:
    """Retry-After in whole seconds (HTTP), at least 1."""
    return str(max(1, math.ceil(seconds)))


@dataclass
class LocalGcra:
    """Per-process GCRA for when Redis is unreachable (bounded memory: idle keys are dropped)."""

    clock: Callable[[], float] = time.monotonic
    max_keys: int = 100_000
    tats: dict[str, float] = field(default_factory=dict)

    def hit(self, key: str, rate_per_s: float, burst: int) -> Verdict:
        now = self.clock()
        if len(self.tats) >= self.max_keys:
            self.tats = {k: t for k, t in self.tats.items() if t > now}
        verdict, self.tats[key] = gcra(self.tats.get(key, 0.0), now, rate_per_s, burst)
        return verdict
