"""The delivery-key store, and the one routine that applies verified deliveries.

A delivery's key is the sha1 of its plaintext (WeCom re-encrypts a retry; the plaintext stays
the same), prefixed with the endpoint. It is recorded in the same transaction as its handler's
writes and deferred work, so a delivery is applied exactly once: a retry, or a twin racing it,
finds the key, rolls back what its handler did, and is answered with the reply stored by the
first one.

    outcomes = apply(deliveries)   # per delivery: (True, reply XML or None) or (False, error)

Once committed, the work the handlers deferred goes to the queue in one write.

`apply()` takes any number of deliveries (the group commit hands it what arrived together) and
tries them in one transaction: each handler in turn, then one statement records every key. A
duplicate among them rolls the transaction back; the duplicates get their stored replies and
the rest are tried again. A handler that raises sends the rest to one transaction each, so only
its own delivery fails.
"""

from __future__ import annotations

import contextvars
import logging
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import TypeVar

from bot.queue import discard_pending, enqueue_rows, take_pending
from store import clock, db, prepared
from store.db import is_postgres, joining_writes, write_transaction
from store.models import Delivery as DeliveryRow

from .router import Context, Handler, Inbound

log = logging.getLogger("wqbot.callback")

Outcome = tuple[bool, object]  # (True, reply XML or None) or (False, the exception)
T = TypeVar("T")


class VerifiedDelivery:
    """One delivery that passed every check, on its way through a transaction."""

    __slots__ = ("key", "kind", "msg", "ctx", "handler", "context", "reply")

    def __init__(self, key: str, kind: str, msg: Inbound, ctx: Context, handler: Handler):
        self.key, self.kind, self.msg, self.ctx, self.handler = key, kind, msg, ctx, handler
        # The request's context (its trace id; deferred work lands in it): the handler runs in
        # it, wherever the transaction runs, and the outbox is enqueued from it after commit.
        self.context = contextvars.copy_context()
        self.reply: str | None = None

    def run_handler(self) -> None:
        discard_pending()  # this delivery's deferred work, from an empty list
        # any failure undoes the whole transaction (see `apply`), so the handler's own
        # write_transaction blocks need no savepoints
        with joining_writes():
            reply = self.handler(self.msg, self.ctx)
        self.reply = reply.to_xml(self.msg.sender, self.ctx.settings.wecom_corp_id) if reply is not None else None


class _Duplicates(Exception):
    def __init__(self, keys: set[str]):
        self.keys = keys


def apply(group: list[VerifiedDelivery]) -> list[Outcome]:
    """Apply deliveries, together where possible; an outcome per delivery, in order."""
    first: dict[str, VerifiedDelivery] = {}
    for d in group:  # twins (one delivery twice in the group) share the first one's outcome
        first.setdefault(d.key, d)
    todo = list(first.values())
    outcome: dict[str, Outcome] = {}
    for _ in range(3):
        if not todo:
            break
        try:
            stored = _commit(todo)
        except Exception:
            break  # a handler (or the store) failed: one transaction each, below
        for key, reply in stored.items():
            log.info("duplicate delivery", extra={"delivery": key})
            outcome[key] = (True, reply)
        if not stored:  # committed
            outcome.update((d.key, (True, d.reply)) for d in todo)
            todo = []
        else:  # rolled back: answer the duplicates as before, try the rest again
            todo = [d for d in todo if d.key not in stored]
    for d in todo:
        try:
            stored = _commit([d])
            outcome[d.key] = (True, stored[d.key] if stored else d.reply)
        except Exception as e:
            outcome[d.key] = (False, e)
    # What the committed handlers deferred, handed to the queue at once (a rolled-back or failed
    # delivery's context holds nothing: `_commit` discarded it).
    enqueue_rows([row for d in first.values() for row in d.context.run(take_pending)])
    return [outcome[d.key] for d in group]


def _commit(todo: list[VerifiedDelivery]) -> dict[str, str | None]:
    """One transaction for `todo`. Empty once committed; if some were delivered before, the
    transaction is rolled back and their stored replies are returned."""
    try:
        with write_transaction():
            for d in todo:
                d.context.run(d.run_handler)
            fresh = _record(todo)
            if len(fresh) != len(todo):
                raise _Duplicates({d.key for d in todo} - fresh)
    except BaseException as e:
        for d in todo:
            d.context.run(discard_pending)
        if not isinstance(e, _Duplicates):
            raise
        return _stored_replies(e.keys)
    return {}


# -- the delivery table, in as few statements as possible -----------------------------------------
@lru_cache(maxsize=None)
def _names() -> tuple[str, list[str]]:
    meta = DeliveryRow._meta
    return meta.table_name, [meta.fields[f].column_name for f in ("key", "kind", "received_at", "reply")]


# One statement per group, its RETURNING naming the keys it inserted. SQLite has RETURNING from
# 3.35; with an older library, and for a lone delivery (RETURNING costs it more than rowcount:
# bench/README.md), each row is its own statement, its rowcount saying the same.
SQLITE_RETURNING = sqlite3.sqlite_version_info >= (3, 35)
MAX_ROWS = 64  # the most rows one statement is built for (a group is at most this many)


@lru_cache(maxsize=4 * MAX_ROWS)
def _insert_sql(postgres: bool, n: int, returning: bool = True) -> str:
    table, cols = _names()
    param = "%s" if postgres else "?"
    rows = ", ".join(["(" + ", ".join([param] * 4) + ")"] * n)
    sql = (
        f'INSERT INTO "{table}" ('
        + ", ".join(f'"{c}"' for c in cols)
        + f") VALUES {rows} "
        + f'ON CONFLICT ("{cols[0]}") DO NOTHING'
    )
    return sql + f' RETURNING "{cols[0]}"' if returning else sql


def _record(todo: list[VerifiedDelivery]) -> set[str]:
    """Insert the delivery keys (with their replies) unless present; the keys inserted."""
    database = db.obj
    now = clock.now()
    postgres = is_postgres(database)
    if postgres or (SQLITE_RETURNING and len(todo) > 1):
        params: list[object] = []
        for d in todo:
            params += (d.key, d.kind[:64], now, d.reply)
        sql = _insert_sql(postgres, len(todo))
        return {row[0] for row in prepared.execute(database, sql, params).fetchall()}
    sql, fresh = _insert_sql(False, 1, returning=False), set()
    for d in todo:
        if database.execute_sql(sql, (d.key, d.kind[:64], now, d.reply)).rowcount == 1:
            fresh.add(d.key)
    return fresh


def _stored_replies(keys: set[str]) -> dict[str, str | None]:
    rows = DeliveryRow.select(DeliveryRow.key, DeliveryRow.reply).where(DeliveryRow.key.in_(list(keys)))
    return {row.key: row.reply for row in rows}


# -- PostgreSQL: transactions on store threads ------------------------------------------------------
_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def store_threads(n: int) -> ThreadPoolExecutor:
    """The threads (one PostgreSQL connection each) that run callback transactions."""
    global _executor
    if _executor is None:
        with _executor_lock:
            if _executor is None:
                _executor = ThreadPoolExecutor(max_workers=n, thread_name_prefix="wqbot-callback-store")
    return _executor


def on_usable_connection(fn: Callable[[T], list[Outcome]]) -> Callable[[T], list[Outcome]]:
    """`fn` run on the store thread's connection, first replacing it if it broke (PostgreSQL
    was restarted, the connection was cut): the group that met the break failed and will be
    retried by WeCom; the next one reconnects instead of failing for good."""

    def run(arg: T) -> list[Outcome]:
        database = db.obj
        if not database.is_closed() and not database.is_connection_usable():
            try:
                database.close()
            except Exception:  # already unusable: drop it anyway
                database._state.reset()
        return fn(arg)

    return run
