"""Where access tokens and JS-SDK tickets are cached.

`TokenStore.get_or_fetch(key, fetch, stale=None, ahead=300)` returns a cached value that is not
within `ahead` seconds of expiry, or calls `fetch() -> (value, expires_in)` exactly once among
concurrent callers and caches the result. `stale` names a value that just failed: it is dropped
only if it is still the cached one.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Protocol


class TokenStore(Protocol):
    def get_or_fetch(self, key: str, fetch: Callable[[], tuple[str, float]], stale: str | None = None,
                     ahead: float = 300) -> str: ...


class LocalTokenStore:
    """In-process cache with a per-key lock (single flight among this process's threads)."""

    def __init__(self):
        self._values: dict[str, tuple[str, float]] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def _lock(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())

    def _fresh(self, key: str, stale: str | None, ahead: float) -> str | None:
        hit = self._values.get(key)
        if hit and hit[0] != stale and hit[1] - ahead > time.time():
            return hit[0]
        return None

    def get_or_fetch(self, key, fetch, stale=None, ahead=300):
        value = self._fresh(key, stale, ahead)
        if value:
            return value
        with self._lock(key):
            value = self._fresh(key, stale, ahead)
            if value:
                return value
            value, expires_in = fetch()
            self._values[key] = (value, time.time() + expires_in)
            return value
