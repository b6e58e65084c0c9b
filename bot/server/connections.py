"""How many connections a `wqbot serve` process holds, and its open-file limit.

Every connection is a file descriptor. Under the usual soft limit of 1,024, one client opening
idle connections used them all up: accept() failed, and with it every /healthz and callback
(docs/security.md). So, at start-up, `wqbot serve` raises its soft RLIMIT_NOFILE to the hard limit,
and each process admits at most `total` connections (the limit less a reserve for the store, the
queue, logs and metrics files) and at most `per_client` from one client (an IPv4 address or an
IPv6 /64; loopback, where nginx connects from, is held only to the total). A connection past
either is closed as soon as it is accepted, so its descriptor comes straight back.
Both numbers are printed at start-up.
"""

from __future__ import annotations

import ipaddress
import resource
from dataclasses import dataclass

from bot.auth.ratelimit import client_key

FILE_LIMIT_CAP = 1 << 20  # when the hard limit is unlimited
RESERVED_FILES = 64  # at least this many descriptors are kept for everything but connections


@dataclass(frozen=True)
class Limits:
    files: int
    total: int
    per_client: int


def raise_file_limit() -> tuple[int, int]:
    """Raise the soft open-file limit to the hard one; (before, after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = FILE_LIMIT_CAP if hard == resource.RLIM_INFINITY else min(hard, FILE_LIMIT_CAP)
    if soft != resource.RLIM_INFINITY and target > soft:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return soft, soft
        return soft, target
    return soft, soft


def limits_for(files: int) -> Limits:
    total = max(16, files - max(RESERVED_FILES, files // 10))
    return Limits(files=files, total=total, per_client=max(16, total // 4))


def current_limits() -> Limits:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return limits_for(FILE_LIMIT_CAP if soft == resource.RLIM_INFINITY else soft)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Admission:
    """The connections one process holds, by client. Runs on the event loop only."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.total = 0
        self.by_client: dict[str, int] = {}

    def admit(self, host: str) -> str | None:
        """Count a new connection from `host`; the key to `release` it with, or None to refuse it."""
        if self.total >= self.limits.total:
            return None
        key = "" if _loopback(host) else client_key(host)
        n = self.by_client.get(key, 0)
        if key and n >= self.limits.per_client:
            return None
        self.by_client[key] = n + 1
        self.total += 1
        return key

    def release(self, key: str) -> None:
        self.total -= 1
        n = self.by_client.get(key, 1) - 1
        if n > 0:
            self.by_client[key] = n
        else:
            self.by_client.pop(key, None)


_admission: Admission | None = None


def admission() -> Admission:
    """This process's admission, sized from its open-file limit when first asked (after start-up
    raised it; uvicorn's worker processes inherit the raised limit)."""
    global _admission
    if _admission is None:
        _admission = Admission(current_limits())
    return _admission
