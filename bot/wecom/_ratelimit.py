"""Client-side rate limits: token buckets per API path per corp, under WeCom's quotas.

WeCom allows 10,000 calls/min and 150,000 calls/h per corp per API (docs/wecom.md, "Quotas") and blocks the
API for the rest of the window when a caller goes over (45009). `Limits(per_min, per_hour)` are
ceilings for any rolling window: each is a bucket whose burst is a slice of the ceiling and whose
refill rate is the rest spread over the window, so a window can never see more than the ceiling
(burst + rate × window = ceiling). Defaults: 8,000/min (burst 1,000) and 120,000/h (burst 20,000),
settable with WECOM_RATE_LIMIT_PER_MIN and WECOM_RATE_LIMIT_PER_HOUR.

`acquire(key, max_wait)` takes one call's worth and returns how long to wait before making the
call (0.0 almost always), or None when the wait would exceed `max_wait` (nothing is taken then).
Waiting is a reservation: the bucket goes negative and later callers queue behind. `block(key, s)`
holds every caller of `key` back for `s` seconds (after WeCom answered 45009/45033).

`LocalRateLimiter` is in-process. `RedisRateLimiter` keeps the buckets in Redis (one Lua script,
Redis's clock) so all processes share them; to keep a call's overhead low it takes a few tokens
at once and spends them locally within a second (unspent ones lapse, which only errs on the safe
side). If Redis is down it falls back to an in-process limiter and says so once.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from dataclasses import dataclass

from settings import Settings

log = logging.getLogger("wqbot.wecom")

GRANT_TTL = 1.0  # seconds a batch taken from Redis may be spent locally


@dataclass(frozen=True)
class Limits:
    per_min: int = 8000
    per_hour: int = 120000

    @classmethod
    def from_settings(cls, settings: Settings) -> "Limits":
        return cls(
            getattr(settings, "wecom_rate_limit_per_min", cls.per_min),
            getattr(settings, "wecom_rate_limit_per_hour", cls.per_hour),
        )

    def buckets(self) -> tuple[tuple[float, float], ...]:
        """(refill per second, capacity) for each window."""
        out = []
        for ceiling, window, share in ((self.per_min, 60.0, 8), (self.per_hour, 3600.0, 6)):
            burst = max(1, math.ceil(ceiling / share))
            out.append((max(ceiling - burst, 1) / window, float(burst)))
        return tuple(out)


class Bucket:
    __slots__ = ("rate", "capacity", "tokens", "stamp")

    def __init__(self, rate: float, capacity: float, now: float):
        self.rate, self.capacity, self.tokens, self.stamp = rate, capacity, capacity, now

    def refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def wait_for_one(self) -> float:
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


class LocalRateLimiter:
    def __init__(self, limits: Limits = Limits(), clock=time.monotonic):
        self.limits, self._clock = limits, clock
        self._buckets: dict[str, tuple[Bucket, ...]] = {}
        self._blocked: dict[str, float] = {}
        self._lock = threading.Lock()

    def acquire(self, key: str, max_wait: float) -> float | None:
        with self._lock:
            now = self._clock()
            buckets = self._buckets.get(key)
            if buckets is None:
                buckets = self._buckets[key] = tuple(Bucket(r, c, now) for r, c in self.limits.buckets())
            wait = max(0.0, self._blocked.get(key, 0.0) - now)
            for b in buckets:
                b.refill(now)
                w = b.wait_for_one()
                if w > wait:
                    wait = w
            if wait > max_wait:
                return None
            for b in buckets:
                b.tokens -= 1
            return wait

    def block(self, key: str, seconds: float) -> None:
        with self._lock:
            until = self._clock() + seconds
            if until > self._blocked.get(key, 0.0):
                self._blocked[key] = until

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
            self._blocked.clear()


# KEYS[1]: the bucket hash. ARGV: want, max_wait_ms, block_ms, then (rate per ms, capacity) per bucket.
# Returns {granted, wait_ms}; granted 0 means refused (the wait would exceed max_wait_ms).
_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local want = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local block = tonumber(ARGV[3])
local blocked = tonumber(redis.call('HGET', KEYS[1], 'blocked') or '0')
local ttl = 0
if block > 0 and now + block > blocked then
  blocked = now + block
  redis.call('HSET', KEYS[1], 'blocked', blocked)
end
if blocked > now then ttl = blocked - now end
if want == 0 then
  redis.call('PEXPIRE', KEYS[1], math.ceil(ttl) + 3600000)
  return {0, 0}
end
local wait = ttl
local grant = want
local n = (#ARGV - 3) / 2
local tokens = {}
for i = 1, n do
  local rate = tonumber(ARGV[2 + 2 * i])
  local cap = tonumber(ARGV[3 + 2 * i])
  local tk = tonumber(redis.call('HGET', KEYS[1], 't' .. i))
  local st = tonumber(redis.call('HGET', KEYS[1], 's' .. i))
  if tk == nil or st == nil then tk = cap; st = now end
  if now > st then tk = math.min(cap, tk + (now - st) * rate) end
  tokens[i] = tk
  if tk < 1 then wait = math.max(wait, (1 - tk) / rate) end
  grant = math.min(grant, math.floor(tk))
  ttl = math.max(ttl, (cap - tk + want) / rate)
end
if wait > 0 then
  if wait > max_wait then return {0, math.ceil(wait)} end
  grant = 1
end
for i = 1, n do
  redis.call('HSET', KEYS[1], 't' .. i, tostring(tokens[i] - grant), 's' .. i, now)
end
redis.call('PEXPIRE', KEYS[1], math.ceil(ttl) + 1000)
return {grant, math.ceil(wait)}
"""


class RedisRateLimiter:
    def __init__(self, client, namespace: str, limits: Limits = Limits(), batch: int | None = None):
        import redis

        self.redis, self.ns, self.limits = client, namespace, limits
        self._errors = (redis.RedisError,)
        self._script = client.register_script(_LUA)
        self._args = [x for rate, cap in limits.buckets() for x in (repr(rate / 1000.0), repr(cap))]
        minute_burst = limits.buckets()[0][1]
        self.batch = batch if batch is not None else int(max(1, min(16, minute_burst // 64)))
        self._grants: dict[str, list] = {}  # key -> [tokens left, spend before (monotonic)]
        self._lock = threading.Lock()
        self._fallback = LocalRateLimiter(limits)
        self._down_until = 0.0
        self._down = False

    def __repr__(self) -> str:
        return f"RedisRateLimiter(namespace={self.ns!r}, limits={self.limits})"

    def _k(self, key: str) -> str:
        return f"{self.ns}:wecom:rate:{key}"

    def acquire(self, key: str, max_wait: float) -> float | None:
        now = time.monotonic()
        with self._lock:
            g = self._grants.get(key)
            if g is not None and g[0] > 0 and now < g[1]:
                g[0] -= 1
                return 0.0
        if now < self._down_until:
            return self._fallback.acquire(key, max_wait)
        try:
            granted, wait_ms = self._script(
                keys=[self._k(key)], args=[self.batch, int(max_wait * 1000), 0, *self._args]
            )
        except self._errors as e:
            self._mark_down(e)
            return self._fallback.acquire(key, max_wait)
        self._mark_up()
        if not granted:
            return None
        if granted > 1:
            with self._lock:
                self._grants[key] = [int(granted) - 1, now + GRANT_TTL]
        return wait_ms / 1000.0

    def block(self, key: str, seconds: float) -> None:
        with self._lock:
            self._grants.pop(key, None)
        self._fallback.block(key, seconds)
        try:
            self._script(keys=[self._k(key)], args=[0, 0, int(seconds * 1000), *self._args])
        except self._errors as e:
            self._mark_down(e)

    def reset(self) -> None:
        with self._lock:
            self._grants.clear()
        self._fallback.reset()
        try:
            keys = list(self.redis.scan_iter(match=self._k("*"), count=500))
            if keys:
                self.redis.delete(*keys)
        except self._errors:
            pass

    def _mark_down(self, e: Exception) -> None:
        first = not self._down
        self._down, self._down_until = True, time.monotonic() + 30.0
        if first:
            log.warning(
                "shared rate limiter unavailable (Redis: %s): limiting per process until it is back", type(e).__name__
            )

    def _mark_up(self) -> None:
        if self._down:
            self._down = False
            log.info("shared rate limiter is back")
