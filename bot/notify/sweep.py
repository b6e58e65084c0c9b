"""Every minute: expire tasks past their deadline, and re-enqueue notification work whose queue
entry was lost (a webhook retry scheduled in a worker that died, a push whose lease ran out)."""

from __future__ import annotations

import logging

from huey import crontab

from bot import queue
from bot.queue import periodic_job
from settings import get_settings
from store import db
from store.models import now
from store.notifications import Notification, NotificationStatus

from . import decisions, push, webhook

log = logging.getLogger("wqbot.notify")

STUCK_PUSH_AFTER = 300.0  # a queued/sending notification untouched this long (and no lease) is re-pushed


def expire_due(at: float | None = None) -> int:
    t = at or now()
    n = 0
    for task_id in decisions.due_for_expiry(t):
        with db.atomic():
            if decisions.expire(task_id, t):
                n += 1
        queue.enqueue_outbox()
    return n


def requeue_webhooks(at: float | None = None) -> int:
    ids = webhook.overdue(at)
    for delivery_id in ids:
        queue.enqueue(webhook.deliver, delivery_id=delivery_id)
    return len(ids)


def requeue_pushes(at: float | None = None) -> int:
    t = at or now()
    q = (
        Notification.select(Notification.id)
        .where(
            Notification.status.in_((NotificationStatus.QUEUED, NotificationStatus.SENDING)),
            Notification.created_at < t - STUCK_PUSH_AFTER,
            Notification.lease_until.is_null() | (Notification.lease_until < t),
        )
        .limit(200)
    )
    ids = [r.id for r in q]
    for nid in ids:
        queue.enqueue(push.push, notification_id=nid)
    return len(ids)


@periodic_job("notify.sweep", crontab(minute="*"))
def sweep() -> dict[str, int]:
    out = {"expired": expire_due(), "webhooks": requeue_webhooks(), "pushes": requeue_pushes()}
    if get_settings().wecom_enabled:  # turned on by the environment, or the console's own release was lost
        out["released"] = push.release_held()
    if any(out.values()):
        log.info("notification sweep", extra=out)
    return out
