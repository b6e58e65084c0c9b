"""Deadline reminders (docs/notifications.md, "Follow-up"): once per recipient per task round,
`remind_before` (the notification's `remind_before_hours`, else REMIND_BEFORE_HOURS) before the
deadline, while the task is still open.

Every minute `notify.remind` picks the due tasks. A worker takes a task with a lease (conditional
UPDATE), sends one `textcard` per batch of ≤ 1000 recipients not yet reminded, and records each
recipient in `TaskReminder` right after WeCom accepts the batch; when every batch is recorded the
task's `reminded_round` moves to its round, so no worker picks it again. A second worker, a retry
or a restart sends only the recipients not recorded. The one window left (WeCom accepted, the
worker died before recording) is closed as in push.py: the batch is rebuilt byte for byte and
sent with `enable_duplicate_check`, so WeCom does not deliver it twice. A task decided, closed or
withdrawn before (or while) its reminder is due gets none: the state is checked before each batch;
nor does one that opened already inside its reminder window (its fresh card shows the deadline).
"""

from __future__ import annotations

import logging
from datetime import datetime

from huey import crontab
from peewee import fn

from bot import texts
from bot.auth.links import h5_entry
from bot.observability import metrics
from bot.queue import periodic_job
from bot.wecom import APIError, RateLimited, TransportError, client_for
from settings import Settings, get_settings
from store import db
from store.clock import CST
from store.followup import TaskReminder
from store.models import now
from store.notifications import NotifyRecipient, NotifyTask, RecipientStatus, TaskState

from . import cards
from .push import insert_ignore

log = logging.getLogger("wqbot.notify")

LEASE = 120.0  # seconds a worker may hold one task's reminders
PER_RUN = 200  # tasks per minute at most; the rest wait for the next minute


def when(epoch: float) -> str:
    """12月11日 18:00 (China time)."""
    d = datetime.fromtimestamp(epoch, CST)
    return f"{d.month}月{d.day}日 {d:%H:%M}"


def message(settings: Settings, task: NotifyTask, userids: list[str]) -> dict:
    """The reminder: a textcard that opens the task in the 微签 H5, logged in (through /oauth/h5).
    Deterministic for a task and its recipients, so a resent batch is the same message."""
    return {
        "touser": "|".join(userids),
        "msgtype": "textcard",
        "textcard": {
            "title": texts.REMIND_TITLE,
            "description": texts.REMIND_TEXT.format(title=task.title, when=when(task.deadline or 0.0)),
            "url": h5_entry(settings, task.url or "/"),
            "btntxt": texts.REMIND_BUTTON,
        },
        "enable_duplicate_check": 1,
        "duplicate_check_interval": cards.DUPLICATE_CHECK_INTERVAL,
    }


def _open(t: float):
    return (
        (NotifyTask.state == TaskState.PENDING)
        & NotifyTask.kind.in_(("approve", "sign"))
        & NotifyTask.deadline.is_null(False)
        & (NotifyTask.deadline > t)
    )


def due(settings: Settings, t: float, limit: int = PER_RUN) -> list[str]:
    """Open tasks whose reminder time has come and whose current round is not reminded yet."""
    before = fn.COALESCE(NotifyTask.remind_before, settings.remind_before_hours * 3600)
    q = (
        NotifyTask.select(NotifyTask.task_id)
        .where(
            _open(t),
            before > 0,
            NotifyTask.deadline - before <= t,
            # a task that opened already inside its reminder window: its card (with the deadline)
            # is the reminder
            NotifyTask.deadline - before > NotifyTask.created_at,
            NotifyTask.reminded_round < NotifyTask.round,
            NotifyTask.remind_lease_until.is_null() | (NotifyTask.remind_lease_until < t),
        )
        .order_by(NotifyTask.deadline)
        .limit(limit)
    )
    return [r.task_id for r in q]


@periodic_job("notify.remind", crontab(minute="*"))
def remind() -> int:
    return run(get_settings())


def run(settings: Settings, client=None) -> int:
    """Remind every due task; returns the recipients reminded. WeCom unreachable or rate limited:
    the task's lease is released and the next minute goes on where this one stopped."""
    if not settings.wecom_enabled:
        return 0
    t = now()
    total = 0
    for task_id in due(settings, t):
        try:
            total += remind_task(task_id, settings, client or client_for(settings))
        except (TransportError, RateLimited) as e:
            log.warning("reminders paused: %s", e, extra={"task_id": task_id})
            break
    return total


def remind_task(task_id: str, settings: Settings, client) -> int:
    t = now()
    taken = (
        NotifyTask.update(remind_lease_until=t + LEASE)
        .where(
            NotifyTask.task_id == task_id,
            _open(t),
            NotifyTask.reminded_round < NotifyTask.round,
            NotifyTask.remind_lease_until.is_null() | (NotifyTask.remind_lease_until < t),
        )
        .execute()
    )
    if not taken:
        return 0  # another worker has it, or it was decided / reminded meanwhile
    task = NotifyTask.get(NotifyTask.task_id == task_id)
    sent = 0
    try:
        done = {
            u
            for (u,) in TaskReminder.select(TaskReminder.userid)
            .where(TaskReminder.task_id == task_id, TaskReminder.round == task.round)
            .tuples()
        }
        userids = [
            u
            for (u,) in NotifyRecipient.select(NotifyRecipient.userid)
            .where(
                NotifyRecipient.task_id == task_id,
                NotifyRecipient.round == task.round,
                NotifyRecipient.status == RecipientStatus.SENT,
            )
            .order_by(NotifyRecipient.id)
            .tuples()
            if u not in done
        ]
        userids = list(dict.fromkeys(userids))  # one reminder even if two notifications named the member
        for i in range(0, len(userids), cards.BATCH):
            if not _still_open(task_id, task.round):
                log.info("reminder skipped: the task is over", extra={"task_id": task_id})
                break
            sent += _send_batch(settings, client, task, userids[i : i + cards.BATCH])
        else:
            NotifyTask.update(reminded_round=task.round).where(
                NotifyTask.task_id == task_id, NotifyTask.round == task.round
            ).execute()
    finally:
        NotifyTask.update(remind_lease_until=None).where(NotifyTask.task_id == task_id).execute()
    if sent:
        log.info("deadline reminders sent", extra={"task_id": task_id, "recipients": sent})
    return sent


def _still_open(task_id: str, round: int) -> bool:
    return NotifyTask.select().where(NotifyTask.task_id == task_id, NotifyTask.round == round, _open(now())).exists()


def _send_batch(settings: Settings, client, task: NotifyTask, userids: list[str]) -> int:
    try:
        answer = client.message_send(message(settings, task, userids))
        error = None
    except (TransportError, RateLimited):
        raise
    except APIError as e:
        if e.retryable:
            raise
        # a configuration problem (wrong agent, …): recorded per recipient, shown in the console
        log.error("reminder refused by WeCom: %s", e, extra={"task_id": task.task_id})
        answer, error = {}, str(e)
    invalid = {u.lower() for u in str(answer.get("invaliduser") or "").split("|") if u}
    t = now()
    rows = []
    for u in userids:
        status = "failed" if error else ("invalid" if u.lower() in invalid else "sent")
        rows.append(dict(task_id=task.task_id, round=task.round, userid=u, status=status, at=t, error=error))
    with db.atomic():
        insert_ignore(TaskReminder, rows)
    sent = sum(1 for r in rows if r["status"] == "sent")
    metrics.followup("reminder", "sent", sent)
    metrics.followup("reminder", "failed" if error else "invalid", len(rows) - sent)
    return sent
