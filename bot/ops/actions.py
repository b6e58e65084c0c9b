"""The console's actions, each delegated to the capability that owns the data.

`run(settings, name, target) -> (ok, code, detail)`: code is a key of admin.NOTICES when ok, of
panels.ACTION_ERRORS otherwise; detail goes to the audit row.
"""
from __future__ import annotations

import logging

log = logging.getLogger("wqbot.admin")


def run(settings, name: str, target: str) -> tuple[bool, str, str]:
    fn = {"sync": sync_now, "resend": resend_notification, "retry-webhook": retry_webhook}[name]
    try:
        return fn(settings, target)
    except Exception as e:
        from bot.ops.status import record_error

        log.exception("admin action %s failed", name)
        record_error(f"admin.{name}", f"{type(e).__name__}: {e}", getattr(e, "hint", ""))
        return False, "failed", f"{type(e).__name__}: {e}"


def sync_now(settings, target: str = "") -> tuple[bool, str, str]:
    """Queue one full reconciliation (bot.sync.run_sync in a worker): a big directory takes
    longer than a web request may."""
    if not settings.wecom_enabled:
        return False, "disabled", "WECOM_ENABLED=false"
    try:
        import bot.sync  # noqa: F401
    except ImportError:
        return False, "unavailable", "bot.sync is not built"
    from bot.ops.jobs import sync_now as job

    job(full=True)  # a run already in progress makes this one a no-op (the sync lease)
    return True, "sync_queued", "queued"


def resend_notification(settings, target: str) -> tuple[bool, str, str]:
    try:
        import bot.notify as notify
    except ImportError:
        return False, "unavailable", "bot.notify is not built"
    fn = getattr(notify, "resend", None)
    if fn is None:
        return False, "unavailable", "bot.notify has no resend()"
    result = fn(target)
    return True, "resent", str(result)


def retry_webhook(settings, target: str) -> tuple[bool, str, str]:
    if not settings.weiqian_webhook_url:
        return False, "no_webhook", "WEIQIAN_WEBHOOK_URL is empty"
    try:
        import bot.notify as notify
    except ImportError:
        return False, "unavailable", "bot.notify is not built"
    fn = getattr(notify, "retry_webhook", None)
    if fn is None:
        return False, "unavailable", "bot.notify has no retry_webhook()"
    result = fn(target)
    return True, "webhook_retried", str(result)
