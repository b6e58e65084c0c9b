"""change_contact events (通讯录同步 callback; the app callback routes them too).

Each handler applies what the event carries at once, inside the delivery's transaction, and
defers a user/get or department/get (app token) that applies the rest as an update: events
configured after 2022-08-15 carry only IDs (PROTOCOL §3.9). Handlers are idempotent; a retried
delivery is also deduped by the callback endpoint. update_tag is ignored: wqbot keeps no tags.
"""

from __future__ import annotations

import logging

from bot.handlers import contacts_router
from bot.sync import records as R
from bot.sync.apply import apply_department, apply_user, delete_department, disable_user, rename_user
from bot.sync.tasks import fetch_department, fetch_user

log = logging.getLogger("wqbot.contacts")


def _userid(msg) -> str | None:
    uid = msg.get_str("UserID").strip()
    if not uid:
        log.warning("change_contact without UserID ignored", extra={"change_type": msg.change_type})
    return uid or None


def _dept_id(msg) -> int | None:
    try:
        return int(msg.get_str("Id").strip())
    except ValueError:
        log.warning("change_contact without a numeric Id ignored", extra={"change_type": msg.change_type})
        return None


@contacts_router.event("change_contact", change_type="create_user")
def on_create_user(msg, ctx):
    uid = _userid(msg)
    if uid:
        apply_user(R.user_from_event(msg, uid), ctx.settings, partial=True, reactivate=True)
        ctx.defer(fetch_user, userid=uid)


@contacts_router.event("change_contact", change_type="update_user")
def on_update_user(msg, ctx):
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
    ctx.defer(fetch_user, userid=uid)


@contacts_router.event("change_contact", change_type="delete_user")
def on_delete_user(msg, ctx):
    uid = _userid(msg)
    if uid:
        disable_user(uid)


@contacts_router.event("change_contact", change_type="create_party")
def on_create_party(msg, ctx):
    i = _dept_id(msg)
    if i is not None:
        apply_department(R.department_from_event(msg), partial=True, reactivate=True)
        ctx.defer(fetch_department, id=i)


@contacts_router.event("change_contact", change_type="update_party")
def on_update_party(msg, ctx):
    i = _dept_id(msg)
    if i is not None:
        apply_department(R.department_from_event(msg), partial=True)
        ctx.defer(fetch_department, id=i)


@contacts_router.event("change_contact", change_type="delete_party")
def on_delete_party(msg, ctx):
    i = _dept_id(msg)
    if i is None:
        return
    # WeCom empties a department before deleting it, but the update_user events moving its
    # members may come after this one: fetch whoever is still listed in it.
    for uid in delete_department(i):
        ctx.defer(fetch_user, userid=uid)
