"""Where access tokens and JS-SDK tickets are cached, and how one refresh serves everyone.

`TokenStore.get_or_fetch(key, fetch, stale=None, ahead=300)` returns a cached value that is not
due for renewal, or calls `fetch() -> (value, expires_in)` exactly once among concurrent callers
and caches the result. `stale` names a value that just failed: it is dropped only if it is still
the cached one (another thread or process may have refreshed already).

Two levels:

* `LocalTokenStore` is the process's memo and its single flight: threads of one process that need
  a new value wait for one leader. Alone (no shared backend) it is the whole cache.
* A shared backend (`RedisBackend` when QUEUE_URL is Redis, `SQLBackend` on the store otherwise)
  makes the leaders of all processes agree: the one that wins a short lease (Redis `SET NX PX`;
  on the store an upsert that only succeeds on an absent or expired lease row) calls `fetch`, the
  others poll for its result. The lease is held without an open transaction, so a slow gettoken
  never holds a database lock that callback writes wait on. A failed fetch is shared too, for a
  short while, so N processes do not each repeat a refused gettoken (a wrong secret repeated from
  one IP gets that IP blocked for an hour).

Renewal happens ahead of expiry: from `refresh_at` one caller renews while everyone else keeps
using the current value; only a value past `use_until` makes callers wait. If the shared backend
is down, the process keeps its own values (one warning, then one notice when it is back) instead
of calling gettoken per request.
"""

from __future__ import annotations

import copy
import json
import logging
import secrets
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Callable, Protocol

from store.db import SQLITE_PRAGMAS, connect
from store.db import db as main

from ._errors import APIError, BadCredentials, TransportError, WeComError, from_response

log = logging.getLogger("wqbot.wecom")

HARD_MARGIN = 30.0  # seconds before expiry a value is no longer handed out
LEASE_TTL = 60.0  # longest one process may hold the refresh lease (a gettoken with its retries)
WAIT_MAX = LEASE_TTL + 15  # how long a caller waits for someone else's refresh before giving up
POLL = 0.02  # seconds between looks at the shared backend while another process refreshes
FAIL_TTL_CONFIG = 60.0  # a refused gettoken (wrong secret, IP) is remembered this long
FAIL_TTL_TRANSIENT = 5.0  # a timeout or busy answer is remembered this long
DOWN_RETRY = 30.0  # after the shared backend failed, try it again after this long


class SharedUnavailable(Exception):
    """The shared backend did not answer (Redis down, store unreachable, table missing)."""


@dataclass(frozen=True)
class Entry:
    value: str = field(repr=False)
    fetched_at: float
    expires_at: float
    refresh_at: float
    use_until: float

    @classmethod
    def fresh(cls, value: str, expires_in: float, ahead: float, now: float | None = None) -> "Entry":
        now = time.time() if now is None else now
        expires_at = now + expires_in
        # WeCom hands back the same token while it is valid; if that comes with a short expires_in,
        # renewing "ahead" on every call would hammer gettoken, so never renew sooner than this.
        refresh_at = max(expires_at - ahead, now + min(expires_in / 2, 60.0))
        use_until = expires_at - min(HARD_MARGIN, expires_in / 4)
        return cls(value, now, expires_at, min(refresh_at, use_until), use_until)

    def usable(self, now: float, stale: str | None, since: float) -> bool:
        if now >= self.use_until:
            return False
        # the failed value, unless it was fetched again after the caller saw it fail
        return self.value != stale or self.fetched_at >= since

    def dumps(self) -> str:
        return json.dumps(
            {"v": self.value, "f": self.fetched_at, "e": self.expires_at, "r": self.refresh_at, "u": self.use_until}
        )

    @classmethod
    def loads(cls, text: str | bytes | None) -> "Entry | None":
        if not text:
            return None
        try:
            d = json.loads(text)
            return cls(d["v"], d["f"], d["e"], d["r"], d["u"])
        except (ValueError, KeyError, TypeError):
            return None


def fail_ttl(err: BaseException) -> float:
    if isinstance(err, APIError) and err.is_config_error:
        return FAIL_TTL_CONFIG
    return FAIL_TTL_TRANSIENT


def dump_error(err: WeComError) -> str:
    if isinstance(err, APIError):
        return json.dumps(
            {
                "errcode": err.errcode,
                "errmsg": err.errmsg,
                "path": err.path,
                "gettoken": isinstance(err, BadCredentials),
                "creds": err.creds,
            }
        )
    return json.dumps({"transport": getattr(err, "detail", str(err)), "path": getattr(err, "path", "")})


def load_error(text: str | bytes | None) -> WeComError | None:
    if not text:
        return None
    try:
        d = json.loads(text)
        if "transport" in d:
            return TransportError(d["path"], d["transport"] + " (reported by another process)")
        return from_response(
            int(d["errcode"]), d["errmsg"], d["path"], gettoken=bool(d.get("gettoken")), creds=d.get("creds", "app")
        )
    except (ValueError, KeyError, TypeError):
        return None


class SharedBackend(Protocol):
    def blocked_here(self) -> bool: ...  # True: skip the backend for this call
    def session(self): ...  # context manager around several calls
    def read(self, key: str) -> tuple[Entry | None, WeComError | None]: ...
    def try_lease(self, key: str, owner: str, ttl: float) -> bool: ...
    def release(self, key: str, owner: str) -> None: ...
    def write(self, key: str, entry: Entry) -> None: ...
    def write_error(self, key: str, err: WeComError, ttl: float) -> None: ...
    def clear(self) -> None: ...


class TokenStore(Protocol):
    def get_or_fetch(
        self, key: str, fetch: Callable[[], tuple[str, float]], stale: str | None = None, ahead: float = 300
    ) -> str: ...


class _Flight:
    __slots__ = ("done", "entry", "error")

    def __init__(self):
        self.done = threading.Event()
        self.entry: Entry | None = None
        self.error: BaseException | None = None


class LocalTokenStore:
    """The process's cache with single flight per key, optionally in front of a shared backend."""

    def __init__(self, shared: SharedBackend | None = None):
        self.shared = shared
        self._entries: dict[str, Entry] = {}
        self._failures: dict[str, tuple[BaseException, float]] = {}
        self._flights: dict[str, _Flight] = {}
        self._guard = threading.Lock()
        self._down = False
        self._down_until = 0.0

    def __repr__(self) -> str:
        return (
            f"LocalTokenStore(shared={type(self.shared).__name__ if self.shared else None}, keys={len(self._entries)})"
        )

    def get_or_fetch(self, key, fetch, stale=None, ahead=300.0):
        now = time.time()
        e = self._entries.get(key)
        if e is not None and now < e.refresh_at and e.value != stale:
            return e.value
        return self._slow(key, fetch, stale, ahead, now)

    def clear(self) -> None:
        """Forget every value here and in the shared backend (tests, `reset_clients()`)."""
        with self._guard:
            self._entries.clear()
            self._failures.clear()
        if self.shared is not None:
            try:
                self.shared.clear()
            except SharedUnavailable:
                pass

    # -- single flight within the process -------------------------------------------------------
    def _slow(self, key, fetch, stale, ahead, since):
        with self._guard:
            now = time.time()
            e = self._entries.get(key)
            ok = e is not None and e.usable(now, stale, since)
            if ok and now < e.refresh_at:
                return e.value
            failed = self._failures.get(key)
            if failed is not None and failed[1] > now:
                if ok:
                    return e.value
                raise _again(failed[0])
            flight = self._flights.get(key)
            leader = flight is None
            if leader:
                flight = self._flights[key] = _Flight()
            elif ok:
                return e.value  # someone renews ahead of expiry; the current value is still good
        if not leader:
            if not flight.done.wait(WAIT_MAX):
                raise TransportError("gettoken", "timed out waiting for another thread's token refresh")
            if flight.error is not None:
                raise _again(flight.error)
            return flight.entry.value
        try:
            entry = self._obtain(key, fetch, stale, ahead, since, e if ok else None)
        except WeComError as err:
            with self._guard:
                self._failures[key] = (err, time.time() + fail_ttl(err))
            if ok:  # renewing ahead of expiry failed: the current value still serves
                log.warning(
                    "renewing a WeCom token ahead of expiry failed; the current one is used meanwhile",
                    extra={"key": _public(key), "error": str(err)},
                )
                flight.entry = e
                return e.value
            flight.error = err
            raise
        except BaseException as err:
            flight.error = err
            raise
        else:
            flight.entry = entry
            with self._guard:
                self._entries[key] = entry
                self._failures.pop(key, None)
            return entry.value
        finally:
            with self._guard:
                self._flights.pop(key, None)
            flight.done.set()

    def _fetch(self, fetch, ahead) -> Entry:
        value, expires_in = fetch()
        return Entry.fresh(value, float(expires_in), ahead)

    def _obtain(self, key, fetch, stale, ahead, since, current: Entry | None) -> Entry:
        if self.shared is None or time.time() < self._down_until or self.shared.blocked_here():
            return self._fetch(fetch, ahead)
        try:
            return self._obtain_shared(key, fetch, stale, ahead, since, current)
        except SharedUnavailable as e:
            self._mark_down(e)
            return self._fetch(fetch, ahead)

    # -- single flight across processes ----------------------------------------------------------
    def _obtain_shared(self, key, fetch, stale, ahead, since, current):
        sh = self.shared
        owner = secrets.token_hex(8)
        deadline = time.monotonic() + WAIT_MAX
        with sh.session():
            while True:
                e, err = sh.read(key)
                self._mark_up()
                now = time.time()
                ok = e is not None and e.usable(now, stale, since)
                if ok and now < e.refresh_at:
                    return e
                if err is not None:
                    if ok:
                        return e
                    raise err
                if sh.try_lease(key, owner, LEASE_TTL):
                    return self._lead(key, fetch, stale, ahead, since, owner, ok)
                if ok:
                    return e  # another process renews ahead of expiry
                if current is not None:
                    return current
                if time.monotonic() > deadline:
                    raise TransportError("gettoken", "another process started a token refresh and did not finish")
                time.sleep(POLL)

    def _lead(self, key, fetch, stale, ahead, since, owner, current_ok) -> Entry:
        sh = self.shared
        try:
            e, _ = sh.read(key)  # someone may have finished between our read and our lease
            now = time.time()
            if e is not None and e.usable(now, stale, since) and now < e.refresh_at:
                return e
            try:
                entry = self._fetch(fetch, ahead)
            except WeComError as err:
                if not current_ok:
                    try:
                        sh.write_error(key, err, fail_ttl(err))
                    except SharedUnavailable as down:
                        self._mark_down(down)
                raise
            try:
                sh.write(key, entry)
            except SharedUnavailable as down:
                self._mark_down(down)
            return entry
        finally:
            try:
                sh.release(key, owner)
            except SharedUnavailable:
                pass

    def _mark_down(self, e: SharedUnavailable) -> None:
        with self._guard:
            first = not self._down
            self._down, self._down_until = True, time.time() + DOWN_RETRY
        if first:
            log.warning(
                "shared token cache unavailable (%s): this process keeps its own WeCom tokens until it is back", e
            )

    def _mark_up(self) -> None:
        if self._down:
            with self._guard:
                was, self._down = self._down, False
            if was:
                log.info("shared token cache is back")


def _again(err: BaseException) -> BaseException:
    """A copy to raise once more: re-raising one instance from many threads would keep growing
    (and mixing) its traceback."""
    try:
        fresh = copy.copy(err)
    except Exception:
        return err
    fresh.__traceback__ = None
    return fresh


def _public(key: str) -> str:
    return key.rsplit(":", 1)[0]  # without the secret's fingerprint


# -- shared backends ---------------------------------------------------------------------------------
class RedisBackend:
    """Keys under `{namespace}:`: the entry (PX = until expiry), `…:lease`, `…:error`."""

    _RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"

    def __init__(self, client, namespace: str):
        import redis

        self.redis, self.ns = client, namespace
        self._errors = (redis.RedisError,)
        self._release = client.register_script(self._RELEASE)

    def __repr__(self) -> str:
        return f"RedisBackend(namespace={self.ns!r})"

    def _k(self, key: str) -> str:
        return f"{self.ns}:{key}"

    def _do(self, fn):
        try:
            return fn()
        except self._errors as e:
            raise SharedUnavailable(f"Redis: {type(e).__name__}") from None

    def blocked_here(self):
        return False

    def session(self):
        return nullcontext()

    def read(self, key):
        value, error = self._do(lambda: self.redis.mget(self._k(key), self._k(key) + ":error"))
        return Entry.loads(value), load_error(error)

    def try_lease(self, key, owner, ttl):
        return bool(self._do(lambda: self.redis.set(self._k(key) + ":lease", owner, nx=True, px=int(ttl * 1000))))

    def release(self, key, owner):
        self._do(lambda: self._release(keys=[self._k(key) + ":lease"], args=[owner]))

    def write(self, key, entry):
        ttl = max(1, int((entry.expires_at - time.time()) * 1000))

        def run():
            pipe = self.redis.pipeline()
            pipe.set(self._k(key), entry.dumps(), px=ttl)
            pipe.delete(self._k(key) + ":error")
            pipe.execute()

        self._do(run)

    def write_error(self, key, err, ttl):
        self._do(lambda: self.redis.set(self._k(key) + ":error", dump_error(err), px=int(ttl * 1000)))

    def clear(self):
        def run():
            keys = list(self.redis.scan_iter(match=f"{self.ns}:wecom:*", count=500))
            if keys:
                self.redis.delete(*keys)

        self._do(run)


class SQLBackend:
    """Rows of `key_value` (store.models.KeyValue) through the backend's own connections, so a
    caller's open transaction never holds (or rolls back) a token another process waits for."""

    def __init__(self, database_url: str):
        import peewee

        self.db = connect(database_url)
        self._sqlite = isinstance(self.db, peewee.SqliteDatabase)
        if self._sqlite:
            # Give up quickly (and fall back to this process's cache) if a caller's own write
            # transaction holds SQLite's lock, instead of stalling the call for busy_timeout.
            self.db = peewee.SqliteDatabase(
                self.db.database, pragmas={**SQLITE_PRAGMAS, "busy_timeout": 2000}, check_same_thread=False
            )
        self._errors = (peewee.PeeweeException,)
        p = self.db.param
        self._sql_read = f'SELECT "key", value, expires_at FROM key_value WHERE "key" IN ({p}, {p})'
        upsert = (
            f'INSERT INTO key_value ("key", value, expires_at) VALUES ({p}, {p}, {p}) '
            f'ON CONFLICT ("key") DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at'
        )
        self._sql_put = upsert
        self._sql_lease = upsert + f" WHERE key_value.expires_at < {p}"
        self._sql_release = f'DELETE FROM key_value WHERE "key" = {p} AND value = {p}'
        self._sql_delete = f'DELETE FROM key_value WHERE "key" = {p}'
        self._sql_clear = f'DELETE FROM key_value WHERE "key" LIKE {p}'

    def __repr__(self) -> str:
        return "SQLBackend()"

    def _do(self, sql, params, rows: bool = False):
        """Rows (rows=True) or the number of rows changed."""
        try:
            with self.db.connection_context():
                cursor = self.db.execute_sql(sql, params)
                return cursor.fetchall() if rows else cursor.rowcount
        except self._errors as e:
            raise SharedUnavailable(f"store: {type(e).__name__}") from None

    def blocked_here(self):
        """SQLite has one writer: if this thread's store transaction holds it, our own connection
        would wait for a lock this very thread keeps. Fetch without sharing then (rare: a token
        renewal inside a caller's write transaction)."""
        if not self._sqlite:
            return False

        return main.obj is not None and main.in_transaction()

    @contextmanager
    def session(self):
        """One connection for a refresh's several statements (opened and closed here)."""
        ctx = self.db.connection_context()
        try:
            ctx.__enter__()
        except self._errors as e:
            raise SharedUnavailable(f"store: {type(e).__name__}") from None
        try:
            yield
        finally:
            ctx.__exit__(None, None, None)

    def read(self, key):
        now = time.time()
        rows = self._do(self._sql_read, (key, key + ":error"), rows=True)
        found = {k: (v, exp) for k, v, exp in rows if exp is None or exp > now}
        entry = Entry.loads(found.get(key, (None, None))[0])
        return entry, load_error(found.get(key + ":error", (None, None))[0])

    def try_lease(self, key, owner, ttl):
        now = time.time()
        return self._do(self._sql_lease, (key + ":lease", owner, now + ttl, now)) == 1

    def release(self, key, owner):
        self._do(self._sql_release, (key + ":lease", owner))

    def write(self, key, entry):
        self._do(self._sql_put, (key, entry.dumps(), entry.expires_at))
        self._do(self._sql_delete, (key + ":error",))

    def write_error(self, key, err, ttl):
        self._do(self._sql_put, (key + ":error", dump_error(err), time.time() + ttl))

    def clear(self):
        self._do(self._sql_clear, ("wecom:%",))
