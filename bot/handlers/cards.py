"""template_card_event taps on sign-notification cards, and the sign card's "…" menu.

A handler runs inside the delivery's transaction: the decision, the outbox rows for the card
updates and the webhook, and the delivery key commit together (bot/notify/decisions.py)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot.callback.replies import Reply
from bot.callback.router import Context, Inbound
from bot.notify import decisions

if TYPE_CHECKING:
    from bot.registry import Registry

log = logging.getLogger("wqbot.cards")


def _tap(msg: Inbound, ctx: Context, action: str) -> Reply:
    return decisions.tap(ctx.settings, msg.get_str("TaskId"), msg.sender, action, msg.get_str("ResponseCode"))


def on_approve(msg: Inbound, ctx: Context) -> Reply:
    return _tap(msg, ctx, "approve")


def on_reject(msg: Inbound, ctx: Context) -> Reply:
    return _tap(msg, ctx, "reject")


def on_other_button(msg: Inbound, ctx: Context) -> None:
    log.info("card button with an unknown key ignored", extra={"event_key": msg.event_key})


def on_card_menu(msg: Inbound, ctx: Context) -> Reply | None:
    return decisions.menu(ctx.settings, msg.get_str("TaskId"), msg.sender, msg.get_str("ResponseCode"))


def contribute(app: Registry) -> None:
    """同意/拒绝 taps and the card menu, on the app callback."""
    on = app.app_callbacks
    on.card_button("approve")(on_approve)
    on.card_button("reject")(on_reject)
    on.card_button()(on_other_button)
    on.event("template_card_menu_event")(on_card_menu)
