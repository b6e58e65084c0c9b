"""template_card_event taps on sign-notification cards, and the sign card's "…" menu.

A handler runs inside the delivery's transaction: the decision, the outbox rows for the card
updates and the webhook, and the delivery key commit together (bot/notify/decisions.py)."""

from __future__ import annotations

import logging

from bot.handlers import router
from bot.notify import decisions

log = logging.getLogger("wqbot.cards")


def _tap(msg, ctx, action: str):
    return decisions.tap(ctx.settings, msg.get_str("TaskId"), msg.sender, action, msg.get_str("ResponseCode"))


@router.card_button("approve")
def on_approve(msg, ctx):
    return _tap(msg, ctx, "approve")


@router.card_button("reject")
def on_reject(msg, ctx):
    return _tap(msg, ctx, "reject")


@router.card_button()
def on_other_button(msg, ctx):
    log.info("card button with an unknown key ignored", extra={"event_key": msg.event_key})
    return None


@router.event("template_card_menu_event")
def on_card_menu(msg, ctx):
    return decisions.menu(ctx.settings, msg.get_str("TaskId"), msg.sender, msg.get_str("ResponseCode"))
