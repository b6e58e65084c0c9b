"""How fast one client may start logins (/oauth/h5, /wx/qrlogin, /login).

Every start writes a state row, so an anonymous client looping on the start pages competes with
WeCom's callbacks for the store's writer (SQLite has one). A token bucket per client (`client_key`:
an IPv4 address, or an IPv6 /64) lets a person, or an office behind one NAT, start logins at
LOGIN_STARTS_PER_MINUTE with a burst of as many, and refuses the rest with 429.

Per process and in memory: a bucket that has refilled carries no state and is dropped when the
table grows, so the table holds only clients seen in the last minute or so. Floods from many
addresses at once are left to the reverse proxy (nginx `limit_req`, docs/security.md).
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

MAX_CLIENTS = 100_000  # past this many clients with a partly-spent bucket, new ones wait


def client_key(address: str) -> str:
    """Whom a limit counts: an IPv4 address, or an IPv6 client's /64 (one subscriber usually holds
    a whole /64, so counting single IPv6 addresses would count nothing)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class StartLimiter:
    def __init__(self, per_minute: int, now: Callable[[], float] = time.monotonic, max_clients: int = MAX_CLIENTS):
        self.burst = float(per_minute)
        self.rate = per_minute / 60.0  # tokens per second
        self.now, self.max_clients = now, max_clients
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, when)
        self._last_drop = float("-inf")

    def _tokens(self, key: str, t: float) -> float:
        tokens, when = self._buckets.get(key, (self.burst, t))
        return min(self.burst, tokens + (t - when) * self.rate)

    def allow(self, address: str) -> bool:
        """Take one start from `address`'s bucket: False when it is empty (answer 429)."""
        t = self.now()
        key = client_key(address)
        tokens = self._tokens(key, t)
        if tokens < 1.0:
            return False
        if key not in self._buckets and len(self._buckets) >= self.max_clients:
            if t - self._last_drop >= 1.0:  # a full sweep at most once a second, not per request
                self._last_drop = t
                self._drop_refilled(t)
            if len(self._buckets) >= self.max_clients:
                return False
        self._buckets[key] = (tokens - 1.0, t)
        return True

    def _drop_refilled(self, t: float) -> None:
        for key in [k for k in self._buckets if self._tokens(k, t) >= self.burst]:
            del self._buckets[key]

    def retry_after(self, address: str) -> int:
        """Seconds until `address` may start a login again."""
        missing = 1.0 - self._tokens(client_key(address), self.now())
        return max(1, int(missing / self.rate + 0.999))
