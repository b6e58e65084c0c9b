"""Durable deferral through an outbox, and the declarations of queued work.

Code that must call out (WeCom API, 微签 webhook) from inside a store transaction calls
`defer(task, **kwargs)`. That writes an `Outbox` row in the *same* transaction; `enqueue_outbox()`
hands committed rows to huey after commit. The task deletes its row when it succeeds. huey drops a
task from storage when a worker takes it, so a worker killed mid-task would lose it: the periodic
`sweep_outbox` re-enqueues rows left behind. Every outbox task must therefore be idempotent (they
are: each checks the store before acting).

Tasks and periodic jobs are declared with `@outbox_task(name)` and `@periodic_job(name, when)`,
which only describe them. A capability hands its declarations to the registry at build time
(`app.tasks(...)`, `app.periodic(...)`), and only then does huey know them: nothing registers
itself when a module is imported.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from huey import crontab
from huey.api import Result, Task, TaskWrapper
from huey.storage import RedisStorage, SqliteStorage

from bot.observability.trace import bind_trace, current_trace_id, new_trace_id, unbind_trace
from store import clock, statements
from store.db import is_postgres
from store.models import Delivery, Outbox

from ._huey import huey

log = logging.getLogger("wqbot.queue")

# Deferred work of the transaction now open in this context (see bot.callback / store writes).
_pending: ContextVar[list[Outbox] | None] = ContextVar("wqbot_pending_outbox", default=None)

STALE_AFTER = 120.0  # seconds an outbox row may sit before the sweeper re-enqueues it


@dataclass(frozen=True)
class OutboxTask:
    """Work that `defer()` promises durably. Its function takes keyword arguments only."""

    name: str
    fn: Callable[..., Any]
    retries: int = 8
    retry_delay: int = 5

    def call_local(self, **kwargs: Any) -> Any:
        """Run it here and now, as a worker would (tests, the CLI)."""
        return self.fn(**kwargs)


@dataclass(frozen=True)
class PeriodicJob:
    """Work the consumer's scheduler starts when `when(datetime)` says so (every minute it asks)."""

    name: str
    when: Callable[[datetime], bool]
    fn: Callable[[], Any]

    def call_local(self) -> Any:
        return self.fn()


def outbox_task(name: str, retries: int = 8, retry_delay: int = 5) -> Callable[[Callable[..., Any]], OutboxTask]:
    def declare(fn: Callable[..., Any]) -> OutboxTask:
        return OutboxTask(name, fn, retries, retry_delay)

    return declare


def periodic_job(name: str, when: Callable[[datetime], bool]) -> Callable[[Callable[[], Any]], PeriodicJob]:
    def declare(fn: Callable[[], Any]) -> PeriodicJob:
        return PeriodicJob(name, when, fn)

    return declare


# -- registration (build time) ------------------------------------------------------------------------
_registered: dict[str, TaskWrapper] = {}  # this process's huey tasks by name


def register_task(task: OutboxTask) -> None:
    """Let this process's huey run `task` (a second registration of the same name is a no-op:
    tests build several apps in one process)."""
    if task.name in _registered:
        return

    def run(outbox_id: int | None, kwargs: dict[str, Any], trace_id: str | None = None) -> None:
        token = bind_trace(trace_id or new_trace_id())  # the trace of the delivery that deferred it
        try:
            task.fn(**kwargs)
            if outbox_id is not None:
                Outbox.delete().where(Outbox.id == outbox_id).execute()
        finally:
            unbind_trace(token)

    _registered[task.name] = huey.task(retries=task.retries, retry_delay=task.retry_delay, name=task.name)(run)


def register_periodic(job: PeriodicJob) -> None:
    if job.name in _registered:
        return

    def run() -> Any:
        token = bind_trace(new_trace_id())
        try:
            return job.fn()
        finally:
            unbind_trace(token)

    _registered[job.name] = huey.periodic_task(job.when, name=job.name)(run)


_subscribed: set[tuple[str, Callable[..., Any]]] = set()


def subscribe(signal: str, receiver: Callable[..., Any]) -> None:
    """Connect `receiver` to a huey signal (huey.signals.SIGNAL_ERROR, …), once per process."""
    if (signal, receiver) not in _subscribed:
        _subscribed.add((signal, receiver))
        huey.signal(signal)(receiver)


# -- deferral ---------------------------------------------------------------------------------------
def defer(task: OutboxTask, **kwargs: Any) -> None:
    """Promise `task(**kwargs)` durably: call inside a write transaction."""
    fields = {"task": task.name, "payload": json.dumps(kwargs, ensure_ascii=False), "trace_id": current_trace_id()}
    postgres = is_postgres()
    cursor = statements.insert(Outbox, fields, returning="id" if postgres else None)
    row = Outbox(id=cursor.fetchone()[0] if postgres else cursor.lastrowid, **fields)
    pending = _pending.get()
    if pending is None:
        pending = []
        _pending.set(pending)
    pending.append(row)


def enqueue_outbox() -> int:
    """Hand rows deferred in this context to huey. Call after the transaction committed."""
    return enqueue_rows(take_pending())


def take_pending() -> list[Outbox]:
    """The rows deferred in this context, now forgotten here: the caller enqueues them."""
    rows = _pending.get() or []
    _pending.set(None)
    return rows


def enqueue_rows(rows: list[Outbox]) -> int:
    """Hand committed outbox rows to huey: in one queue write on huey's SQLite and Redis storage
    (a group of callbacks defers dozens of rows; one write transaction, or one round trip, each
    cost more than the callback itself: bench/README.md), else one by one."""
    if not rows:
        return 0
    if len(rows) > 1 and not huey.immediate:
        try:
            messages = [huey.serialize_task(_message(row)) for row in rows]
            if _enqueue_many(messages):
                return len(rows)
        except Exception:  # below, row by row, so one bad row does not hold back the rest
            log.warning("could not enqueue %d outbox rows at once; trying one by one", len(rows), exc_info=True)
    n = 0
    for row in rows:
        try:
            _enqueue(row)
            n += 1
        except Exception:  # the sweeper will pick it up; the effect is already committed
            log.exception("could not enqueue outbox row %s (%s); the sweeper will retry", row.id, row.task)
    return n


def _enqueue_many(messages: list[bytes]) -> bool:
    """Several serialized tasks in one write; False when this storage has no such write."""
    storage = huey.storage
    if isinstance(storage, SqliteStorage):
        with storage.db(commit=True) as cursor:
            cursor.executemany(
                "insert into task (queue, data, priority) values (?, ?, ?)",
                [(storage.name, storage.to_blob(m), 0) for m in messages],
            )
        return True
    if type(storage) is RedisStorage:  # a list, FIFO: LPUSH of several values keeps their order
        storage.conn.lpush(storage.queue_key, *messages)
        return True
    return False


def discard_pending() -> None:
    """The transaction rolled back: forget what it deferred."""
    _pending.set(None)


def _registered_task(name: str) -> TaskWrapper:
    run = _registered.get(name)
    if run is None:
        raise LookupError(f"no queue task named {name!r} in this process (is its capability in bot/app.py?)")
    return run


def _message(row: Outbox) -> Task:
    return _registered_task(row.task).s(row.id, json.loads(row.payload), row.trace_id)


def _enqueue(row: Outbox) -> None:
    huey.enqueue(_message(row))


def enqueue(task: OutboxTask | PeriodicJob, delay: float | None = None, **kwargs: Any) -> Result | None:
    """Queue `task(**kwargs)` without an outbox row, now or after `delay` seconds: for work whose
    own table already says it is owed (a notification still queued, a webhook delivery due),
    which a sweeper drives again if this is lost. A periodic job is queued as its scheduler would."""
    run = _registered_task(task.name)
    args: tuple[Any, ...] = () if isinstance(task, PeriodicJob) else (None, kwargs, current_trace_id())
    if delay:
        return run.schedule(args=args, delay=delay)
    return run(*args)


# -- upkeep -------------------------------------------------------------------------------------------
@periodic_job("wqbot.sweep_outbox", crontab(minute="*"))
def sweep_outbox() -> int:
    """Re-enqueue outbox rows whose queue entry was lost (killed worker, queue down at commit)."""
    cutoff = clock.now() - STALE_AFTER
    n = 0
    for row in Outbox.select().where(Outbox.enqueued_at < cutoff).limit(1000):
        Outbox.update(enqueued_at=clock.now(), attempts=Outbox.attempts + 1).where(Outbox.id == row.id).execute()
        try:
            _enqueue(row)
            n += 1
        except LookupError:
            log.error("outbox row %s names unknown task %s; left in place", row.id, row.task)
    if n:
        log.info("re-enqueued %d outbox rows", n)
    return n


@periodic_job("wqbot.prune_deliveries", crontab(minute="7"))
def prune_deliveries() -> int:
    """Delivery keys only need to outlive WeCom's retries (seconds); keep three days for audits."""
    return Delivery.delete().where(Delivery.received_at < clock.now() - DELIVERY_KEEP_HOURS * 3600).execute()


DELIVERY_KEEP_HOURS = 72.0
