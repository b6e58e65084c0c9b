"""Apply one user's or one department's change to the store, with its feed row.

Used by the change_contact handlers (inside the callback's transaction) and by the queued
fetch tasks (user/get, department/get). The bulk reconciliation uses the same merge rules
(`merge_user`) on whole chunks, in bot/sync/reconcile.py.

Merge rules:
- A partial record (an event carries only some fields) changes only the fields it has.
- mobile/email a record does not give (hidden by WeCom's privacy rules) become null, except a
  value the login stored from OAuth (`*_source == "oauth"`), which is kept.
- `account` is recomputed from SYNC_MATCH_FIELD whenever the row is written.
- Nothing is written, and no feed row appears, when the directory's view of the row is unchanged
  (same content hash and same active flag).
"""

from __future__ import annotations

import logging
from functools import lru_cache

from settings import Settings, get_settings
from store import clock, prepared, statements
from store.db import db, is_postgres, write_transaction
from store.directory import Department, User, UserDepartment, record_change, record_changes

from . import accounts
from . import records as R
from .payloads import department_payload, user_payload

log = logging.getLogger("wqbot.sync")


# -- users -----------------------------------------------------------------------------------------
def stored_record(u: User, mems: tuple) -> dict:
    """The directory's view of a stored user (OAuth-sourced values are not the directory's)."""
    return {
        "userid": u.userid,
        "name": u.name,
        "mobile": u.mobile if u.mobile_source == "directory" else None,
        "email": u.email if u.email_source == "directory" else None,
        "position": u.position,
        "alias": u.alias,
        "biz_mail": u.biz_mail,
        "extattr": u.extattr,
        "status": u.status,
        "main_department": u.main_department,
        "departments": mems,
    }


def overlay(base: dict, partial: dict) -> dict:
    """`base` with what a partial record carries. Department order and leader flags an event
    does not carry are kept from `base` for the departments the user stays in."""
    out = dict(base)
    for k, v in partial.items():
        if k.startswith("_") or k == "departments":
            continue
        out[k] = v
    if "departments" in partial:
        old = {d: (o, lead) for d, o, lead in base.get("departments", ())}
        leaders_known = partial.get("_leaders_known", True)
        orders_known = partial.get("_orders_known", True)
        out["departments"] = tuple(
            (d, o if orders_known else old.get(d, (0, False))[0], lead if leaders_known else old.get(d, (0, False))[1])
            for d, o, lead in partial["departments"]
        )
        if out.get("main_department") not in {d for d, _, _ in out["departments"]} and "main_department" not in partial:
            out["main_department"] = out["departments"][0][0] if out["departments"] else None
    return out


def _contact(field: str, given: str | None, existing: User | None) -> tuple[str | None, str | None]:
    """(value, source) for mobile/email: the directory's value, else a kept OAuth value, else null."""
    if given is not None:
        return given, "directory"
    if existing is not None and getattr(existing, f"{field}_source") == "oauth" and getattr(existing, field):
        return getattr(existing, field), "oauth"
    return None, None


def user_row(rec: dict, existing: User | None, match_field: str, active: bool, at: float, details: bool) -> dict:
    """The full User row for a complete directory record `rec`, merged with `existing`."""
    mobile, mobile_source = _contact("mobile", rec.get("mobile"), existing)
    email, email_source = _contact("email", rec.get("email"), existing)
    key = R.account_key(match_field, rec["userid"], mobile, email, rec)
    # Provisional: the caller settles it (bot/sync/accounts.py) after the write, in the same transaction.
    account = existing.account if existing is not None and existing.match_key == key else key
    row = {
        "userid": rec["userid"],
        "name": rec.get("name") or "",
        "mobile": mobile,
        "email": email,
        "position": rec.get("position"),
        "alias": rec.get("alias"),
        "biz_mail": rec.get("biz_mail"),
        "extattr": rec.get("extattr"),
        "status": rec.get("status"),
        "active": active,
        "main_department": rec.get("main_department"),
        "mobile_source": mobile_source,
        "email_source": email_source,
        "match_key": key,
        "account": account,
        "detail_hash": R.detail_hash(rec) if details else "",
        "dept_hash": R.dept_hash(d for d, _, _ in rec.get("departments", ())),
        "details_at": at if details else (existing.details_at if existing else 0.0),
        "updated_at": at,
        "created_at": existing.created_at if existing else at,
    }
    return row


# One member's rows are read and written on every change_contact event, inside the callback's
# transaction: with statements built once (store/statements.py), not by peewee each time.
@lru_cache(maxsize=2)
def _memberships_sql(postgres: bool) -> str:
    t, p = UserDepartment._meta.table_name, "%s" if postgres else "?"
    return f'SELECT "department_id", "order", "is_leader" FROM "{t}" WHERE "userid" = {p}'


@lru_cache(maxsize=2)
def _delete_memberships_sql(postgres: bool) -> str:
    return f'DELETE FROM "{UserDepartment._meta.table_name}" WHERE "userid" = {"%s" if postgres else "?"}'


def _memberships(userid: str) -> tuple:
    q = prepared.execute(db.obj, _memberships_sql(is_postgres()), (userid,))
    return tuple(sorted((d, o, bool(lead)) for d, o, lead in q.fetchall()))


def _write_user(row: dict, mems: tuple | None, old_mems: tuple | None) -> None:
    statements.insert(User, row, conflict=("userid",), keep=("created_at",))
    if mems is not None and mems != old_mems:
        prepared.execute(db.obj, _delete_memberships_sql(is_postgres()), (row["userid"],))
        if mems:
            statements.insert(
                UserDepartment,
                [{"userid": row["userid"], "department_id": d, "order": o, "is_leader": lead} for d, o, lead in mems],
            )


def _saved(row: dict) -> User:
    return User(**row)


def _settle_own(row: dict, existing: User | None) -> None:
    """Settle the keys this write touched; `row` gets the member's own settled account."""
    if existing is not None and existing.match_key == row["match_key"] and bool(existing.active) == bool(row["active"]):
        return  # same key, same standing: who holds it cannot have changed (row keeps the stored account)
    settled = accounts.settle({existing.match_key if existing else None, row["match_key"]}, quiet={row["userid"]})
    row["account"] = settled.get(row["userid"], row["account"])


def apply_user(rec: dict, settings: Settings, *, partial: bool, reactivate: bool = False) -> str | None:
    """Apply one user record; returns the feed kind written, or None when nothing changed.

    partial: the record carries only some fields (an event). reactivate: the source says the
    member exists now (create_user, a user/get answer), so a departed user becomes active again;
    a bare update_user for a departed user (events arrive in any order) does not revive them."""
    userid = rec["userid"]
    at = clock.now()
    with write_transaction():
        existing = statements.select_one(User, "userid", userid)
        old_mems = _memberships(userid) if existing else ()
        if existing is None:
            merged = overlay({"userid": userid, "name": "", "departments": ()}, rec) if partial else rec
            active = R.is_active(merged.get("status"))
            kind = "user.created"
        else:
            base = stored_record(existing, old_mems)
            merged = overlay(base, rec) if partial else rec
            active = R.is_active(merged.get("status")) if (existing.active or reactivate) else False
            same = merged == base if partial else R.detail_hash(merged) == existing.detail_hash
            if same and active == existing.active:
                return None
            kind = (
                "user.created"
                if active and not existing.active
                else "user.deleted"
                if existing.active and not active
                else "user.updated"
            )
        row = user_row(merged, existing, settings.sync_match_field, active, at, details=not partial)
        if partial:
            # An event's view is not a user/get answer; its hash lets the queued fetch skip the
            # write when the directory says exactly what the event did.
            row["detail_hash"] = R.detail_hash(merged)
        mems = merged.get("departments", ())
        _write_user(row, mems, old_mems)
        _settle_own(row, existing)
        data = user_payload(_saved(row), [d for d, _, _ in mems])
        if kind == "user.created" and existing is not None:
            data["reactivated"] = True
        record_change(kind, userid, data)
        return kind


def rename_user(old: str, new: str, rec: dict, settings: Settings) -> str | None:
    """update_user with NewUserID: one `user.renamed`, never a delete plus a create."""
    with write_transaction():
        src = User.get_or_none(User.userid == old)
        dst = User.get_or_none(User.userid == new)
        if src is None:
            # Already renamed (a retry, or reconciliation saw the new id first), or never seen:
            # an update of `new`, which creates it (and the caller queues its fetch).
            return apply_user({**rec, "userid": new}, settings, partial=True)
        if dst is not None:
            # reconciliation created `new` before this event came: the old row is the stale twin
            UserDepartment.delete().where(UserDepartment.userid == old).execute()
            User.delete().where(User.userid == old).execute()
        else:
            User.update(userid=new).where(User.userid == old).execute()
            UserDepartment.update(userid=new).where(UserDepartment.userid == old).execute()
        existing = User.get(User.userid == new)
        old_mems = _memberships(new)
        merged = overlay(stored_record(existing, old_mems), {**rec, "userid": new})
        row = user_row(merged, existing, settings.sync_match_field, existing.active, clock.now(), details=False)
        row["detail_hash"] = R.detail_hash(merged)
        row["details_at"] = existing.details_at
        mems = merged.get("departments", ())
        _write_user(row, mems, old_mems)
        _settle_own(row, existing)
        record_change("user.renamed", new, {**user_payload(_saved(row), [d for d, _, _ in mems]), "old_userid": old})
        return "user.renamed"


def disable_user(userid: str) -> str | None:
    """delete_user: a soft delete (memberships are kept as the last known ones)."""
    with write_transaction():
        u = User.get_or_none(User.userid == userid)
        if u is None or not u.active:
            return None
        u.active = False
        u.updated_at = clock.now()
        u.save()
        record_change("user.deleted", userid, user_payload(u, [d for d, _, _ in _memberships(userid)]))
        accounts.settle({u.match_key})  # a member left: another one may now hold the key alone
        return "user.deleted"


def link_account(user: User | str, settings: Settings | None = None) -> str | None:
    """Recompute `user.account` from SYNC_MATCH_FIELD and the user's current mobile/email.

    For the login code: after storing a mobile/email obtained through OAuth
    (`mobile_source="oauth"`), call this so the member links to their 微签 account. Writes (and
    records `user.updated`) only when the key changed. Returns the account key."""
    if settings is None:
        settings = get_settings()
    userid = user.userid if isinstance(user, User) else user
    with write_transaction():
        u = User.get_or_none(User.userid == userid)
        if u is None:
            return None
        rec = {"alias": u.alias, "biz_mail": u.biz_mail, "extattr": u.extattr}
        key = R.account_key(settings.sync_match_field, u.userid, u.mobile, u.email, rec)
        old_key = u.match_key
        if key != old_key:
            User.update(match_key=key).where(User.userid == userid).execute()
        account = accounts.settle({old_key, key, u.account}).get(userid, u.account)
        if isinstance(user, User):
            user.account = account
        return account


def apply_oauth_contact(
    userid: str, settings: Settings | None = None, *, mobile: str | None = None, email: str | None = None
) -> str | None:
    """Store a mobile/email the member disclosed at OAuth (snsapi_privateinfo) and relink.

    A value the directory gives wins over OAuth; OAuth fills only what the directory hides.
    Sync never nulls an OAuth-sourced value. Returns the account key."""
    with write_transaction():
        u = User.get_or_none(User.userid == userid)
        if u is None:
            return None
        changed = False
        for field, value in (("mobile", R._text(mobile)), ("email", R._text(email))):
            if value and getattr(u, f"{field}_source") != "directory" and getattr(u, field) != value:
                setattr(u, field, value)
                setattr(u, f"{field}_source", "oauth")
                changed = True
        if changed:
            u.save()
        return link_account(u, settings)


# -- departments -----------------------------------------------------------------------------------
def apply_department(rec: dict, *, partial: bool, reactivate: bool = False) -> str | None:
    """Upsert one department; returns the feed kind written or None."""
    at = clock.now()
    with write_transaction():
        existing = Department.get_or_none(Department.id == rec["id"])
        if existing is None:
            merged = {"name": "", "parent_id": None, "order": 0, **{k: v for k, v in rec.items()}}
            kind, active = "department.created", True
        else:
            base = {"name": existing.name, "parent_id": existing.parent_id, "order": existing.order}
            merged = {**base, **rec}  # department/simplelist and ID-only events carry no name
            active = existing.active or reactivate
            h = R.department_hash(merged)
            if h == existing.content_hash and active == existing.active:
                return None
            kind = "department.created" if active and not existing.active else "department.updated"
        row = {
            "id": rec["id"],
            "name": merged.get("name") or "",
            "parent_id": merged.get("parent_id"),
            "order": merged.get("order") or 0,
            "active": active,
            "content_hash": R.department_hash(merged),
            "updated_at": at,
            "details_at": at if "name" in rec else (existing.details_at if existing else 0.0),
        }
        Department.insert(row).on_conflict(
            conflict_target=[Department.id], update={k: v for k, v in row.items() if k != "id"}
        ).execute()
        record_change(kind, row["id"], department_payload(Department(**row)))
        return kind


def delete_department(dept_id: int) -> list[str]:
    """delete_party: soft-delete it and drop its memberships. Returns the userids that were still
    members (their new departments are fetched by the caller: WeCom moves members before it
    deletes a department, but the events may arrive in any order)."""
    with write_transaction():
        d = Department.get_or_none(Department.id == dept_id)
        members = [
            r[0]
            for r in UserDepartment.select(UserDepartment.userid)
            .where(UserDepartment.department_id == dept_id)
            .tuples()
        ]
        changes: list[tuple[str, str | int, dict]] = []
        if members:
            UserDepartment.delete().where(UserDepartment.department_id == dept_id).execute()
            for u in User.select().where(User.userid.in_(members)):
                mems = _memberships(u.userid)
                if u.main_department == dept_id:
                    u.main_department = mems[0][0] if mems else None
                # the department set changed: the stored hashes no longer describe the directory
                u.dept_hash = R.dept_hash(d for d, _, _ in mems)
                u.detail_hash, u.details_at = "", 0.0  # details pending: refetched
                u.updated_at = clock.now()
                u.save()
                changes.append(("user.updated", u.userid, user_payload(u, [m[0] for m in mems])))
        if d is not None and d.active:
            d.active = False
            d.updated_at = clock.now()
            d.save()
            changes.append(("department.deleted", dept_id, department_payload(d)))
        record_changes(changes)
        return members
