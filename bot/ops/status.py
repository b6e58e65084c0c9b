"""What the admin console, /readyz and /metrics report: read from the store and the queue.

Every reader tolerates a capability that is not built or not migrated yet (its model missing):
it answers None, and the page shows "not available" for that panel.
"""

from __future__ import annotations

import hashlib
import logging

from store import clock

log = logging.getLogger("wqbot.ops")

ERROR_KEEP_SECONDS = 14 * 86400


def queue_depth() -> dict:
    from bot.tasks import huey
    from store.models import Outbox

    out: dict = {"huey": None, "scheduled": None, "outbox": None, "outbox_oldest_seconds": None}
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
    try:
        from bot.logs import current_trace_id, redact
        from store.ops import OpsError

        message, hint = redact(str(message))[:2000], redact(str(hint or ""))[:1000]
        key = hashlib.sha1(f"{source}\0{message}".encode()).hexdigest()
        t = clock.now()
        (
            OpsError.insert(
                key=key,
                source=source[:100],
                message=message,
                hint=hint,
                first_at=t,
                last_at=t,
                trace_id=trace_id or current_trace_id(),
            )
            .on_conflict(
                conflict_target=[OpsError.key],
                update={
                    OpsError.count: OpsError.count + 1,
                    OpsError.last_at: t,
                    OpsError.hint: hint,
                    OpsError.trace_id: trace_id or current_trace_id(),
                },
            )
            .execute()
        )
    except Exception as e:  # the error log must never cause an error of its own
        log.debug("could not record error: %s", e)


def recent_errors(limit: int = 20) -> list | None:
    try:
        from store.ops import OpsError

        return list(OpsError.select().order_by(OpsError.last_at.desc()).limit(limit))
    except Exception:
        return None


def prune_errors() -> int:
    from store.ops import OpsError

    return OpsError.delete().where(OpsError.last_at < clock.now() - ERROR_KEEP_SECONDS).execute()


def audit(userid: str, action: str, target: str = "", result: str = "") -> None:
    try:
        from store.ops import AdminAudit

        AdminAudit.create(userid=userid[:100], action=action[:50], target=str(target)[:200], result=str(result)[:2000])
    except Exception as e:
        log.warning("could not write the admin audit row: %s", e)


def recent_audit(limit: int = 10) -> list:
    from store.ops import AdminAudit

    return list(AdminAudit.select().order_by(AdminAudit.at.desc()).limit(limit))


# -- directory sync ---------------------------------------------------------------------------------
def _sync_run_model():
    """The directory capability's sync-run record, if it is built (store/directory.py)."""
    try:
        import store.directory as d
    except ModuleNotFoundError:
        return None
    return getattr(d, "SyncRun", None)


def last_sync() -> dict | None:
    """{"last": row-as-dict or None, "last_ok_at": ts or None}; None when sync is not built."""
    model = _sync_run_model()
    if model is None:
        return None
    try:
        return _describe_sync(model)
    except Exception as e:
        log.warning("could not read the last sync run: %s", e)
        return None


COMPLETED = ("ok", "partial", "held")  # runs that read the directory through (held: disables kept back)


def _describe_sync(model) -> dict:
    last = model.select().order_by(model.started_at.desc(), model.id.desc()).first()
    ok_at = (
        model.select(model.finished_at)
        .where(model.status.in_(COMPLETED) & model.finished_at.is_null(False))
        .order_by(model.finished_at.desc())
        .limit(1)
        .scalar()
    )
    running = model.select().where(model.status == "running").exists()
    row = last.as_dict() if last is not None and hasattr(last, "as_dict") else (last.__data__ if last else None)
    return {"last": row, "last_ok_at": ok_at, "running": running}
