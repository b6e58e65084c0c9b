"""Map 微签's recipient keys to WeCom userids (for the notifications capability)."""

from __future__ import annotations

import peewee as pw

from settings import Settings, get_settings
from store.directory import User

from . import records as R

CHUNK = 500


def resolve_recipients(keys: list[str], settings: Settings | None = None) -> tuple[dict[str, str], list[str]]:
    """`(found, unknown)`: `found` maps each key to an active member's userid; `unknown` lists
    the keys that match no active member (unknown, departed, disabled) or more than one.

    A key is a WeCom userid or a linked 微签 account key (the member's SYNC_MATCH_FIELD value:
    userid, mobile or email; mobiles and emails are compared normalised). A userid match wins over
    an account match; userids compare case-insensitively, as WeCom's do. One query per 500
    keys (plus one per 500 keys that matched nothing exactly)."""
    if settings is None:
        settings = get_settings()
    mf = settings.sync_match_field
    wanted = list(dict.fromkeys(k for k in keys if isinstance(k, str) and k))
    norm = {k: R.normalise_key(mf, k) for k in wanted}
    by_userid: dict[str, str] = {}
    by_account: dict[str, set[str]] = {}
    for batch in pw.chunked(wanted, CHUNK):
        accounts = list({norm[k] for k in batch})
        q = (
            User.select(User.userid, User.account)
            .where(User.active & (User.userid.in_(batch) | User.account.in_(accounts)))
            .tuples()
        )
        for userid, account in q:
            by_userid[userid] = userid
            if account:
                by_account.setdefault(account, set()).add(userid)
    # WeCom userids are case-insensitive: a key that matched nothing exactly gets one more look
    missed = [k for k in wanted if k not in by_userid and len(by_account.get(norm[k], ())) != 1]
    by_lower: dict[str, set[str]] = {}
    for batch in pw.chunked(missed, CHUNK):
        for (userid,) in (
            User.select(User.userid)
            .where(User.active & pw.fn.LOWER(User.userid).in_([k.lower() for k in batch]))
            .tuples()
        ):
            by_lower.setdefault(userid.lower(), set()).add(userid)
    found, unknown = {}, []
    for k in wanted:
        if k not in by_userid and len(by_lower.get(k.lower(), ())) == 1:
            found[k] = next(iter(by_lower[k.lower()]))
            continue
        if k in by_userid:
            found[k] = k
            continue
        hits = by_account.get(norm[k], set())
        if len(hits) == 1:
            found[k] = next(iter(hits))
        else:
            unknown.append(k)
    return found, unknown
