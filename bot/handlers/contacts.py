"""change_contact events (通讯录同步 callback; the app callback routes them too).

Each handler applies what the event carries at once, inside the delivery's transaction, and
defers a user/get or department/get (app token) that applies the rest as an update: events
configured after 2022-08-15 carry only IDs (docs/wecom.md). Handlers are idempotent; a retried
delivery is also deduped by the callback endpoint. update_tag is ignored: wqbot keeps no tags.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from bot.callback.router import Context, Inbound
from bot.queue import defer
from bot.sync import records as R
from bot.sync.apply import apply_department, apply_user, delete_department, disable_user, rename_user
from bot.sync.tasks import fetch_department, fetch_user

if TYPE_CHECKING:
    from bot.registry import Registry

log = logging.getLogger("wqbot.contacts")


def _userid(msg: Inbound) -> str | None:
    uid = msg.get_str("UserID").strip()
    if not uid:
        log.warning("change_contact without UserID ignored", extra={"change_type": msg.change_type})
    return uid or None


def _dept_id(msg: Inbound) -> int | None:
    try:
        return int(msg.get_str("Id").strip())
    except ValueError:
        log.warning("change_contact without a numeric Id ignored", extra={"change_type": msg.change_type})
        return None


def on_create_user(msg: Inbound, ctx: Context) -> None:
    uid = _userid(msg)
    if uid:
        apply_user(R.user_from_event(msg, uid), ctx.settings, partial=True, reactivate=True)
        defer(fetch_user, userid=uid)


def on_update_user(msg: Inbound, ctx: Context) -> None:
    uid = _userid(msg)
    if not uid:
        return
    new = msg.get_str("NewUserID").strip()
    if new and new != uid:
        rename_user(uid, new, R.user_from_event(msg, new), ctx.settings)
        uid = new
    else:
        # an unknown user is created from what the event carries; the fetch fills in the rest
        apply_user(R.user_from_event(msg, uid), ctx.settings, partial=True)
    defer(fetch_user, userid=uid)


def on_delete_user(msg: Inbound, ctx: Context) -> None:
    uid = _userid(msg)
    if uid:
        disable_user(uid)


def on_create_party(msg: Inbound, ctx: Context) -> None:
    i = _dept_id(msg)
    if i is not None:
        apply_department(R.department_from_event(msg), partial=True, reactivate=True)
        defer(fetch_department, id=i)


def on_update_party(msg: Inbound, ctx: Context) -> None:
    i = _dept_id(msg)
    if i is not None:
        apply_department(R.department_from_event(msg), partial=True)
        defer(fetch_department, id=i)


def on_delete_party(msg: Inbound, ctx: Context) -> None:
    i = _dept_id(msg)
    if i is None:
        return
    # WeCom empties a department before deleting it, but the update_user events moving its
    # members may come after this one: fetch whoever is still listed in it.
    for uid in delete_department(i):
        defer(fetch_user, userid=uid)


HANDLERS = {
    "create_user": on_create_user,
    "update_user": on_update_user,
    "delete_user": on_delete_user,
    "create_party": on_create_party,
    "update_party": on_update_party,
    "delete_party": on_delete_party,
}


def contribute(app: Registry) -> None:
    """change_contact events, on the contacts callback (and the app callback: see bot/callback)."""
    for change_type, handler in HANDLERS.items():
        app.contacts_callbacks.event("change_contact", change_type=change_type)(handler)
