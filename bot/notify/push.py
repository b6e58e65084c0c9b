"""Fan-out: one notification → message/send calls of at most 1000 userids each (huey task).

Idempotent and resumable. Recipient rows and batches (`NotifyCard`) are fixed the first time the
task runs; each batch is marked sent in its own transaction right after WeCom accepts it, so a
retry (or a worker restarted after a crash) sends only the batches still `queued`. The one
window left — WeCom accepted a batch, the worker died before recording it — is closed by
`enable_duplicate_check`: the retried batch is byte-for-byte the same message, so WeCom does not
deliver it twice. That is a second guard only; the store is the first.

A lease on the notification keeps two workers (a retry racing a re-enqueue by the sweeper) from
pushing the same notification at once.
"""

from __future__ import annotations

import dataclasses
import logging

from peewee import chunked, fn

from bot.observability import metrics, problems
from bot.queue import defer, enqueue_outbox, outbox_task
from bot.wecom import APIError, RateLimited, TransportError, client_for
from settings import Settings, get_settings
from store import db
from store.models import now
from store.notifications import (
    Notification,
    NotificationStatus,
    NotifyCard,
    NotifyRecipient,
    NotifyTask,
    RecipientStatus,
    TaskState,
)

from . import cards, content, recipients
from .updates import update_cards

log = logging.getLogger("wqbot.notify")

LEASE = 120.0  # seconds a worker may hold a notification between two batches
MAX_ATTEMPTS = 20  # transient failures (WeCom down, rate limited) before the rest is marked failed
ALL_INVALID = 81013  # every recipient of the call was invalid


HELD_REASON = "held: 开启企业微信 is off (/admin/wecom or WECOM_ENABLED); it is sent when the switch is turned on"


def release_held() -> int:
    """Queue every held notification again (开启企业微信 was turned on). Returns how many."""
    with db.atomic():
        ids = [
            r[0]
            for r in Notification.select(Notification.id).where(Notification.status == NotificationStatus.HELD).tuples()
        ]
        for batch in chunked(ids, 500):
            Notification.update(status=NotificationStatus.QUEUED, error=None).where(
                Notification.id.in_(batch), Notification.status == NotificationStatus.HELD
            ).execute()
            for nid in batch:
                defer(push, notification_id=nid)
    enqueue_outbox()
    return len(ids)


class Transient(Exception):
    """WeCom could not be reached or was rate limited: the task is retried later."""


@outbox_task("notify.push")
def push(notification_id: str) -> None:
    run(notification_id, get_settings())


def run(notification_id: str, settings: Settings, client=None) -> str:
    """Push what is still queued. Returns the notification's status afterwards."""
    t = now()
    taken = (
        Notification.update(status=NotificationStatus.SENDING, lease_until=t + LEASE)
        .where(
            Notification.id == notification_id,
            Notification.status.in_((NotificationStatus.QUEUED, NotificationStatus.SENDING)),
            Notification.lease_until.is_null() | (Notification.lease_until < t),
        )
        .execute()
    )
    n = Notification.get_or_none(Notification.id == notification_id)
    if not taken:
        return n.status if n else "missing"
    try:
        return _push(n, settings, client or client_for(settings))
    except Transient as e:
        attempts = n.push_attempts + 1
        if attempts >= MAX_ATTEMPTS:
            _fail_remaining(n.id, f"gave up after {attempts} attempts: {e}")
            return _finish(n.id)
        Notification.update(push_attempts=attempts, lease_until=None, error=str(e)).where(
            Notification.id == n.id
        ).execute()
        raise


def _push(n: Notification, settings: Settings, client) -> str:
    if not settings.refreshed().wecom_enabled:  # re-read now: a push must not leave after the switch went off
        # Held, not failed: `release_held()` queues it again when 开启企业微信 is turned on.
        Notification.update(status=NotificationStatus.HELD, lease_until=None, error=HELD_REASON).where(
            Notification.id == n.id
        ).execute()
        return NotificationStatus.HELD
    if n.kind in ("approve", "sign"):
        task = NotifyTask.get_or_none(NotifyTask.task_id == n.task_id)
        if task is None or task.round != n.round or task.state != TaskState.PENDING:
            _ensure_recipients(n)
            if task is not None and task.round == n.round:
                _settle_cut_off(n, task, settings, client)
            state = task.state if task is not None and task.round == n.round else "replaced by a newer notification"
            _fail_remaining(n.id, f"not sent: the task was already {state}")
            return _finish(n.id)
    _ensure_recipients(n)
    batches = list(
        NotifyCard.select()
        .where(NotifyCard.notification == n.id, NotifyCard.status.in_(("queued", "sending")))
        .order_by(NotifyCard.batch)
    )
    _send_batches(n, settings, client, batches)
    if n.kind in ("approve", "sign") and batches:
        # A member who got the card may have decided before its batch was recorded here; that
        # decision's card update found no sent batch then, so it is this push's to ask for.
        task = NotifyTask.get_or_none(NotifyTask.task_id == n.task_id)
        if task is not None and task.round == n.round and task.state != TaskState.PENDING:
            _update_cards_of(task)
    return _finish(n.id)


def _update_cards_of(task: NotifyTask) -> None:
    """Queue the card update of the task's current state (idempotent: batches that already show
    it are skipped)."""
    exclude = [task.decided_by] if task.state_via == "chat" and task.decided_by else []
    with db.atomic():
        defer(update_cards, task_id=task.task_id, revision=task.revision, exclude=exclude)
    enqueue_outbox()


def _settle_cut_off(n: Notification, task: NotifyTask, settings: Settings, client) -> None:
    """The task ended while a batch's send was cut off (the worker died between WeCom's answer and
    recording it): its members may hold the card, and may even have decided with it. Send that
    batch again byte for byte — WeCom's duplicate check answers with the first send's result
    instead of delivering a second card — so it is recorded as sent and, with its send code,
    updated to show the result like every other card of the task."""
    cut_off = list(
        NotifyCard.select()
        .where(NotifyCard.notification == n.id, NotifyCard.status == "sending")
        .order_by(NotifyCard.batch)
    )
    if not cut_off:
        return
    _send_batches(n, settings, client, cut_off)
    _update_cards_of(task)


def _send_batches(n: Notification, settings: Settings, client, batches: list[NotifyCard]) -> None:
    base = content.for_notification(n, "") if batches else None  # the same text on every batch
    for card in batches:
        userids = [
            u
            for (u,) in NotifyRecipient.select(NotifyRecipient.userid)
            .where(NotifyRecipient.card == card.card_id, NotifyRecipient.status == RecipientStatus.QUEUED)
            .order_by(NotifyRecipient.id)
            .tuples()
        ]
        if not userids:
            NotifyCard.update(status="sent").where(NotifyCard.card_id == card.card_id).execute()
            continue
        body = cards.send_body(userids, cards.build(settings, dataclasses.replace(base, card_id=card.card_id)))
        # from here until _record_batch the batch may have reached its members: if the worker dies
        # in between, the retry knows to settle it (see _settle_cut_off) rather than call it failed
        NotifyCard.update(status="sending").where(NotifyCard.card_id == card.card_id).execute()
        try:
            answer = client.message_send(body)
        except (TransportError, RateLimited) as e:
            raise Transient(str(e)) from e
        except APIError as e:
            if e.retryable:  # -1 past the client's retries, a token rejected after its refresh
                raise Transient(str(e)) from e
            if e.errcode == ALL_INVALID:
                _record_batch(card, userids, {"invaliduser": "|".join(userids)})
                continue
            # A configuration or request problem (wrong agent, no callback URL for a button
            # card, …): every batch would fail the same way, so stop here and say why.
            log.error("message/send refused: %s", e, extra={"notification": n.id})
            if e.is_config_error:  # the console's 最近错误, with what to change
                problems.report("notify.push", problems.summary(e), e.hint)
            _fail_remaining(n.id, str(e))
            break
        _record_batch(card, userids, answer)
        Notification.update(lease_until=now() + LEASE).where(Notification.id == n.id).execute()


def _ensure_recipients(n: Notification) -> None:
    """Fix recipients and batches once: resolve keys, drop duplicates, cut batches of ≤ 1000."""
    if NotifyRecipient.select().where(NotifyRecipient.notification == n.id).exists():
        return
    keys = content.request_of(n).get("recipients") or []
    mapping, unknown = recipients.resolve(keys)
    unknown = set(unknown)
    task_id = n.task_id if n.kind in ("approve", "sign") else None
    rows, card_rows, seen, valid = [], [], set(), 0
    t = now()
    for key in keys:  # in 微签's order; a member named twice (userid and account key) gets one card
        userid = mapping.get(key)
        row = dict(
            notification=n.id,
            task_id=task_id,
            key=key,
            userid=key,
            status=RecipientStatus.INVALID,
            reason="unknown or disabled in the directory",
            card=None,
            round=n.round,
            updated_at=t,
        )
        if key not in unknown and userid:
            if userid.lower() in seen:
                continue
            batch = valid // cards.BATCH
            cid = cards.card_id(n.id, n.task_id, batch)
            if valid % cards.BATCH == 0:
                card_rows.append(dict(card_id=cid, notification=n.id, task_id=task_id, batch=batch, round=n.round))
            valid += 1
            row.update(userid=userid, status=RecipientStatus.QUEUED, reason=None, card=cid)
        elif key.lower() in seen:
            continue
        seen.add(row["userid"].lower())
        rows.append(row)
    with db.atomic():
        for chunk in chunked(card_rows, 100):
            NotifyCard.insert_many(chunk).on_conflict_ignore().execute()
        insert_ignore(NotifyRecipient, rows)


def insert_ignore(model, rows: list[dict], chunk: int = 500) -> None:
    """Multi-row INSERT … ON CONFLICT DO NOTHING of complete rows (no Python-side defaults are
    applied). peewee's own insert_many is slow to build such a statement for thousands of
    recipients (bench/README.md); here the SQL is only placeholders."""
    if not rows:
        return
    fields = [model._meta.fields[name] for name in rows[0]]
    cols = ", ".join(f'"{f.column_name}"' for f in fields)
    param = model._meta.database.param
    for part in chunked(rows, chunk):
        one = "(" + ", ".join([param] * len(fields)) + ")"
        sql = (
            f'INSERT INTO "{model._meta.table_name}" ({cols}) VALUES '
            + ", ".join([one] * len(part))
            + " ON CONFLICT DO NOTHING"
        )
        params = [f.db_value(row[f.name]) for row in part for f in fields]
        model._meta.database.execute_sql(sql, params)


def _split(value) -> set[str]:
    if not value:
        return set()
    if isinstance(value, list):
        return {str(v).lower() for v in value if v}
    return {v.lower() for v in str(value).split("|") if v}


def _record_batch(card: NotifyCard, userids: list[str], answer: dict) -> None:
    """Per recipient: sent, or invalid (WeCom's `invaliduser`, lower-cased) / failed (unlicensed)."""
    invalid = _split(answer.get("invaliduser"))
    unlicensed = _split(answer.get("unlicenseduser"))
    bad = [u for u in userids if u.lower() in invalid]
    unl = [u for u in userids if u.lower() in unlicensed and u.lower() not in invalid]
    t = now()
    code = answer.get("response_code") or None
    sent_any = len(bad) + len(unl) < len(userids)
    with db.atomic():
        if bad:
            NotifyRecipient.update(
                status=RecipientStatus.INVALID, reason="WeCom invaliduser: not a member the app can reach", updated_at=t
            ).where(NotifyRecipient.card == card.card_id, NotifyRecipient.userid.in_(bad)).execute()
        if unl:
            NotifyRecipient.update(
                status=RecipientStatus.FAILED, reason="WeCom unlicenseduser: the member has no licence", updated_at=t
            ).where(NotifyRecipient.card == card.card_id, NotifyRecipient.userid.in_(unl)).execute()
        NotifyRecipient.update(status=RecipientStatus.SENT, updated_at=t).where(
            NotifyRecipient.card == card.card_id, NotifyRecipient.status == RecipientStatus.QUEUED
        ).execute()
        NotifyCard.update(
            status="sent" if sent_any else "failed",
            msgid=answer.get("msgid") or None,
            response_code=code,
            code_at=t if code else None,
            sent_at=t,
            error=None if sent_any else "no recipient of this batch was valid",
        ).where(NotifyCard.card_id == card.card_id).execute()


def _fail_remaining(notification_id: str, reason: str) -> None:
    t = now()
    with db.atomic():
        NotifyRecipient.update(status=RecipientStatus.FAILED, reason=reason, updated_at=t).where(
            NotifyRecipient.notification == notification_id, NotifyRecipient.status == RecipientStatus.QUEUED
        ).execute()
        NotifyCard.update(status="failed", error=reason).where(
            NotifyCard.notification == notification_id, NotifyCard.status.in_(("queued", "sending"))
        ).execute()
        Notification.update(error=reason).where(Notification.id == notification_id).execute()


def _finish(notification_id: str) -> str:
    counts = dict(
        NotifyRecipient.select(NotifyRecipient.status, fn.COUNT(NotifyRecipient.id))
        .where(NotifyRecipient.notification == notification_id)
        .group_by(NotifyRecipient.status)
        .tuples()
    )
    sent = counts.get(RecipientStatus.SENT, 0)
    others = sum(v for k, v in counts.items() if k != RecipientStatus.SENT)
    if sent and not others:
        status = NotificationStatus.SENT
    elif sent:
        status = NotificationStatus.PARTIAL
    else:
        status = NotificationStatus.FAILED
    Notification.update(status=status, sent_at=now(), lease_until=None).where(
        Notification.id == notification_id
    ).execute()
    metrics.pushes(counts)
    log.info(
        "notification pushed",
        extra={"notification": notification_id, "status": status, **{f"recipients_{k}": v for k, v in counts.items()}},
    )
    return status
