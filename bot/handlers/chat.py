"""Menu clicks and text messages from employees."""
from __future__ import annotations

import logging
import unicodedata

from bot import replies, texts
from bot.handlers import router

log = logging.getLogger("wqbot.chat")

HELP_WORDS = {"帮助", "help", "?", "？", "菜单", "menu"}


def normalise(text: str) -> str:
    """Lenient matching: NFKC folds full-width forms, then trim and lower-case."""
    return unicodedata.normalize("NFKC", text or "").strip().lower()


def help_reply():
    return replies.text(texts.HELP)


@router.event("click", key="help")
def on_help_click(msg, ctx):
    return help_reply()


@router.event("click")
def on_unknown_click(msg, ctx):
    log.info("unknown menu key, answering with help", extra={"event_key": msg.event_key})
    return help_reply()


@router.message("text")
def on_text(msg, ctx):
    # 帮助/help/? and anything not recognised get help.
    return help_reply()
