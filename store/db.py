from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import Any
from urllib.parse import unquote, urlsplit

import peewee

db = peewee.DatabaseProxy()

# WAL lets readers run beside the one writer; NORMAL sync is durable across a process kill
# (only an OS crash can lose the last transactions), which is what "acknowledged" needs here.
SQLITE_PRAGMAS: dict[str, Any] = {
    "journal_mode": "wal",
    "synchronous": "normal",
    "busy_timeout": 10000,
    "foreign_keys": 1,
    "cache_size": -32000,
    "temp_store": "memory",
}


def connect(url: str) -> peewee.Database:
    """A peewee Database for DATABASE_URL (not yet bound to the proxy)."""
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///") :] or ":memory:"
        return peewee.SqliteDatabase(path, pragmas=SQLITE_PRAGMAS, check_same_thread=False)
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql"):
        return peewee.PostgresqlDatabase(
            unquote(parts.path.lstrip("/")) or "postgres",
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            host=parts.hostname,
            port=parts.port,
            autoconnect=True,
        )
    raise ValueError(f"DATABASE_URL: unsupported scheme {parts.scheme!r}")


def is_postgres(database: peewee.Database | None = None) -> bool:
    d = database or db.obj
    return isinstance(d, peewee.PostgresqlDatabase)


def write_transaction(database: peewee.Database | None = None) -> AbstractContextManager[Any]:
    """A transaction that will write. On SQLite it takes the write lock up front (BEGIN
    IMMEDIATE, waiting up to busy_timeout): a deferred transaction that reads and then writes
    fails at once with SQLITE_BUSY if another connection committed in between, and the busy
    timeout cannot help it. PostgreSQL needs nothing special. Nested, it is a savepoint.

    SQLite's busy wait is no queue: a waiter sleeps (up to 100 ms at a time) and retries, so a
    thread that commits and begins again at once keeps the lock for as long as it likes. A
    sync writing 100,000 members in back-to-back chunks on the embedded worker's thread held
    every callback commit (on the event loop) until busy_timeout ran out (bench/README.md). So the
    writers of this process also queue for it, first come first served (_WriterQueue)."""
    d = database or db.obj
    if d.in_transaction():
        return nullcontext() if _joining.get() else d.atomic()
    if is_postgres(d):
        return d.atomic()
    return _sqlite_write(d)


_joining: ContextVar[bool] = ContextVar("wqbot_joining_writes", default=False)


@contextmanager
def joining_writes() -> Iterator[None]:
    """Inside, a nested `write_transaction` joins the open transaction instead of opening a
    savepoint. Only for code whose transaction is rolled back as a whole when anything in it
    fails, and which catches no store error: a callback's handlers (bot/callback/deliveries.py).
    There a savepoint buys nothing and costs two statements (two round trips on PostgreSQL)."""
    token = _joining.set(True)
    try:
        yield
    finally:
        _joining.reset(token)


class _WriterQueue:
    """One SQLite file's writers in this process, let in one at a time in the order they came.
    A waiter gives up its place after `timeout` and goes on to SQLite's own busy wait, so no
    wait is longer than before."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._held = False

    def acquire(self, timeout: float) -> bool:
        me = object()
        with self._cond:
            self._waiting.append(me)
            ok = self._cond.wait_for(lambda: not self._held and self._waiting[0] is me, timeout)
            self._waiting.remove(me)
            if ok:
                self._held = True
            else:
                self._cond.notify_all()  # the one behind may be first now
            return ok

    def release(self) -> None:
        with self._cond:
            self._held = False
            self._cond.notify_all()


_writer_queues: dict[str, _WriterQueue] = {}
_writer_queues_guard = threading.Lock()


@contextmanager
def _sqlite_write(d: peewee.Database) -> Iterator[None]:
    with _writer_queues_guard:
        queue = _writer_queues.setdefault(d.database, _WriterQueue())
    queued = queue.acquire(SQLITE_PRAGMAS["busy_timeout"] / 1000)
    try:
        with d.atomic(lock_type="IMMEDIATE"):
            yield
    finally:
        if queued:
            queue.release()
