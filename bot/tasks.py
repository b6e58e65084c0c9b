"""The one huey instance, and the outbox that makes queued work survive a killed process.

`QUEUE_URL` picks the storage: `sqlite:///…` (embedded default, one process), `redis://…`
(several workers), `memory://` (tests). Tests may also set `huey.immediate = True`.

Durable deferral: code that must call out (WeCom API, 微签 webhook) from inside a store
transaction calls `defer(task, **kwargs)`. That writes an `Outbox` row in the *same*
transaction; `enqueue_outbox()` hands committed rows to huey after commit. The task deletes its
row when it succeeds. huey drops a task from storage when a worker takes it, so a worker killed
mid-task would lose it: the periodic `sweep_outbox` re-enqueues rows left behind. Every outbox
task must therefore be idempotent (they are: each checks the store before acting).
"""

from __future__ import annotations

import json
import logging
import os
from contextvars import ContextVar

from huey import MemoryHuey, RedisHuey, SqliteHuey, crontab

from settings import get_settings
from store import clock

log = logging.getLogger("wqbot.queue")

# Deferred work of the transaction now open in this context (see bot.callbacks / store writes).
_pending: ContextVar[list | None] = ContextVar("wqbot_pending_outbox", default=None)

STALE_AFTER = 120.0  # seconds an outbox row may sit before the sweeper re-enqueues it


def make_huey(queue_url: str, name: str = "wqbot"):
    if queue_url.startswith(("redis://", "rediss://")):
        return RedisHuey(name, url=queue_url, utc=True)
    if queue_url.startswith("memory://"):
        return MemoryHuey(name, utc=True)
    path = queue_url[len("sqlite:///") :]
    return SqliteHuey(name, filename=path, utc=True, timeout=10)


def _queue_url() -> str:
    # The queue is chosen before any settings are needed for work, so importing this module
    # must not require every WeCom secret: read QUEUE_URL alone if full settings are invalid.
    try:
        return get_settings().queue_url
    except Exception:
        return os.environ.get("QUEUE_URL", "sqlite:///wqbot-queue.db")


huey = make_huey(_queue_url(), name=os.environ.get("WQBOT_QUEUE_NAME", "wqbot"))

_registry: dict[str, object] = {}


def outbox_task(name: str, retries: int = 8, retry_delay: int = 5):
    """Declare a task that may be `defer()`-ed. Its function takes keyword arguments only."""

    def decorate(fn):
        @huey.task(retries=retries, retry_delay=retry_delay, name=name)
        def run(outbox_id: int | None, kwargs: dict):
            fn(**kwargs)
            if outbox_id is not None:
                from store.models import Outbox

                Outbox.delete().where(Outbox.id == outbox_id).execute()

        run.fn = fn
        _registry[name] = run
        return run

    return decorate


def defer(task, **kwargs) -> None:
    """Promise `task(**kwargs)` durably: call inside a `db.atomic()` block."""
    from store.models import Outbox

    name = task.name if hasattr(task, "name") else str(task)
    from bot.logs import current_trace_id

    row = Outbox.create(task=name, payload=json.dumps(kwargs, ensure_ascii=False), trace_id=current_trace_id())
    pending = _pending.get()
    if pending is None:
        pending = []
        _pending.set(pending)
    pending.append(row)


def enqueue_outbox() -> int:
    """Hand rows deferred in this context to huey. Call after the transaction committed."""
    rows = _pending.get() or []
    _pending.set(None)
    n = 0
    for row in rows:
        try:
            _enqueue(row.id, row.task, row.payload)
            n += 1
        except Exception:  # the sweeper will pick it up; the effect is already committed
            log.exception("could not enqueue outbox row %s (%s); the sweeper will retry", row.id, row.task)
    return n


def discard_pending() -> None:
    """The transaction rolled back: forget what it deferred."""
    _pending.set(None)


def _enqueue(outbox_id: int, task_name: str, payload: str) -> None:
    run = _registry.get(task_name)
    if run is None:
        raise LookupError(f"no outbox task named {task_name!r}")
    run(outbox_id, json.loads(payload))


@huey.periodic_task(crontab(minute="*"), name="wqbot.sweep_outbox")
def sweep_outbox() -> int:
    """Re-enqueue outbox rows whose queue entry was lost (killed worker, queue down at commit)."""
    from store.models import Outbox

    cutoff = clock.now() - STALE_AFTER
    n = 0
    for row in Outbox.select().where(Outbox.enqueued_at < cutoff).limit(1000):
        Outbox.update(enqueued_at=clock.now(), attempts=Outbox.attempts + 1).where(Outbox.id == row.id).execute()
        try:
            _enqueue(row.id, row.task, row.payload)
            n += 1
        except LookupError:
            log.error("outbox row %s names unknown task %s; left in place", row.id, row.task)
    if n:
        log.info("re-enqueued %d outbox rows", n)
    return n


@huey.periodic_task(crontab(minute="7"), name="wqbot.prune_deliveries")
def prune_deliveries(max_age_hours: float = 72.0) -> int:
    """Delivery keys only need to outlive WeCom's retries (seconds); keep three days for audits."""
    from store.models import Delivery

    return Delivery.delete().where(Delivery.received_at < clock.now() - max_age_hours * 3600).execute()


def load_task_modules() -> None:
    """Import every module that declares tasks, so a worker knows them all."""
    import importlib

    for mod in ("bot.handlers",):
        importlib.import_module(mod)
    for mod in _TASK_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise


# Feature packages that declare tasks; each is imported by workers and by `wqbot serve`.
_TASK_MODULES = ("bot.wecom", "bot.sync", "bot.notify", "bot.auth", "bot.menus", "bot.ops.tasks")
