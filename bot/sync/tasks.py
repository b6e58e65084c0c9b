"""Queued sync work: the fetches change_contact handlers defer, and the periodic reconciliation."""
from __future__ import annotations

import calendar
import logging

from bot.tasks import huey, outbox_task
from bot.wecom import NoPrivilege, NotFound, client_for
from settings import get_settings

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


def due(dt) -> bool:
    """Every SYNC_INTERVAL_MINUTES, counted in whole minutes since the epoch (UTC): on the clock
    (:00, :10, …) when the interval divides an hour, and evenly spaced for any other value."""
    try:
        n = get_settings().sync_interval_minutes
    except Exception:
        n = 10
    return (calendar.timegm(dt.timetuple()) // 60) % max(1, n) == 0


@huey.periodic_task(due, name="sync.reconcile")
def reconcile() -> int | None:
    """The periodic reconciliation. Every worker schedules it; the lease lets one run."""
    s = get_settings()
    try:
        run = run_sync(s, trigger="periodic")
    except Busy as e:
        log.info("periodic sync skipped: %s", e)
        return None
    except SyncDisabled:
        return None
    return run.id
