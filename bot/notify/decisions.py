"""The task state machine (one `NotifyTask` row per 微签 task_id).

    pending ──tap 同意──▶ approved        pending ──close──▶ approved / rejected / signed / withdrawn
    pending ──tap 拒绝──▶ rejected        pending ──deadline passed──▶ expired
    (over) ──new approve/sign notification──▶ pending, next round

Every transition is a conditional UPDATE in the caller's transaction (`WHERE state = 'pending'`
for taps and expiry, `WHERE revision = seen` for close) whose row count says who won, so two taps
on two workers at the same moment give exactly one decision. The winner's transaction also
writes the outbox rows for the card updates and the webhook, so they commit (or not) together.
Nothing here calls out: WeCom and 微签 are reached by the deferred tasks.
"""

from __future__ import annotations

import logging

from bot import texts
from bot.callback import replies
from bot.observability import metrics
from bot.queue import defer
from settings import Settings, get_settings
from store import statements
from store.models import now
from store.notifications import (
    CardResponseCode,
    Notification,
    NotifyCard,
    NotifyRecipient,
    NotifyTask,
    RecipientStatus,
    TaskState,
)

from . import cards, content
from .updates import update_cards
from .webhook import owe_action, owe_expired

log = logging.getLogger("wqbot.notify")

ACTIONS = {"approve": TaskState.APPROVED, "reject": TaskState.REJECTED}


# -- tasks opened by approve/sign notifications --------------------------------------------------
def open_task(req) -> int:
    """Create the task of an approve/sign notification, refresh it, or reopen it when it was over.
    Returns the round the notification belongs to. Call inside the intake transaction."""
    t = now()
    fields = dict(
        kind=req.type,
        title=req.title,
        description=req.description,
        initiator=req.initiator,
        url=req.url,
        deadline=req.deadline,
        remind_before=None if req.remind_before_hours is None else req.remind_before_hours * 3600,
        updated_at=t,
    )
    NotifyTask.insert(
        task_id=req.task_id, state=TaskState.PENDING, notification=req.id, created_at=t, **fields
    ).on_conflict_ignore().execute()
    task = NotifyTask.get(NotifyTask.task_id == req.task_id)
    if task.notification == req.id:
        return task.round
    if task.state == TaskState.PENDING:
        NotifyTask.update(**fields).where(NotifyTask.task_id == req.task_id).execute()
        return task.round
    # The task was over; 微签 made it actionable again (resubmitted, or its next step).
    NotifyTask.update(
        state=TaskState.PENDING,
        state_via=None,
        revision=NotifyTask.revision + 1,
        round=NotifyTask.round + 1,
        decided_by=None,
        decided_action=None,
        decided_at=None,
        decided_notification=None,
        notification=req.id,
        created_at=t,
        **fields,
    ).where(NotifyTask.task_id == req.task_id).execute()
    log.info("task reopened", extra={"task_id": req.task_id, "notification": req.id})
    return task.round + 1


# -- close (微签 says the task ended elsewhere) ----------------------------------------------------
def close(task_id: str, result: str) -> int | None:
    """Set the task to `result` and defer updating every card of its current round.
    Returns the new revision, or None when there was nothing to change."""
    for _ in range(5):
        task = NotifyTask.get_or_none(NotifyTask.task_id == task_id)
        if task is None or task.state == result:
            return None
        changed = (
            NotifyTask.update(state=result, state_via="close", revision=NotifyTask.revision + 1, updated_at=now())
            .where(NotifyTask.task_id == task_id, NotifyTask.revision == task.revision)
            .execute()
        )
        if changed:
            defer(update_cards, task_id=task_id, revision=task.revision + 1, exclude=[])
            return task.revision + 1
    raise RuntimeError(f"task {task_id} kept changing while being closed")


# -- deadlines ------------------------------------------------------------------------------------
def expire(task_id: str, at: float | None = None, settings: Settings | None = None) -> int | None:
    """pending → expired once the deadline passed; defers the card updates and owes 微签 the
    `task.expired` webhook, both in the caller's transaction. New revision or None."""
    t = at or now()
    # the conditional UPDATE first (no read before the write: see updates.run on SQLite snapshots)
    changed = (
        NotifyTask.update(state=TaskState.EXPIRED, state_via="deadline", revision=NotifyTask.revision + 1, updated_at=t)
        .where(
            NotifyTask.task_id == task_id,
            NotifyTask.state == TaskState.PENDING,
            NotifyTask.deadline.is_null(False),
            NotifyTask.deadline <= t,
        )
        .execute()
    )
    if not changed:
        return None
    task = NotifyTask.get(NotifyTask.task_id == task_id)
    defer(update_cards, task_id=task_id, revision=task.revision, exclude=[])
    owe_expired(
        settings or get_settings(),
        notification_id=task.notification,
        task_id=task_id,
        deadline=task.deadline or t,
        at=t,
    )
    metrics.followup("expired")
    log.info("task expired", extra={"task_id": task_id})
    return task.revision


def due_for_expiry(at: float, limit: int = 500) -> list[str]:
    q = (
        NotifyTask.select(NotifyTask.task_id)
        .where(NotifyTask.state == TaskState.PENDING, NotifyTask.deadline.is_null(False), NotifyTask.deadline <= at)
        .limit(limit)
    )
    return [r.task_id for r in q]


# -- taps ------------------------------------------------------------------------------------------
def _recipient(notification_id: str, userid: str) -> NotifyRecipient | None:
    live = {"notification": notification_id, "status": statements.Not(RecipientStatus.INVALID)}
    r = statements.select_first(NotifyRecipient, {**live, "userid": userid})
    if r is None:  # WeCom userids are case-insensitive; 微签 may have sent another case
        r = statements.select_first(NotifyRecipient, {**live, "userid": statements.LowerEquals(userid)})
    return r


def remember_code(card: NotifyCard, userid: str, code: str) -> None:
    """Keep the member's newest ResponseCode (single use; each callback brings a new one)."""
    if not code:
        return
    row = {
        "card": card.card_id,
        "userid": userid,
        "task_id": card.task_id,
        "response_code": code,
        "received_at": now(),
        "claimed_at": None,
        "used_at": None,
        "applied_revision": 0,
        "error": None,
    }
    # a new code replaces the old one and its state; the card's task stays as first written
    statements.insert(CardResponseCode, row, conflict=("card", "userid"), keep=("task_id",))


def result_label(task: NotifyTask) -> str:
    """What a late tap is told about a task that is over."""
    if task.state_via == "chat" and task.state in (TaskState.APPROVED, TaskState.REJECTED):
        return texts.CARD_ALREADY_DONE
    return texts.CARD_RESULT.get(task.state, texts.CARD_ALREADY_DONE)


def tap(settings: Settings, card_id: str, userid: str, action: str, response_code: str = ""):
    """A 同意/拒绝 tap (template_card_event). Runs in the callback's transaction; returns the reply."""
    card = statements.select_one(NotifyCard, "card_id", card_id)
    if card is None or not card.task_id:
        log.info("tap on a card we do not know", extra={"card": card_id})
        return replies.text(texts.CARD_UNKNOWN)
    recipient = _recipient(card.notification, userid)
    if recipient is None:
        log.warning("tap refused: not a recipient", extra={"card": card_id, "userid": userid})
        return replies.text(texts.CARD_NOT_RECIPIENT)
    remember_code(card, recipient.userid, response_code)
    task = statements.select_one(NotifyTask, "task_id", card.task_id)
    if task is None or card.round != task.round or task.kind != "approve":
        return replies.update_button(texts.CARD_ALREADY_DONE)
    if task.state != TaskState.PENDING:
        return replies.update_button(result_label(task))
    t = now()
    if task.deadline is not None and task.deadline <= t:
        expire(task.task_id, t, settings)
        return replies.update_button(texts.CARD_RESULT[TaskState.EXPIRED])
    # one statement: its row (none when another tap committed first) is the win and the new revision
    won = statements.update_returning(
        NotifyTask,
        {
            "state": ACTIONS[action],
            "state_via": "chat",
            "revision": statements.Plus(1),
            "decided_by": recipient.userid,
            "decided_action": action,
            "decided_at": t,
            "decided_notification": card.notification,
            "updated_at": t,
        },
        where={"task_id": task.task_id, "state": TaskState.PENDING, "round": card.round},
        returning=("revision",),
    )
    if not won:  # someone else's tap committed first
        task = NotifyTask.get(NotifyTask.task_id == task.task_id)
        return replies.update_button(result_label(task))
    ((revision,),) = won
    defer(update_cards, task_id=task.task_id, revision=revision, exclude=[recipient.userid])
    owe_action(
        settings,
        notification_id=card.notification,
        task_id=task.task_id,
        action=action,
        userid=recipient.userid,
        account=recipient.key,
        at=t,
    )
    log.info("task decided in chat", extra={"task_id": task.task_id, "action": action, "userid": recipient.userid})
    return replies.update_button(texts.CARD_DECIDED_BY_ME[action])


def menu(settings: Settings, card_id: str, userid: str, response_code: str = ""):
    """The sign card's "…" menu (template_card_menu_event): keep the code, answer with the link."""
    card = NotifyCard.get_or_none(NotifyCard.card_id == card_id)
    if card is None:
        return None
    recipient = _recipient(card.notification, userid)
    if recipient is None:
        return replies.text(texts.CARD_NOT_RECIPIENT)
    remember_code(card, recipient.userid, response_code)
    n = Notification.get_or_none(Notification.id == card.notification)
    if n is None:
        return None
    c = content.for_notification(n, card.card_id, with_names=False)
    return replies.news([{"title": c.title, "description": texts.CARD_MENU_OPEN_DESC, "url": cards.link(settings, c)}])
