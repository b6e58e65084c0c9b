"""Queued sync work: the fetches change_contact handlers defer, and the periodic reconciliation."""

from __future__ import annotations

import calendar
import logging
from datetime import datetime

from bot.queue import outbox_task, periodic_job
from bot.wecom import NoPrivilege, NotFound, client_for
from settings import Settings, get_settings
from store import clock
from store.db import write_transaction
from store.directory import SyncState

from . import records as R
from .apply import apply_department, apply_user
from .lease import Busy
from .reconcile import SyncDisabled, run_sync

log = logging.getLogger("wqbot.sync")


@outbox_task("sync.fetch_user")
def fetch_user(userid: str) -> None:
    """user/get with the app token, applied as an update (events may carry only IDs)."""
    s = get_settings()
    if not s.wecom_enabled:
        return
    try:
        data = client_for(s).user_get(userid)
    except NotFound:
        # Gone since the event, or outside the app's 可见范围: the reconciliation decides.
        log.info("user/get: no such member now", extra={"userid": userid})
        return
    except NoPrivilege as e:
        log.warning("user/get refused: member outside the app's 可见范围", extra={"userid": userid, "error": str(e)})
        return
    apply_user(R.user_from_api(data), s, partial=False, reactivate=True)


@outbox_task("sync.fetch_department")
def fetch_department(id: int) -> None:
    s = get_settings()
    if not s.wecom_enabled:
        return
    try:
        data = client_for(s).department_get(int(id))
    except (NotFound, NoPrivilege) as e:
        log.info("department/get: not available", extra={"department": id, "error": str(e)})
        return
    apply_department(R.department_from_api(data), partial=False)


def due(dt: datetime) -> bool:
    """Every SYNC_INTERVAL_MINUTES, counted in whole minutes since the epoch (UTC): on the clock
    (:00, :10, …) when the interval divides an hour, and evenly spaced for any other value."""
    try:
        n = get_settings().sync_interval_minutes
    except Exception:
        n = 10
    return (calendar.timegm(dt.timetuple()) // 60) % max(1, n) == 0


PERIODIC_KEY = "periodic_interval"


def claim_interval(settings: Settings, at: float | None = None) -> bool:
    """Take the current SYNC_INTERVAL_MINUTES interval for the periodic run; False if a run already
    took it. Every worker's scheduler enqueues the periodic task for the same due minute, each at
    its own second, and a restarted worker enqueues it again: the lease only keeps two copies from
    running at once, so a copy that starts after the first one finished would sync again. One
    conditional UPDATE (zero-padded interval numbers compare as text on SQLite and PostgreSQL)."""
    n = max(1, settings.sync_interval_minutes)
    interval = f"{int((at if at is not None else clock.now()) // 60) // n:012d}"
    t = clock.now()
    with write_transaction():
        SyncState.insert(key=PERIODIC_KEY, value="", updated_at=t).on_conflict_ignore().execute()
        return bool(
            SyncState.update(value=interval, updated_at=t)
            .where((SyncState.key == PERIODIC_KEY) & (SyncState.value < interval))
            .execute()
        )


@periodic_job("sync.reconcile", due)
def reconcile() -> int | None:
    """The periodic reconciliation: once per interval, however many workers schedule it."""
    s = get_settings()
    if not s.wecom_enabled:
        return None
    if not claim_interval(s):
        log.info("periodic sync skipped: this interval's run already started")
        return None
    try:
        run = run_sync(s, trigger="periodic")
    except Busy as e:
        log.info("periodic sync skipped: %s", e)
        return None
    except SyncDisabled:
        return None
    return run.id
