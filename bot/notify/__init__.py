"""Sign notifications in chat: 微签 posts a task, its recipients get a card and decide on it.

    微签 ─POST /api/v1/notifications─▶ intake (stored + push queued, one transaction) ─▶ 202
    huey notify.push ─▶ message/send, ≤ 1000 userids per call, per-recipient status
    tap 同意/拒绝 ─▶ decisions.tap (callback transaction: state, outbox rows, delivery key)
        ├─ passive reply: the tapper's own card
        ├─ huey notify.update_cards ─▶ update_template_card for everyone else
        └─ huey notify.webhook ─▶ signed POST to WEIQIAN_WEBHOOK_URL, retried up to 24 h
    huey notify.sweep (every minute) ─▶ deadlines (cards → 已过期, task.expired), lost webhook retries, stuck pushes
    huey notify.remind (every minute) ─▶ one reminder per recipient before the deadline (reminders)
    huey notify.digest (every minute from DIGEST_AT) ─▶ one morning list per member with open tasks (digest)

Modules: request (validation), intake, push, cards (JSON), content, recipients, decisions
(the state machine), updates, webhook, status (GET), pending (待我处理), sweep, retry (the
admin console's 重新发送 / 重新投递).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import digest, push, reminders, sweep, updates, webhook
from .pending import pending_tasks
from .retry import Refused, resend, retry_webhook

if TYPE_CHECKING:
    from bot.registry import Registry

__all__ = ["Refused", "contribute", "pending_tasks", "resend", "retry_webhook"]


def contribute(app: Registry) -> None:
    """The push, card-update and webhook tasks and the every-minute sweep. The API route is in
    bot/api/notifications.py, the taps in bot/handlers/cards.py."""
    app.tasks(push.push, updates.update_cards, webhook.deliver)
    app.periodic(sweep.sweep, reminders.remind, digest.digest)
