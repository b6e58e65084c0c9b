"""Menu clicks, text messages and app-open events from employees (docs/api.md, "Menu and chat").

Every reply here is built from the store inside the callback's transaction and returned as the
passive reply, well within WeCom's 5-second deadline; nothing calls out.

- click `pending`, text 待办 / pending   → the employee's open tasks (news, each opens logged in)
- click `help`, text 帮助 / help / ?     → what the bot can do
- any other click key or text            → help (an unknown key is logged: a menu/handler mismatch)
- enter_agent                            → a greeting, at most once a day (WQBOT_GREET_ON_ENTER)
"""

from __future__ import annotations

import logging
import unicodedata
from datetime import datetime
from functools import lru_cache
from typing import TYPE_CHECKING

from bot import texts
from bot.auth.links import h5_entry
from bot.callback import replies
from bot.callback.replies import Reply
from bot.callback.router import Context, Inbound
from bot.notify import pending_tasks
from bot.notify.pending import PendingTask
from bot.notify.recipients import names as directory_names
from bot.observability.logs import LogThrottle
from settings import Settings
from store.chat import claim_greeting
from store.clock import CST, today_cst

if TYPE_CHECKING:
    from bot.registry import Registry

log = logging.getLogger("wqbot.chat")

PENDING_WORDS = {"待办", "pending", "待我处理", "待处理", "我的待办"}

# 微签 H5 pages. The home page lists the employee's tasks, so "还有 N 项" opens it.
H5_HOME = "/pages/index/index"
TASK_LIST = H5_HOME


def normalise(text: str) -> str:
    """Lenient matching: NFKC folds full-width forms (ＰＥＮＤＩＮＧ, ？, ideographic space),
    then whitespace anywhere, trailing sentence punctuation and case are ignored."""
    s = "".join(unicodedata.normalize("NFKC", text or "").split()).casefold()
    stripped = s.rstrip("。.!！~")
    return stripped or s


def help_reply() -> Reply:
    return replies.text(texts.HELP)


# -- 待我处理 ------------------------------------------------------------------------------------
@lru_cache(maxsize=4096)
def _when(epoch: float) -> str:
    # a task's created_at does not change: each member's list shows the same few again and again
    return datetime.fromtimestamp(epoch, CST).strftime("%m-%d %H:%M")


def _article(task: PendingTask, settings: Settings, names: dict[str, str]) -> dict[str, str]:
    kind = texts.PENDING_KIND.get(task["type"], texts.PENDING_KIND_OTHER)
    title = task["title"] or texts.PENDING_UNTITLED.format(task_id=task["task_id"])
    when = _when(task["created_at"])
    initiator = task["initiator"]
    # 微签's own description ("张三 发起了审批，请处理") reads best; else who started it, by name.
    desc = task["description"] or (
        texts.PENDING_DESC.format(initiator=names.get(initiator, initiator)) if initiator else ""
    )
    desc = texts.PENDING_DESC_WHEN.format(desc=desc, when=when) if desc and when else (desc or when)
    # A task without its own H5 page (or with something that is not a path) opens the task
    # list, still logged in: /oauth/h5 would refuse anything but a path anyway.
    path = task["url"]
    if not (path and path.startswith("/") and not path.startswith("//")):
        path = TASK_LIST
    return {
        "title": _clip(texts.PENDING_TITLE.format(kind=kind, title=title), TITLE_BYTES),
        "description": _clip(desc, DESC_BYTES),
        "url": h5_entry(settings, path),
    }


TITLE_BYTES, DESC_BYTES = 128, 512  # WeCom's news article limits (message/send; docs/wecom.md)


def _clip(s: str, limit: int) -> str:
    raw = s.encode("utf-8")
    return s if len(raw) <= limit else raw[: limit - 3].decode("utf-8", "ignore") + "…"


def pending_reply(userid: str, settings: Settings) -> Reply:
    """The open approve/sign tasks of `userid`, newest first, as one news reply.

    WeCom shows at most 8 articles: with more tasks, 7 are listed and the 8th says
    "还有 N 项" and opens the H5 task list."""
    limit = replies.NEWS_LIMIT
    tasks, total = pending_tasks(userid, limit)
    total = max(total, len(tasks))
    if total == 0:
        return replies.text(texts.PENDING_NONE)
    if total <= limit:
        shown, more = tasks[:limit], 0
    else:
        shown = tasks[: limit - 1]
        more = total - len(shown)
    names = directory_names(t["initiator"] for t in shown if not t["description"])
    articles = [_article(t, settings, names) for t in shown]
    if more:
        articles.append(
            {
                "title": texts.PENDING_MORE_TITLE.format(n=more),
                "description": texts.PENDING_MORE_DESC.format(total=total),
                "url": h5_entry(settings, TASK_LIST),
            }
        )
    return replies.news(articles)


def on_pending_click(msg: Inbound, ctx: Context) -> Reply:
    return pending_reply(msg.sender, ctx.settings)


# -- help and everything else ------------------------------------------------------------------
def on_help_click(msg: Inbound, ctx: Context) -> Reply:
    return help_reply()


# A stale menu sends its unknown key on every click: one warning per key a minute is enough.
_unknown_keys = LogThrottle(interval=60.0)


def on_unknown_click(msg: Inbound, ctx: Context) -> Reply:
    # A key in WeCom's copy of the menu that no handler knows: stale menu or a typo in menu.toml.
    key = msg.event_key
    log_now, suppressed = _unknown_keys.allow(key)
    if log_now:
        log.warning(
            "unknown menu key %r, answering with help (compare with `wqbot menu diff`)",
            key,
            extra={"event_key": key, "repeats_not_logged": suppressed},
        )
    return help_reply()


def on_text(msg: Inbound, ctx: Context) -> Reply:
    word = normalise(msg.get_str("Content"))
    if word in PENDING_WORDS:
        return pending_reply(msg.sender, ctx.settings)
    # 帮助/help/? and anything not recognised get help.
    return help_reply()


# -- opening the app ---------------------------------------------------------------------------
def today() -> str:
    """The day a greeting counts for: China time, the employees' day."""
    return today_cst().isoformat()


def on_enter_agent(msg: Inbound, ctx: Context) -> Reply | None:
    if not ctx.settings.greet_on_enter or not msg.sender:
        return None
    if not claim_greeting(msg.sender, today()):
        return None
    return replies.text(texts.GREETING.format(pending=_pending_line(msg.sender)))


def _pending_line(userid: str) -> str:
    _, total = pending_tasks(userid, 0)
    return texts.GREETING_PENDING.format(n=total) if total else ""


def contribute(app: Registry) -> None:
    """The app menu's clicks (bot/menus/menu.toml), text messages and opening the app."""
    on = app.app_callbacks
    on.event("click", key="pending")(on_pending_click)
    on.event("click", key="help")(on_help_click)
    on.event("click")(on_unknown_click)
    on.message("text")(on_text)
    on.event("enter_agent")(on_enter_agent)
