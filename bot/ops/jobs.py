"""The queue side of operations: the console's 立即同步 as a durable task, failures remembered
for the console's 最近错误, and old error rows pruned."""

from __future__ import annotations

import logging

from huey import crontab
from huey.api import Task

from bot.queue import outbox_task, periodic_job
from bot.sync import run_sync
from bot.sync.lease import Busy
from settings import get_settings

from .status import prune_errors as prune
from .status import record_error

log = logging.getLogger("wqbot.ops")


@outbox_task("ops.sync_now", retries=0)
def sync_now(full: bool = True) -> int | None:
    """立即同步: one reconciliation through the directory capability's public entry point."""
    try:
        run = run_sync(get_settings().refreshed(), trigger="admin", full=full)
    except Busy as e:
        log.info("sync now: another run is in progress (%s)", e)
        return None
    except Exception as e:  # not retried: the run is recorded as failed, the admin fixes and asks again
        record_error("sync", f"{type(e).__name__}: {e}", getattr(e, "hint", "") or "")
        return None
    return run.id


def remember_failure(signal: str, task: Task, exc: BaseException | None = None) -> None:
    """huey's SIGNAL_ERROR: a task raised. The console lists it under 最近错误, with its hint."""
    if exc is None:
        return
    record_error(task.name, f"{type(exc).__name__}: {exc}", getattr(exc, "hint", "") or "")


@periodic_job("wqbot.ops.prune_errors", crontab(hour="3", minute="17"))
def prune_errors() -> int:
    return prune()
