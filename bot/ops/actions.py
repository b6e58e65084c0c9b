"""The console's actions, each delegated to the capability that owns the data.

`run(settings, name, target) -> (ok, code, detail)`: code is a key of admin.NOTICES when ok, of
panels.ACTION_ERRORS otherwise; detail goes to the audit row.
"""

from __future__ import annotations

import logging

import bot.notify
from bot.notify import Refused
from bot.queue import defer, enqueue_outbox
from settings import Settings
from store.db import write_transaction

from . import jobs
from .status import record_error

log = logging.getLogger("wqbot.admin")


def run(settings: Settings, name: str, target: str) -> tuple[bool, str, str]:
    fn = {"sync": sync_now, "resend": resend_notification, "retry-webhook": retry_webhook}[name]
    try:
        return fn(settings, target)
    except Refused as e:  # the record is not in a state the action applies to: the page says why
        return False, e.code, str(e)
    except Exception as e:
        log.exception("admin action %s failed", name)
        record_error(f"admin.{name}", f"{type(e).__name__}: {e}", getattr(e, "hint", ""))
        return False, "failed", f"{type(e).__name__}: {e}"


def sync_now(settings: Settings, target: str = "") -> tuple[bool, str, str]:
    """Queue one full reconciliation (bot.sync.run_sync in a worker): a big directory takes
    longer than a web request may. A run already in progress makes it a no-op (the sync lease)."""
    if not settings.wecom_enabled:
        return False, "disabled", "WECOM_ENABLED=false"
    with write_transaction():
        defer(jobs.sync_now, full=True)
    enqueue_outbox()
    return True, "sync_queued", "queued"


def resend_notification(settings: Settings, target: str) -> tuple[bool, str, str]:
    if not settings.wecom_enabled:
        return False, "disabled", "WECOM_ENABLED=false"
    return True, "resent", bot.notify.resend(target)


def retry_webhook(settings: Settings, target: str) -> tuple[bool, str, str]:
    if not settings.weiqian_webhook_url:
        return False, "no_webhook", "WEIQIAN_WEBHOOK_URL is empty"
    return True, "webhook_retried", bot.notify.retry_webhook(target)
