"""Linking members to 微签 accounts: SYNC_MATCH_FIELD, the CSV overrides, and the one-account-one-member rule.

A member's *candidate* key is its override (an uploaded `userid,account` row) if it has one, else
its `match_key` (the normalised SYNC_MATCH_FIELD value, bot/sync/records.py). Its `account` is
the candidate only when no other member claims the same key: two active members with one key
(`+86 180-1734-4259` and `18017344259` under mobile) both get `account: null`, a warning naming
them, and a row in the account report, so 微签 can never log one person in as another. An active
member wins a key over departed ones.

`settle(keys)` applies the rule to the members of a few keys (after one user's or one chunk's
write, in the caller's transaction); `relink(settings)` recomputes every member in one pass
(SYNC_MATCH_FIELD changed, a CSV was imported) and writes only the rows that change.
"""

from __future__ import annotations

import csv
import io
import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

import peewee as pw

from settings import Settings
from store import clock
from store.console import AccountOverride
from store.db import write_transaction
from store.directory import SyncState, User, UserDepartment, record_changes

from . import records as R
from .payloads import user_payload

log = logging.getLogger("wqbot.sync")

CHUNK = 500
STATE_KEY = "account_match_field"  # SyncState: the SYNC_MATCH_FIELD the stored links were made with


def _resolve(members: list[tuple[str, bool]]) -> set[str]:
    """The userids (at most one) that may hold a key claimed by `members` (userid, active)."""
    winners = [uid for uid, active in members if active] or [uid for uid, _ in members]
    return set(winners) if len(winners) == 1 else set()


def _warn_ambiguous(key_members: dict[str, list[tuple[str, bool]]]) -> None:
    for members in key_members.values():
        active = sorted(uid for uid, a in members if a)
        if len(active) > 1:
            log.warning(
                "two members claim one 微签 account: neither is linked (see the account report, wqbot accounts report)",
                extra={"members": active},
            )


def _payloads(users: list[User]) -> list[tuple[str, str, dict]]:
    depts: dict[str, list[int]] = defaultdict(list)
    for uid, d in (
        UserDepartment.select(UserDepartment.userid, UserDepartment.department_id)
        .where(UserDepartment.userid.in_([u.userid for u in users]))
        .tuples()
    ):
        depts[uid].append(d)
    return [
        (
            "user.updated",
            u.userid,
            user_payload(u, sorted(depts.get(u.userid, ()))),
        )
        for u in users
    ]


def settle(keys: Iterable[str | None], quiet: Iterable[str] = ()) -> dict[str, str | None]:
    """Apply the one-member-per-account rule to every member claiming one of `keys`, inside the
    caller's transaction. Writes only changed rows; records `user.updated` for each changed member
    not in `quiet` (whose caller writes its own feed row). Returns userid → account for them."""
    wanted = {k for k in keys if k}
    if not wanted:
        return {}
    members: dict[str, User] = {}
    overrides: dict[str, str] = {}
    for _ in range(2):  # a member found by one key may claim another through its override
        ov_uids = [
            r[0]
            for r in AccountOverride.select(AccountOverride.userid)
            .where(AccountOverride.account.in_(list(wanted)))
            .tuples()
        ]
        for u in User.select().where(User.match_key.in_(list(wanted)) | User.userid.in_(ov_uids)):
            members[u.userid] = u
        for uid, acc in (
            AccountOverride.select(AccountOverride.userid, AccountOverride.account)
            .where(AccountOverride.userid.in_(list(members)))
            .tuples()
        ):
            overrides[uid] = acc
        more = {overrides.get(uid) or u.match_key for uid, u in members.items()} - wanted - {None}
        if not more:
            break
        wanted |= {k for k in more if k}
    by_key: dict[str, list[tuple[str, bool]]] = defaultdict(list)
    for uid, u in members.items():
        cand = overrides.get(uid) or u.match_key
        if cand:
            by_key[cand].append((uid, bool(u.active)))
    _warn_ambiguous(by_key)
    out: dict[str, str | None] = {uid: None for uid in members}
    for key, claim in by_key.items():
        for uid in _resolve(claim):
            out[uid] = key
    changed = [u for uid, u in members.items() if u.account != out[uid]]
    if changed:
        at = clock.now()
        for u in changed:
            u.account = out[u.userid]
            User.update(account=u.account, updated_at=at).where(User.userid == u.userid).execute()
        quiet = set(quiet)
        record_changes(_payloads([u for u in changed if u.userid not in quiet]))
    return out


@dataclass
class Relinked:
    written: int = 0  # rows whose match_key or account changed
    accounts_changed: int = 0  # of those, rows whose account changed (one user.updated each)
    ambiguous: dict[str, list[str]] = field(default_factory=dict)


def relink(settings: Settings) -> Relinked:
    """Recompute every member's match_key and account under SYNC_MATCH_FIELD and the overrides,
    in one pass; write only the rows that change, with one `user.updated` per changed account."""
    mf = settings.sync_match_field
    result = Relinked()
    with write_transaction():
        overrides = dict(AccountOverride.select(AccountOverride.userid, AccountOverride.account).tuples())
        rows = list(
            User.select(
                User.userid,
                User.mobile,
                User.email,
                User.alias,
                User.biz_mail,
                User.extattr,
                User.active,
                User.match_key,
                User.account,
            )
            .order_by(User.userid)
            .tuples()
        )
        keys: dict[str, str | None] = {}
        by_key: dict[str, list[tuple[str, bool]]] = defaultdict(list)
        for uid, mobile, email, alias, biz_mail, extattr, active, _, _ in rows:
            rec = {"alias": alias, "biz_mail": biz_mail, "extattr": extattr, "mobile": mobile, "email": email}
            keys[uid] = R.account_key(mf, uid, mobile, email, rec)
            cand = overrides.get(uid) or keys[uid]
            if cand:
                by_key[cand].append((uid, bool(active)))
        accounts: dict[str, str | None] = {}
        for key, claim in by_key.items():
            for uid in _resolve(claim):
                accounts[uid] = key
            if len([1 for _, a in claim if a]) > 1:
                result.ambiguous[key] = sorted(uid for uid, a in claim if a)
        _warn_ambiguous({k: [(u, True) for u in v] for k, v in result.ambiguous.items()})
        changed = [
            (uid, keys[uid], accounts.get(uid), account != accounts.get(uid))
            for uid, *_, match_key, account in rows
            if (match_key, account) != (keys[uid], accounts.get(uid))
        ]
        at = clock.now()
        for batch in pw.chunked(changed, CHUNK):
            User.insert_many(
                [{"userid": uid, "match_key": k, "account": a, "updated_at": at} for uid, k, a, _ in batch]
            ).on_conflict(
                conflict_target=[User.userid], preserve=[User.match_key, User.account, User.updated_at]
            ).execute()
            moved = [uid for uid, _, _, acc_changed in batch if acc_changed]
            if moved:
                record_changes(_payloads(list(User.select().where(User.userid.in_(moved)))))
        SyncState.insert(key=STATE_KEY, value=mf, updated_at=at).on_conflict(
            conflict_target=[SyncState.key], update={SyncState.value: mf, SyncState.updated_at: at}
        ).execute()
    result.written = len(changed)
    result.accounts_changed = sum(1 for *_, c in changed if c)
    if result.written:
        log.info("accounts relinked", extra={"match_field": mf, "written": result.written})
    return result


def linked_with() -> str | None:
    """The SYNC_MATCH_FIELD the stored links were made with (None: never relinked)."""
    row = SyncState.get_or_none(SyncState.key == STATE_KEY)
    return row.value if row else None


def relink_if_field_changed(settings: Settings) -> Relinked | None:
    if linked_with() == settings.sync_match_field:
        return None
    return relink(settings)


# -- the CSV override --------------------------------------------------------------------------------
class MappingError(ValueError):
    pass


def parse_mapping(text: str) -> dict[str, str]:
    """`userid,account` lines (an optional header line; an empty account removes the override).
    Raises MappingError naming the line to fix."""
    out: dict[str, str] = {}
    for n, row in enumerate(csv.reader(io.StringIO(text.lstrip("\ufeff"))), 1):
        if not row or not any(c.strip() for c in row):
            continue
        if n == 1 and [c.strip().lower() for c in row[:2]] == ["userid", "account"]:
            continue
        if len(row) != 2:
            raise MappingError(f"line {n}: expected two columns userid,account, got {len(row)}")
        uid, account = row[0].strip(), row[1].strip()
        if not uid or len(uid) > 64:
            raise MappingError(f"line {n}: the userid must be 1-64 characters")
        if len(account) > 255:
            raise MappingError(f"line {n}: the account must be at most 255 characters")
        out[uid] = account
    return out


def import_mapping(text: str, settings: Settings) -> tuple[int, Relinked]:
    """Store the overrides a CSV names and relink. Returns (rows read, what the relink wrote)."""
    mapping = parse_mapping(text)
    at = clock.now()
    with write_transaction():
        gone = [uid for uid, acc in mapping.items() if not acc]
        if gone:
            AccountOverride.delete().where(AccountOverride.userid.in_(gone)).execute()
        rows = [{"userid": uid, "account": acc, "updated_at": at} for uid, acc in mapping.items() if acc]
        for batch in pw.chunked(rows, CHUNK):
            AccountOverride.insert_many(batch).on_conflict(
                conflict_target=[AccountOverride.userid],
                preserve=[AccountOverride.account, AccountOverride.updated_at],
            ).execute()
    return len(mapping), relink(settings)


# -- the account report ------------------------------------------------------------------------------
@dataclass
class Report:
    active: int = 0
    unlinked: list[tuple[str, str]] = field(default_factory=list)  # (userid, name) with no key at all
    ambiguous: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # key → members


def report() -> Report:
    """Active members with no account: those with no key, and keys claimed by several members."""
    overrides = dict(AccountOverride.select(AccountOverride.userid, AccountOverride.account).tuples())
    out = Report()
    by_key: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for uid, name, match_key, account in (
        User.select(User.userid, User.name, User.match_key, User.account)
        .where(User.active)
        .order_by(User.userid)
        .tuples()
    ):
        out.active += 1
        cand = overrides.get(uid) or match_key
        if cand:
            by_key[cand].append((uid, name))
        elif not account:
            out.unlinked.append((uid, name))
    out.ambiguous = {k: v for k, v in sorted(by_key.items()) if len(v) > 1}
    return out


def report_csv(r: Report) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["problem", "userid", "name", "key"])
    for uid, name in r.unlinked:
        w.writerow(["no_account", uid, name, ""])
    for key, members in r.ambiguous.items():
        for uid, name in members:
            w.writerow(["ambiguous", uid, name, key])
    return buf.getvalue()
