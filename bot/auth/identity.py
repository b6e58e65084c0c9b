"""Who logged in: the WeCom userid resolved against the synced directory (store.directory).

Only an active member known to the directory gets a ticket. With WECOM_OAUTH_SCOPE=
snsapi_privateinfo the member's mobile and email come from `auth/getuserdetail` (WeCom's 2022
privacy rules hide them from the directory APIs of newer apps), are stored with source "oauth",
and the 微签 account link is recomputed (bot.sync.apply.apply_oauth_contact) so
SYNC_MATCH_FIELD=mobile/email works from the first login.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from peewee import fn

from bot.sync.apply import apply_oauth_contact
from settings import Settings
from store.directory import User, UserDepartment

log = logging.getLogger("wqbot.auth")


@dataclass(frozen=True)
class Member:
    userid: str
    name: str
    active: bool
    account: str | None


def find_member(userid: str) -> Member | None:
    """The directory row for `userid` (WeCom userids are case-insensitive), or None."""

    row = User.get_or_none(User.userid == userid)
    if row is None:
        row = User.select().where(fn.LOWER(User.userid) == userid.lower()).first()
    if row is None:
        return None
    return Member(row.userid, row.name or "", bool(row.active), row.account)


def identity(userid: str) -> dict | None:
    """The ticket identity (docs/api.md, "Login tickets") minus `via`: {"userid", "name", "departments", "account"}."""

    row = User.get_or_none(User.userid == userid)
    if row is None:
        return None
    departments = sorted(
        (
            d.department_id
            for d in UserDepartment.select(UserDepartment.department_id).where(UserDepartment.userid == row.userid)
        ),
        key=lambda d: (d != row.main_department, d),
    )  # main department first
    return {
        "userid": row.userid,
        "name": row.name or "",
        "departments": departments,
        "account": row.account,
        "active": bool(row.active),
    }


def _clean(value) -> str:
    return value.strip() if isinstance(value, str) else ""


def store_private_fields(settings: Settings, userid: str, detail: dict) -> str | None:
    """Save mobile/email from getuserdetail (source "oauth") and relink the 微签 account.

    The merge rules (a directory value wins; sync never nulls an OAuth value) belong to the
    directory: bot.sync.apply.apply_oauth_contact. Empty values (the member declined) change
    nothing. Returns the account key."""

    mobile = _clean(detail.get("mobile")) or None
    email = _clean(detail.get("email")) or _clean(detail.get("biz_mail")) or None
    account = apply_oauth_contact(userid, settings, mobile=mobile, email=email)
    log.info(
        "private fields from OAuth applied",
        extra={"userid": userid, "fields": [k for k, v in (("mobile", mobile), ("email", email)) if v]},
    )
    return account
