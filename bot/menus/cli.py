"""`wqbot menu show|push|diff`: print, upload or compare the app menu (bot/menus/menu.toml).

Exit codes: 0 done (diff: WeCom already has this menu), 1 diff found differences or WeCom
refused the call, 2 the menu file has problems.
"""

from __future__ import annotations

import json
import sys

from bot.callback.router import Inbound
from bot.handlers import chat
from bot.menus.definition import MENU_FILE, MenuError, build, click_keys
from bot.menus.diff import diff
from bot.registry import Registry
from bot.wecom import APIError, TransportError, WeComError, client_for
from settings import Settings, get_settings
from store import db, init_store

NO_MENU = 46003  # menu/get: the app has no menu yet


def main(args) -> int:

    s = get_settings()
    path = getattr(args, "file", None) or s.menu_file or MENU_FILE  # --file, then MENU_FILE, then the shipped one
    try:
        menu = build(s, path)
    except MenuError as e:
        print(f"{e.source}: the menu cannot be uploaded, {len(e.problems)} problem(s):", file=sys.stderr)
        for p in e.problems:
            print(f"  {p}", file=sys.stderr)
        return 2
    _warn_unhandled(menu, s)
    if args.action == "show":
        print(json.dumps(menu, ensure_ascii=False, indent=2))
        return 0

    try:
        if args.action == "push":
            return _push(s, menu)
        return _diff(s, menu)
    except TransportError as e:
        print(
            f"wqbot menu {args.action}: could not reach WeCom at WECOM_API_BASE={s.wecom_api_base}: {e}",
            file=sys.stderr,
        )
        return 1
    except WeComError as e:
        print(f"wqbot menu {args.action}: WeCom refused: {e}", file=sys.stderr)
        return 1


def _client(s):

    if db.obj is None:  # the client may keep its tokens in the store
        init_store(s.database_url)
    return client_for(s)


def _push(s, menu: dict) -> int:
    _client(s).menu_create(menu)
    n = sum(len(b.get("sub_button") or [b]) for b in menu["button"])
    print(
        f"menu pushed to agent {s.wecom_agent_id}: {len(menu['button'])} top-level buttons, {n} actions. "
        "Members see it the next time they open the app."
    )
    return 0


def _current(s) -> dict | None:

    try:
        return _client(s).menu_get()
    except APIError as e:
        if e.errcode == NO_MENU:
            return None
        raise


def _diff(s, menu: dict) -> int:
    current = _current(s)
    changes = diff(current, menu)
    if not changes:
        print(f"WeCom already has this menu for agent {s.wecom_agent_id}.")
        return 0
    what = "has no menu" if not current or not current.get("button") else "has a different menu"
    print(f"WeCom {what} for agent {s.wecom_agent_id}; `wqbot menu push` would make it:")
    for line in changes:
        print(line)
    return 1


def _warn_unhandled(menu: dict, settings: Settings) -> None:
    """A click key no handler knows is answered with help: likely a typo in the menu file."""
    app = Registry(settings)
    chat.contribute(app)
    for key in click_keys(menu):
        handler = app.app_callbacks.resolve(Inbound(MsgType="event", Event="click", EventKey=key))
        if handler is None or handler is chat.on_unknown_click:
            print(
                f"note: click key {key!r} has no handler in bot/handlers/chat.py: taps get the help text",
                file=sys.stderr,
            )
