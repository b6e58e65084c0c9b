"""Sign notifications (docs/notifications.md): what 微签 asked us to send, to whom, what each card shows, the
task each approve/sign card belongs to, and the webhooks owed back to 微签.

- `Notification`     one row per POST /api/v1/notifications `id` (微签's idempotency key)
- `NotifyTask`       one row per 微签 task_id: the state machine pending → approved / rejected /
                     expired / signed / withdrawn; the first decision is a conditional UPDATE
- `NotifyRecipient`  one row per (notification, WeCom userid): sent / invalid / failed
- `NotifyCard`       one row per message/send batch (≤ 1000 users): WeCom's task_id for that batch
                     and the send-time response_code, which can update every card of the batch once
- `CardResponseCode` the latest ResponseCode a member's own tap/menu callback carried (single use)
- `WebhookDelivery`  one row per webhook owed to 微签; its id is the X-Wqbot-Delivery uuid
- `WebhookAttempt`   every try of a delivery (status code or error, duration)

Times are `EpochField`s (store/models.py).
"""

from __future__ import annotations

from enum import StrEnum

import peewee as pw

from .models import EpochField, Model, now


class NotificationStatus(StrEnum):
    """Notification.status: queued → sending (a worker holds the lease) → sent / partial / failed.
    A close notification sends nothing and is done at once. held: 开启企业微信 is off; queued again
    when it is turned on."""

    QUEUED = "queued"
    SENDING = "sending"
    SENT = "sent"
    PARTIAL = "partial"
    FAILED = "failed"
    DONE = "done"
    HELD = "held"


class TaskState(StrEnum):
    """NotifyTask.state: the state machine of bot/notify/decisions.py."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"
    SIGNED = "signed"
    WITHDRAWN = "withdrawn"


class RecipientStatus(StrEnum):
    """NotifyRecipient.status: queued until its batch is sent, then sent, invalid (unknown here,
    or WeCom's invaliduser) or failed."""

    QUEUED = "queued"
    SENT = "sent"
    INVALID = "invalid"
    FAILED = "failed"


class Notification(Model):
    id = pw.CharField(primary_key=True, max_length=128)
    kind = pw.CharField(max_length=16)  # approve | sign | notice | close
    task_id = pw.CharField(max_length=128, null=True, index=True)
    body = pw.TextField()  # the accepted request, normalised JSON
    fingerprint = pw.CharField(max_length=64)  # sha256 of the raw request, to log a reused id
    status = pw.CharField(max_length=16, default=NotificationStatus.QUEUED)  # NotificationStatus
    error = pw.TextField(null=True)
    created_at = EpochField(default=now)
    sent_at = EpochField(null=True)
    push_attempts = pw.IntegerField(default=0)
    lease_until = EpochField(null=True)  # a worker is pushing it until then
    round = pw.IntegerField(default=1)  # NotifyTask.round this notification belongs to


class NotifyTask(Model):
    task_id = pw.CharField(primary_key=True, max_length=128)
    kind = pw.CharField(max_length=16)  # approve | sign
    state = pw.CharField(max_length=16, default=TaskState.PENDING, index=True)  # TaskState
    state_via = pw.CharField(max_length=16, null=True)  # chat | close | deadline
    revision = pw.IntegerField(default=0)  # +1 on every transition; card updates carry it
    # +1 when a new approve/sign notification reopens a task that was over (e.g. resubmitted
    # after a rejection, or the sign step after the approval): older cards stay as they are.
    round = pw.IntegerField(default=1)
    title = pw.TextField()
    description = pw.TextField(null=True)
    initiator = pw.CharField(max_length=200, null=True)
    url = pw.TextField(null=True)
    deadline = EpochField(null=True, index=True)
    notification = pw.CharField(max_length=128)  # the first notification of this task
    created_at = EpochField(default=now)
    updated_at = EpochField(default=now)
    decided_by = pw.CharField(max_length=128, null=True)
    decided_action = pw.CharField(max_length=16, null=True)  # approve | reject (chat decisions)
    decided_at = EpochField(null=True)
    decided_notification = pw.CharField(max_length=128, null=True)
    # reminders (store/followup.py, migration 0702)
    remind_before = pw.DoubleField(null=True)  # seconds before the deadline; NULL: REMIND_BEFORE_HOURS
    reminded_round = pw.IntegerField(default=0)  # the round whose reminders went out
    remind_lease_until = EpochField(null=True)


class NotifyRecipient(Model):
    id = pw.BigAutoField()
    notification = pw.CharField(max_length=128)
    task_id = pw.CharField(max_length=128, null=True)
    key = pw.CharField(max_length=200)  # as 微签 sent it (a userid or a linked account key)
    userid = pw.CharField(max_length=200)  # WeCom userid; the key itself when it is unknown here
    status = pw.CharField(max_length=16, default=RecipientStatus.QUEUED)  # RecipientStatus
    reason = pw.TextField(null=True)
    card = pw.CharField(max_length=128, null=True)  # NotifyCard.card_id of its batch
    round = pw.IntegerField(default=1)
    updated_at = EpochField(default=now)

    class Meta:
        indexes = (
            (("notification", "userid"), True),
            (("userid", "task_id"), False),
            (("card", "status"), False),
        )


class NotifyCard(Model):
    card_id = pw.CharField(primary_key=True, max_length=128)  # the task_id WeCom knows the card by
    notification = pw.CharField(max_length=128, index=True)
    task_id = pw.CharField(max_length=128, null=True, index=True)
    batch = pw.IntegerField()
    round = pw.IntegerField(default=1)
    status = pw.CharField(max_length=16, default="queued")  # queued | sending (maybe delivered) | sent | failed
    msgid = pw.CharField(max_length=200, null=True)
    response_code = pw.TextField(null=True)
    code_at = EpochField(null=True)
    code_claimed_at = EpochField(null=True)
    code_used_at = EpochField(null=True)
    applied_revision = pw.IntegerField(default=0)  # the task revision its recipients' cards show
    sent_at = EpochField(null=True)
    error = pw.TextField(null=True)


class CardResponseCode(Model):
    card = pw.CharField(max_length=128)
    userid = pw.CharField(max_length=200)
    task_id = pw.CharField(max_length=128, null=True, index=True)
    response_code = pw.TextField()
    received_at = EpochField(default=now)
    claimed_at = EpochField(null=True)
    used_at = EpochField(null=True)
    applied_revision = pw.IntegerField(default=0)
    error = pw.TextField(null=True)

    class Meta:
        primary_key = pw.CompositeKey("card", "userid")


class WebhookDelivery(Model):
    id = pw.CharField(primary_key=True, max_length=36)  # uuid4: X-Wqbot-Delivery, the same on every retry
    event = pw.CharField(max_length=32)
    notification = pw.CharField(max_length=128, null=True)
    task_id = pw.CharField(max_length=128, null=True, index=True)
    body = pw.TextField()  # the exact bytes signed and sent, kept so every retry is identical
    status = pw.CharField(max_length=16, default="pending", index=True)  # pending | delivered | failed
    attempts = pw.IntegerField(default=0)
    created_at = EpochField(default=now)
    next_attempt_at = EpochField(default=now, index=True)
    lease_until = EpochField(null=True)
    last_status = pw.IntegerField(null=True)
    last_error = pw.TextField(null=True)
    finished_at = EpochField(null=True)


class WebhookAttempt(Model):
    id = pw.BigAutoField()
    delivery = pw.CharField(max_length=36, index=True)
    at = EpochField(default=now)
    status_code = pw.IntegerField(null=True)
    error = pw.TextField(null=True)
    duration_ms = pw.DoubleField(null=True)


TABLES = [Notification, NotifyTask, NotifyRecipient, NotifyCard, CardResponseCode, WebhookDelivery, WebhookAttempt]


def _create(db: pw.Database) -> None:
    db.create_tables(TABLES)


# migration steps (store/migrations.py runs them in id order, each once)
STEPS = [
    ("0301_notifications", _create),
]
