"""Who a notification goes to: 微签's recipient keys → WeCom userids, and the names cards show.

The directory capability owns the mapping: `bot.sync.resolve_recipients` (userids, or linked 微签
account keys per SYNC_MATCH_FIELD; unknown, disabled and ambiguous keys are reported).
"""

from __future__ import annotations

from peewee import chunked

from bot.sync import resolve_recipients
from store.directory import User


def _directory_empty() -> bool:
    return not User.select().exists()


def resolve(keys: list[str]) -> tuple[dict[str, str], list[str]]:
    """(key → WeCom userid for every key that is an active member, keys that are not).

    A directory that was never synced knows nobody: keys then pass through as userids, so a
    fresh install still delivers and WeCom's `invaliduser` reports the wrong ones."""
    if not keys:
        return {}, []
    if _directory_empty():
        return {k: k for k in keys}, []
    mapping, unknown = resolve_recipients(keys)
    return dict(mapping), list(unknown)


def names(userids) -> dict[str, str]:
    """userid → the name to show (the directory's; unknown ones are left out)."""
    ids = [u for u in dict.fromkeys(userids) if u]
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
