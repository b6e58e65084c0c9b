"""Sign notifications in chat (issue 6, CONTRACT §3).

    微签 ─POST /api/v1/notifications─▶ intake (stored + push queued, one transaction) ─▶ 202
    huey notify.push ─▶ message/send, ≤ 1000 userids per call, per-recipient status
    tap 同意/拒绝 ─▶ decisions.tap (callback transaction: state, outbox rows, delivery key)
        ├─ passive reply: the tapper's own card
        ├─ huey notify.update_cards ─▶ update_template_card for everyone else
        └─ huey notify.webhook ─▶ signed POST to WEIQIAN_WEBHOOK_URL, retried up to 24 h
    huey notify.sweep (every minute) ─▶ deadlines, lost webhook retries, stuck pushes

Modules: request (validation), intake, push, cards (JSON), content, recipients, decisions
(the state machine), updates, webhook, status (GET), pending (待我处理), sweep, retry (the
admin console's 重新发送 / 重新投递).
"""

from __future__ import annotations

from . import push, sweep, updates, webhook  # noqa: F401  (declare the huey tasks)
from .pending import pending_tasks
from .retry import Refused, resend, retry_webhook

__all__ = ["Refused", "pending_tasks", "resend", "retry_webhook"]
