"""What the admin console, /readyz and /metrics report: read from the store and the queue, and
the console's own records (recent errors, the admin audit)."""

from __future__ import annotations

import logging
from typing import Any

from bot.observability import problems
from bot.queue import huey
from store import clock
from store.directory import SyncRun, SyncRunStatus
from store.models import Outbox
from store.ops import AdminAudit, OpsError

log = logging.getLogger("wqbot.ops")

ERROR_KEEP_SECONDS = 14 * 86400


def queue_depth() -> dict[str, Any]:
    out: dict[str, Any] = {"huey": None, "scheduled": None, "outbox": None, "outbox_oldest_seconds": None}
    try:
        out["huey"] = int(huey.pending_count())
        out["scheduled"] = int(huey.scheduled_count())
    except Exception as e:
        log.debug("queue depth unavailable: %s", e)
    try:
        out["outbox"] = Outbox.select().count()
        oldest = Outbox.select(Outbox.created_at).order_by(Outbox.created_at).limit(1).scalar()
        out["outbox_oldest_seconds"] = max(0.0, clock.now() - oldest) if oldest else 0.0
    except Exception as e:
        log.debug("outbox depth unavailable: %s", e)
    return out


# -- recent errors ---------------------------------------------------------------------------------
def record_error(source: str, message: str, hint: str = "", trace_id: str | None = None) -> None:
    """Remember a problem for the admin console. Never raises; secrets are redacted first."""
    problems.report(source, message, hint, trace_id)


def recent_errors(limit: int = 20) -> list[OpsError]:
    return list(OpsError.select().order_by(OpsError.last_at.desc()).limit(limit))


def prune_errors() -> int:
    return OpsError.delete().where(OpsError.last_at < clock.now() - ERROR_KEEP_SECONDS).execute()


def audit(userid: str, action: str, target: str = "", result: str = "") -> None:
    try:
        AdminAudit.create(userid=userid[:100], action=action[:50], target=str(target)[:200], result=str(result)[:2000])
    except Exception as e:
        log.warning("could not write the admin audit row: %s", e)


def recent_audit(limit: int = 10) -> list[AdminAudit]:
    return list(AdminAudit.select().order_by(AdminAudit.at.desc()).limit(limit))


# -- directory sync ---------------------------------------------------------------------------------
# runs that read the directory through (held: disables kept back)
COMPLETED = (SyncRunStatus.OK, SyncRunStatus.PARTIAL, SyncRunStatus.HELD)


def last_sync() -> dict[str, Any]:
    """{"last": the newest run as a dict or None, "last_ok_at": when a run last completed or None,
    "running": whether one runs now}."""
    last = SyncRun.select().order_by(SyncRun.started_at.desc(), SyncRun.id.desc()).first()
    ok_at = (
        SyncRun.select(SyncRun.finished_at)
        .where(SyncRun.status.in_(COMPLETED) & SyncRun.finished_at.is_null(False))
        .order_by(SyncRun.finished_at.desc())
        .limit(1)
        .scalar()
    )
    running = SyncRun.select().where(SyncRun.status == SyncRunStatus.RUNNING).exists()
    return {"last": last.as_dict() if last is not None else None, "last_ok_at": ok_at, "running": running}
