"""Per-key rate limits: GCRA (generic cell rate algorithm), in Redis and as a local fallback.

Owns the ``RedisKeys.api_key_rate`` values (each key's theoretical arrival time, "TAT", in
microseconds of Redis' clock; it expires when the key goes idle).

GCRA is a token bucket stored as one number: a key with rate ``r``/s and burst ``b`` may send a
request at time ``now`` when ``max(tat, now) + 1/r - b/r <= now``; sending moves the TAT on by
``1/r``. One Lua call in Redis authenticates the key AND applies its limit (see
``serving/security.py``). To keep that round trip off most requests, the call takes a *lease*: up
to ``rate * rate_limit_lease_s`` requests (<= 1000, never more than the bucket holds) at once,
which the process then admits locally for at most ``api_key_local_ttl_s``. The shared limit stays
exact in the long run (every admitted request was taken from the shared bucket first); a slow key
(lease of 1) costs one round trip per request, as before. While
Redis is down, :class:`LocalGcra` applies the same limit per process (so N API processes allow up
to N times the rate during an outage; documented in docs/api.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

# KEYS[1]: cached key record (hash), KEYS[2]: the key's TAT; ARGV[1]: SHA-256 of the presented token,
# ARGV[2]: lease length in seconds, ARGV[3]: most requests one lease may hold.
# Returns {-1} cache miss, {-2} wrong token, {-3} revoked,
#         {0, scopes, retry_after_us, rate, burst} limited,
#         {1, scopes, granted, rate, burst} allowed: ``granted`` >= 1 requests were taken from the key's
#         bucket at once (this one and ``granted - 1`` the calling process may admit without asking again).
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
local room = math.floor((now - tat) / interval + burst + 1e-9)
if room < 1 then
  return {0, rec[2], math.ceil(tat + interval - burst * interval - now), rec[3], rec[4]}
end
local want = math.floor(rate * tonumber(ARGV[2]))
if want > tonumber(ARGV[3]) then want = tonumber(ARGV[3]) end
if want < 1 then want = 1 end
if want > room then want = room end
local new_tat = tat + want * interval
redis.call('SET', KEYS[2], string.format('%.0f', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
return {1, rec[2], want, rec[3], rec[4]}
"""
MAX_LEASE = 1000


def lease(tat: float, now: float, rate_per_s: float, burst: int, lease_s: float,
          max_lease: int = MAX_LEASE) -> tuple[int, float, float]:
    """What the Lua script does (pure, seconds): ``(granted, retry_after_s, new_tat)``.

    ``granted`` requests (0 when refused) are taken from the key's GCRA bucket at once: at most
    ``rate * lease_s`` (at least 1, at most ``max_lease``) and never more than the bucket holds now, so
    a process that admits them locally never lets the key exceed its rate + burst overall. With a
    lease of 1 (slow keys, or ``lease_s=0``) this is exactly one GCRA step per request."""
    interval = 1.0 / rate_per_s
    tat = max(tat, now)
    room = math.floor((now - tat) / interval + burst + 1e-9)
    if room < 1:
        return 0, tat + interval - burst * interval - now, tat
    want = max(1, min(math.floor(rate_per_s * lease_s), max_lease, room))
    return want, 0.0, tat + want * interval


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
