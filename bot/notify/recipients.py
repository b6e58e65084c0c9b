"""Who a notification goes to: 微签's recipient keys → WeCom userids, and the names cards show.

The directory capability owns the mapping (`bot.sync.resolve_recipients`, which honours
SYNC_MATCH_FIELD). Until it is in the build, a minimal lookup stands in: a key is a known member
when it is an active directory user's userid or linked 微签 account. With an empty directory
(never synced) keys pass through as userids and WeCom's `invaliduser` decides.
"""
from __future__ import annotations

import importlib
import logging

from peewee import chunked, fn

log = logging.getLogger("wqbot.notify")


def _directory_user():
    try:
        from store.directory import User
    except ImportError:
        return None
    return User


def _sync_resolver():
    try:
        mod = importlib.import_module("bot.sync")
    except ModuleNotFoundError as e:
        if e.name != "bot.sync":
            raise
        return None
    return getattr(mod, "resolve_recipients", None)


def resolve(keys: list[str]) -> tuple[dict[str, str], list[str]]:
    """(key → WeCom userid for every key that is an active member, keys that are not)."""
    resolver = _sync_resolver()
    if resolver is not None:
        mapping, unknown = resolver(keys)
        return dict(mapping), list(unknown)
    return _fallback_resolve(keys)


def _fallback_resolve(keys: list[str]) -> tuple[dict[str, str], list[str]]:
    User = _directory_user()
    if User is None or not User.table_exists() or not User.select().exists():
        return {k: k for k in keys}, []
    found: dict[str, str] = {}
    inactive: set[str] = set()
    for chunk in chunked(keys, 500):
        lowered = [k.lower() for k in chunk]
        q = User.select(User.userid, User.account, User.active).where(
            fn.LOWER(User.userid).in_(lowered) | User.account.in_(chunk))
        by_id, by_account = {}, {}
        for u in q:
            by_id[u.userid.lower()] = u
            if u.account:
                by_account[u.account] = u
        for k in chunk:
            u = by_id.get(k.lower()) or by_account.get(k)
            if u is None:
                continue
            if u.active:
                found[k] = u.userid
            else:
                inactive.add(k)
    return found, [k for k in keys if k not in found]


def names(userids) -> dict[str, str]:
    """userid → the name to show (the directory's; missing ones are left out)."""
    User = _directory_user()
    ids = [u for u in dict.fromkeys(userids) if u]
    if User is None or not ids or not User.table_exists():
        return {}
    out = {}
    for chunk in chunked(ids, 500):
        for u in User.select(User.userid, User.name).where(User.userid.in_(chunk)):
            if u.name:
                out[u.userid] = u.name
    return out


def display_name(userid: str | None) -> str:
    if not userid:
        return ""
    return names([userid]).get(userid, userid)
