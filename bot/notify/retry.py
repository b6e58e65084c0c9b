"""Retries an operator asks for (the admin console's 重新发送 and 重新投递).

Both only reopen work and hand it to the same queued tasks that did it the first time, in one
transaction with the outbox row, so a retry is as durable as the original and a second click
while the first is still queued changes nothing.

- `resend(notification_id)`: the recipients that failed (or were invalid, and now resolve to an
  active member, e.g. after a sync or a 可见范围 fix) get new cards in new batches and the
  notification is pushed again. Recipients already sent are never sent twice. The new batches
  get new card ids: WeCom keeps a template card's task_id once a card was sent with it.
- `retry_webhook(delivery_id)`: a failed delivery becomes pending and is tried at once, with the
  same X-Wqbot-Delivery id and the same body bytes, so 微签 can dedupe it. If that try fails
  too, the usual backoff applies until 24 h after the decision; past that, one try only.
"""

from __future__ import annotations

from peewee import fn

from bot import queue
from store.db import write_transaction
from store.models import now
from store.notifications import (
    Notification,
    NotificationStatus,
    NotifyCard,
    NotifyRecipient,
    NotifyTask,
    RecipientStatus,
    TaskState,
    WebhookDelivery,
)

from . import cards, recipients, webhook
from .push import push


class Refused(ValueError):
    """The retry makes no sense for this record; `code` is a key of the console's ACTION_ERRORS."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def _find(model, key: str, what: str):
    row = model.get_or_none(model._meta.primary_key == key)
    if row is None:
        raise Refused("not_found", f"no {what} with id {key!r}")
    return row


def resend(notification_id: str) -> str:
    """Queue a notification's failed recipients again. Returns what was queued, in words."""
    with write_transaction():
        n = _find(Notification, notification_id, "notification")
        if n.kind == "close":
            raise Refused("not_failed", "a close notification sends nothing: it only updates cards")
        if n.status in (NotificationStatus.QUEUED, NotificationStatus.SENDING):
            return "already queued"
        if n.kind in ("approve", "sign"):
            task = NotifyTask.get_or_none(NotifyTask.task_id == n.task_id)
            if task is None or task.round != n.round or task.state != TaskState.PENDING:
                state = task.state if task is not None and task.round == n.round else "superseded"
                raise Refused("task_over", f"task {n.task_id} is already {state}: nothing left to act on")
        # Taken first, so a concurrent resend of the same notification waits here and then
        # finds it queued (PostgreSQL); SQLite's write lock serialises the whole transaction.
        reopened = (
            Notification.update(status=NotificationStatus.QUEUED, error=None, push_attempts=0, lease_until=None)
            .where(Notification.id == n.id, Notification.status == n.status)
            .execute()
        )
        if not reopened:
            return "already queued"
        userids = _reopen_recipients(n)
        if not userids:
            raise Refused("not_failed", "no failed recipient to send to again")
        _new_batches(n, userids)
        queue.defer(push, notification_id=n.id)
    queue.enqueue_outbox()
    return f"{len(userids)} recipient(s) queued"


def _reopen_recipients(n: Notification) -> list[str]:
    """Failed recipients, and invalid ones that now resolve to an active member: back to
    `queued`. Returns their userids in their original order."""
    rows = list(
        NotifyRecipient.select()
        .where(
            NotifyRecipient.notification == n.id,
            NotifyRecipient.status.in_((RecipientStatus.FAILED, RecipientStatus.INVALID)),
        )
        .order_by(NotifyRecipient.id)
    )
    invalid = [r for r in rows if r.status == RecipientStatus.INVALID]
    mapping = recipients.resolve([r.key for r in invalid])[0] if invalid else {}  # active members only
    taken = {
        u.lower()
        for (u,) in NotifyRecipient.select(NotifyRecipient.userid).where(NotifyRecipient.notification == n.id).tuples()
    }
    out = []
    for r in rows:
        userid = r.userid
        if r.status == RecipientStatus.INVALID:
            userid = mapping.get(r.key)
            if not userid or (userid.lower() != r.userid.lower() and userid.lower() in taken):
                continue  # still nobody, or the same member already has a row of their own
            taken.add(userid.lower())
        NotifyRecipient.update(userid=userid, status=RecipientStatus.QUEUED, reason=None, updated_at=now()).where(
            NotifyRecipient.id == r.id
        ).execute()
        out.append(userid)
    return out


def _new_batches(n: Notification, userids: list[str]) -> None:
    first = (NotifyCard.select(fn.MAX(NotifyCard.batch)).where(NotifyCard.notification == n.id).scalar() or 0) + 1
    task_id = n.task_id if n.kind in ("approve", "sign") else None
    for i in range(0, len(userids), cards.BATCH):
        batch = first + i // cards.BATCH
        cid = cards.card_id(n.id, n.task_id, batch)
        NotifyCard.create(card_id=cid, notification=n.id, task_id=task_id, batch=batch, round=n.round)
        NotifyRecipient.update(card=cid).where(
            NotifyRecipient.notification == n.id, NotifyRecipient.userid.in_(userids[i : i + cards.BATCH])
        ).execute()


def retry_webhook(delivery_id: str) -> str:
    """Try a failed webhook delivery again now."""
    with write_transaction():
        row = _find(WebhookDelivery, delivery_id, "webhook delivery")
        if row.status == "pending":
            return "already pending"
        if row.status != "failed":
            raise Refused("not_failed", f"delivery {delivery_id} was already {row.status}")
        t = now()
        reopened = (
            WebhookDelivery.update(status="pending", next_attempt_at=t, lease_until=None, finished_at=None)
            .where(WebhookDelivery.id == row.id, WebhookDelivery.status == "failed")
            .execute()
        )
        if not reopened:
            return "already pending"
        queue.defer(webhook.deliver, delivery_id=row.id)
    queue.enqueue_outbox()
    return "queued"
