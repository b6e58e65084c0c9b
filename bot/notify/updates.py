"""Updating the cards of a task that is over (message/update_template_card, docs/wecom.md "Messages and cards").

A response_code is single use. Each send batch got one from message/send that can update every
card of that batch once (userids ≤ 1000); each tap or menu callback brings the tapping member a
new one for their own card. So for each batch of the task's current round:

1. the batch's send code, unused: one call for every recipient of the batch but the excluded
   (the winner, whose card the passive reply already changed);
2. otherwise (already spent, e.g. on the decision before a later `close`, or refused): one call
   per member who holds an unused callback code.

A code is claimed with a conditional UPDATE before it is spent and marked used after, so a
retried task or a second worker never spends it twice; `applied_revision` records what each
batch already shows, so a retry skips finished batches. WeCom unreachable or rate limited: the
claim is released and the task raises, so huey (and the outbox sweeper) retry it.
"""

from __future__ import annotations

import logging

from bot import texts
from bot.observability import problems
from bot.queue import outbox_task
from bot.wecom import APIError, RateLimited, TransportError, client_for
from settings import Settings, get_settings
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

from . import cards, content, recipients

log = logging.getLogger("wqbot.notify")

CODE_TTL = 72 * 3600  # WeCom's current validity (older docs: 24 h; an expired code just fails)
CLAIM_TTL = 60.0  # a claimed code not marked used within this is free again (the worker died)


class SendCodeHeld(RuntimeError):
    """Another attempt holds the batch's send code and has not used it yet: it may be mid-call or
    may have died holding it. The update is retried (huey, then the outbox sweeper) rather than
    the batch being called done with its cards unchanged."""


# NotifyCard.error of a send code whose last attempt may have reached WeCom but got no answer
UNKNOWN = "outcome unknown: "


@outbox_task("notify.update_cards")
def update_cards(task_id: str, revision: int, exclude: list | None = None) -> None:
    run(task_id, revision, exclude or [], get_settings())


def label(task: NotifyTask) -> str:
    """What the other recipients' buttons turn into."""
    if task.state_via == "chat" and task.decided_action in texts.CARD_DECIDED_BY:
        name = recipients.display_name(task.decided_by)
        return texts.CARD_DECIDED_BY[task.decided_action].format(name=name)
    return texts.CARD_RESULT.get(task.state, texts.CARD_ALREADY_DONE)


def run(task_id: str, revision: int, exclude: list[str], settings: Settings, client=None) -> int:
    """Returns the number of update_template_card calls made."""
    task = NotifyTask.get_or_none(NotifyTask.task_id == task_id)
    if task is None or task.revision != revision or task.state == TaskState.PENDING:
        return 0  # a newer transition owns the cards now (its own task updates them)
    if not settings.wecom_enabled:
        return 0
    client = client or client_for(settings)
    text = label(task)
    skip = {u.lower() for u in exclude}
    calls = 0
    # Read lists up front: writing while a SELECT cursor is open keeps an old SQLite snapshot,
    # and upgrading it to a write fails at once ("database is locked") if another worker wrote.
    batches = list(
        NotifyCard.select().where(
            NotifyCard.task_id == task_id,
            NotifyCard.round == task.round,
            NotifyCard.status == "sent",
            NotifyCard.applied_revision < revision,
        )
    )
    for card in batches:
        n = Notification.get_or_none(Notification.id == card.notification)
        if n is None:
            continue
        payload = _payload_builder(settings, n, card, text)
        targets = [
            u
            for (u,) in NotifyRecipient.select(NotifyRecipient.userid)
            .where(NotifyRecipient.card == card.card_id, NotifyRecipient.status == RecipientStatus.SENT)
            .tuples()
            if u.lower() not in skip
        ]
        if targets:
            done, c = _with_send_code(client, card, targets, payload)
            calls += c
            if not done:
                calls += _with_member_codes(client, card, targets, payload, revision)
        NotifyCard.update(applied_revision=revision).where(NotifyCard.card_id == card.card_id).execute()
    log.info("cards updated", extra={"task_id": task_id, "revision": revision, "calls": calls})
    return calls


def _payload_builder(settings: Settings, n: Notification, card: NotifyCard, text: str):
    if n.kind == "approve":
        return lambda userids, code: cards.button_update(userids, code, text)
    c = content.for_notification(n, card.card_id)
    replacement = cards.sign_card(settings, c, result=text)
    return lambda userids, code: cards.card_update(userids, code, replacement)


def _call(client, body: dict) -> str | None:
    """None on success, the error text on a final refusal; raises on transient trouble."""
    try:
        client.update_template_card(body)
        return None
    except (TransportError, RateLimited):
        raise
    except APIError as e:
        if e.retryable:  # -1 past the client's retries, a token rejected after its refresh: the code is unspent
            raise
        if e.is_config_error:  # the console's 最近错误, with what to change
            problems.report("notify.card_update", problems.summary(e), e.hint)
        return str(e)


def _with_send_code(client, card: NotifyCard, targets: list[str], payload) -> tuple[bool, int]:
    t = now()
    if not card.response_code or card.code_used_at is not None or (card.code_at or 0) < t - CODE_TTL:
        return False, 0
    claimed = (
        NotifyCard.update(code_claimed_at=t)
        .where(
            NotifyCard.card_id == card.card_id,
            NotifyCard.code_used_at.is_null(),
            NotifyCard.code_claimed_at.is_null() | (NotifyCard.code_claimed_at < t - CLAIM_TTL),
        )
        .execute()
    )
    if not claimed:
        held = NotifyCard.get_or_none(NotifyCard.card_id == card.card_id)
        if held is not None and held.code_used_at is None and held.code_claimed_at is not None:
            raise SendCodeHeld(f"card {card.card_id}: its send code is claimed by another attempt, not yet used")
        return False, 0
    try:
        error = _call(client, payload(targets[: cards.BATCH], card.response_code))
    except Exception as e:
        unknown = UNKNOWN + str(e) if isinstance(e, TransportError) else card.error
        NotifyCard.update(code_claimed_at=None, error=unknown).where(NotifyCard.card_id == card.card_id).execute()
        raise
    if error and (card.error or "").startswith(UNKNOWN):
        # The code is single use and only this card's claimant holds it: refused now, it was spent
        # by the earlier attempt whose answer was lost, so every copy already shows the update.
        # Falling back to member codes would update those members' copies a second time.
        log.info("send code already spent by an attempt whose answer was lost", extra={"card": card.card_id})
        error = None
    NotifyCard.update(code_used_at=now(), error=error).where(NotifyCard.card_id == card.card_id).execute()
    if error:
        log.warning("update_template_card with the send code refused: %s", error, extra={"card": card.card_id})
    return error is None, 1


def _with_member_codes(client, card: NotifyCard, targets: list[str], payload, revision: int) -> int:
    wanted = {u.lower() for u in targets}
    t = now()
    calls = 0
    codes = list(
        CardResponseCode.select().where(
            CardResponseCode.card == card.card_id,
            CardResponseCode.used_at.is_null(),
            CardResponseCode.received_at > t - CODE_TTL,
            CardResponseCode.applied_revision < revision,
        )
    )
    for rc in codes:
        if rc.userid.lower() not in wanted:
            continue
        key = (CardResponseCode.card == rc.card) & (CardResponseCode.userid == rc.userid)
        claimed = (
            CardResponseCode.update(claimed_at=t)
            .where(
                key,
                CardResponseCode.response_code == rc.response_code,
                CardResponseCode.used_at.is_null(),
                CardResponseCode.claimed_at.is_null() | (CardResponseCode.claimed_at < t - CLAIM_TTL),
            )
            .execute()
        )
        if not claimed:
            continue
        try:
            error = _call(client, payload([rc.userid], rc.response_code))
        except Exception:
            CardResponseCode.update(claimed_at=None).where(key).execute()
            raise
        calls += 1
        CardResponseCode.update(used_at=now(), error=error, applied_revision=revision).where(
            key, CardResponseCode.response_code == rc.response_code
        ).execute()
    return calls
