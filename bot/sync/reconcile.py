"""The full reconciliation: read the directory, diff it in bulk against the store, apply.

    run = run_sync(settings, trigger="cli", full=False, force=False, progress=None)

Diff. The store keeps, per user, a content hash of what the directory last said (details and
department set). The whole store's (userid, hashes, active) is read in one query, the listing
is hashed in memory, and only rows whose hash or active flag differ are written, in chunks of
`CHUNK` per transaction: one SELECT … FOR UPDATE of the chunk (so an OAuth mobile stored at the
same moment is merged, not lost), one upsert, one membership delete + insert, one feed insert.
An unchanged directory costs zero writes to directory rows.

Fail-safe. If any listing call failed, creates and updates are applied and no one is disabled.
If the run would disable more than SYNC_MAX_DELETE_RATIO of the active users (or departments),
no disable is applied and the run says why; `wqbot sync --full --force` applies them.

list_id mode budget (docs/sync.md): membership comes from user/list_id on every
run; user/get is called for new and re-membered users first, then for a rotating slice of
ceil(users × SYNC_INTERVAL_MINUTES / (SYNC_REFRESH_HOURS × 60)) users, at most
SYNC_DETAIL_BUDGET per run, so every user's details are refreshed within SYNC_REFRESH_HOURS.
"""

from __future__ import annotations

import json
import logging
import math
import time
from bisect import bisect_right
from collections import defaultdict
from contextlib import contextmanager
from dataclasses import dataclass

import peewee as pw

from bot.observability import metrics, problems
from bot.wecom import SECRET_VARIABLE, WeComError, client_for
from settings import Settings
from store import clock
from store.db import is_postgres, write_transaction
from store.directory import Department, SyncRun, SyncRunStatus, SyncState, User, UserDepartment, record_changes

from . import accounts
from . import records as R
from .apply import overlay, rename_user, stored_record, user_row
from .fetch import (
    Listing,
    ModeRefused,
    directory_access,
    fetch_department_details,
    fetch_list,
    fetch_list_id,
    fetch_user_details,
)
from .lease import Lease
from .payloads import department_payload, user_payload

log = logging.getLogger("wqbot.sync")

CHUNK = 500
# Embedded, the sync shares one process (one GIL) and SQLite's one write lock with the callbacks.
# After each write chunk and each listing page it rests this many times the CPU that took, so it
# holds at most a fifth of the process: with no rest, or a shorter one, callbacks at half of capacity
# fell seconds behind during a 100k-member sync (bench/README.md). Waiting for WeCom is not CPU and earns
# no rest. Scaled out the sync has a worker process of its own and PostgreSQL has row locks: no rest.
EMBEDDED_REST = 4.0
# SyncRun counters as wqbot_sync_changes_total labels
METRIC_CHANGES = {
    "created": "user.created",
    "updated": "user.updated",
    "renamed": "user.renamed",
    "disabled": "user.disabled",
    "reactivated": "user.reactivated",
    "departments_created": "department.created",
    "departments_updated": "department.updated",
    "departments_disabled": "department.disabled",
    "held_disables": "user.disable_held",
}
MODE_KEY, CURSOR_KEY, DEPT_CURSOR_KEY = "mode", "refresh_cursor", "dept_refresh_cursor"
REPROBE_AFTER = 24 * 3600.0  # list_id mode tries list mode again this often (a fixed IP/visible range)


class SyncDisabled(Exception):
    pass


@dataclass
class Item:
    uid: str
    rec: dict
    details: bool  # rec is a full user/get|list record (else membership only, details pending)
    active: bool


# -- small state --------------------------------------------------------------------------------------
def get_state(key: str) -> SyncState | None:
    return SyncState.get_or_none(SyncState.key == key)


def set_state(key: str, value: str) -> None:
    now = clock.now()
    SyncState.insert(key=key, value=value, updated_at=now).on_conflict(
        conflict_target=[SyncState.key], update={SyncState.value: value, SyncState.updated_at: now}
    ).execute()


def remembered_mode() -> str:
    row = get_state(MODE_KEY)
    return row.value if row and row.value in ("list", "list_id") else "list"


# -- the run -------------------------------------------------------------------------------------------
class Run:
    def __init__(self, settings: Settings, *, trigger: str, full: bool, force: bool, progress, client, lease: Lease):
        self.s = settings
        self.full, self.force = full, force
        self.progress_cb = progress
        self.client = client or client_for(settings)
        self.lease = lease
        self.record = SyncRun.create(trigger=trigger, full=full, forced=force, started_at=clock.now())
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.counts: defaultdict[str, int] = defaultdict(int)
        self.reasons: list[str] = []
        self.listing: Listing | None = None
        self.rest = 0.0 if is_postgres() else EMBEDDED_REST
        self.page_started = time.thread_time()

    def pace(self, since: float) -> None:
        """The embedded setup's rest (EMBEDDED_REST) after a step that started at thread CPU `since`."""
        if self.rest:
            time.sleep(self.rest * (time.thread_time() - since))

    @contextmanager
    def chunk(self):
        """One chunk's write transaction, then the rest."""
        started = time.thread_time()
        with write_transaction():
            yield
        self.pace(started)

    def progress(self, stage: str, done: int, total: int | None) -> None:
        if stage in ("users", "membership"):  # a listing page read and parsed (one thread)
            self.pace(self.page_started)
            self.page_started = time.thread_time()
        self.lease.renew()
        if self.progress_cb:
            self.progress_cb(stage, done, total)

    # -- fetch ----------------------------------------------------------------------------------
    def fetch(self) -> Listing:
        mode = remembered_mode()
        row = get_state(MODE_KEY)
        if mode == "list_id" and (self.full or (row and clock.now() - row.updated_at > REPROBE_AFTER)):
            mode = "list"  # probe: the operator may have fixed the IP or the visible range
        self.record.mode = mode  # a run that fails says which mode it tried
        if mode == "list":
            try:
                listing = fetch_list(self.client, self.progress)
                if remembered_mode() != "list" or row is None:
                    set_state(MODE_KEY, "list")
                return listing
            except ModeRefused as e:
                self.warnings.append(
                    f"WeCom refused department/list or user/list ({e.error}); using list_id mode "
                    "(department/simplelist + user/list_id + user/get with the app secret) from now on"
                )
                set_state(MODE_KEY, "list_id")
                self.record.mode = "list_id"
        return fetch_list_id(self.client, self.progress)

    # -- departments ------------------------------------------------------------------------------
    def department_plan(self, listing: Listing) -> None:
        """list_id mode: department/get for new or unnamed departments plus a rotating slice."""
        stored = {
            i: (name, dat)
            for i, name, dat in Department.select(Department.id, Department.name, Department.details_at).tuples()
        }
        ids = sorted(listing.departments)
        if self.full:
            targets = ids
        else:
            first = [i for i in ids if i not in stored or stored[i][1] == 0]
            k = self.slice_size(len(ids))
            rot = self.rotate(DEPT_CURSOR_KEY, [str(i) for i in ids], k)
            targets = list(dict.fromkeys(first + [int(i) for i in rot]))[: self.s.sync_detail_budget]
        stats = fetch_department_details(self.client, listing, targets)
        if stats.get("unavailable"):
            self.warnings.append(
                f"{stats['unavailable']} departments are outside the app's 可见范围: their names "
                "stay unknown (widen it under 应用管理 → 自建应用 → 可见范围)"
            )
        for i, rec in listing.departments.items():
            if "name" not in rec and i in stored:
                rec["name"] = stored[i][0]

    def apply_departments(self, listing: Listing) -> None:
        stored = {
            i: (h, a)
            for i, h, a in Department.select(Department.id, Department.content_hash, Department.active).tuples()
        }
        at = clock.now()
        writes, disables = [], []
        for i, rec in listing.departments.items():
            rec.setdefault("name", "")
            h = R.department_hash(rec)
            st = stored.get(i)
            if st is None or st[0] != h or not st[1]:
                writes.append((rec, h, st))
        gone = [i for i, (h, a) in stored.items() if a and i not in listing.departments]
        active_n = sum(1 for h, a in stored.values() if a)
        if gone:
            if self.allow_disables("departments", len(gone), active_n):
                disables = gone
            else:
                self.counts["held_disables"] += len(gone)
        for batch in pw.chunked(writes, CHUNK):
            with self.chunk():
                rows, changes = [], []
                for rec, h, st in batch:
                    row = {
                        "id": rec["id"],
                        "name": rec.get("name") or "",
                        "parent_id": rec.get("parent_id"),
                        "order": rec.get("order") or 0,
                        "active": True,
                        "content_hash": h,
                        "updated_at": at,
                        "details_at": at if rec.get("name") else 0.0,
                    }
                    rows.append(row)
                    kind = "department.created" if st is None or not st[1] else "department.updated"
                    self.counts["departments_created" if kind == "department.created" else "departments_updated"] += 1
                    changes.append((kind, rec["id"], department_payload(Department(**row))))
                Department.insert_many(rows).on_conflict(
                    conflict_target=[Department.id],
                    preserve=[
                        Department.name,
                        Department.parent_id,
                        Department.order,
                        Department.active,
                        Department.content_hash,
                        Department.updated_at,
                        Department.details_at,
                    ],
                ).execute()
                record_changes(changes)
                self.counts["rows_written"] += len(rows)
        for batch in pw.chunked(disables, CHUNK):
            with self.chunk():
                Department.update(active=False, updated_at=at).where(Department.id.in_(batch)).execute()
                changes = [
                    ("department.deleted", d.id, department_payload(d))
                    for d in Department.select().where(Department.id.in_(batch))
                ]
                record_changes(changes)
                self.counts["departments_disabled"] += len(batch)
                self.counts["rows_written"] += len(batch)

    # -- guards -------------------------------------------------------------------------------------
    def allow_disables(self, what: str, n: int, active: int) -> bool:
        listing = self.listing
        if not listing.complete:
            self.reasons.append(
                f"a listing call failed, so no {what} were disabled ({n} missing from the "
                "incomplete listing); they will be checked again next run"
            )
            return False
        ratio = self.s.sync_max_delete_ratio
        if active and n / active > ratio and not self.force:
            self.reasons.append(
                f"the run would disable {n} of {active} active {what} ({n / active:.0%}), more than "
                f"SYNC_MAX_DELETE_RATIO={ratio:g}; none were disabled. Check the app's 可见范围 and the "
                "secrets; if the directory really shrank, run `wqbot sync --full --force`"
            )
            return False
        return True

    # -- users -------------------------------------------------------------------------------------
    def slice_size(self, n: int) -> int:
        return math.ceil(n * self.s.sync_interval_minutes / (self.s.sync_refresh_hours * 60)) if n else 0

    def rotate(self, key: str, ordered: list[str], k: int) -> list[str]:
        """The next k of `ordered` after the saved cursor, wrapping; saves the new cursor."""
        if not ordered or k <= 0:
            return []
        row = get_state(key)
        start = bisect_right(ordered, row.value) if row and row.value else 0
        out = (ordered[start:] + ordered[:start])[: min(k, len(ordered))]
        self._cursors[key] = out[-1]
        return out

    def user_plan(self, listing: Listing, stored: dict) -> None:
        members = listing.members
        if self.full:
            targets = sorted(members)
        else:
            new, moved, pending = [], [], []
            for uid, depts in members.items():
                st = stored.get(uid)
                if st is None:
                    new.append(uid)
                elif R.dept_hash(depts) != st[2] or (not st[0] and R.is_active(st[4])):
                    # re-membered, or back after leaving (a member WeCom lists as disabled stays
                    # inactive and is re-read with the rotation only)
                    moved.append(uid)
                elif st[3] == 0:
                    pending.append(uid)
            k = self.slice_size(len(members))
            rot = self.rotate(CURSOR_KEY, sorted(members), k)
            budget = self.s.sync_detail_budget
            if k > budget:
                self.warnings.append(
                    f"SYNC_DETAIL_BUDGET={budget} is below the {k} user/get calls per run needed to refresh "
                    f"{len(members)} users within SYNC_REFRESH_HOURS={self.s.sync_refresh_hours}"
                )
            targets = list(dict.fromkeys(sorted(new) + sorted(moved) + sorted(pending) + rot))[:budget]
        stats = fetch_user_details(self.client, listing, targets, self.progress)
        self.counts["details_fetched"] += stats.get("fetched", 0)
        hidden = stats.get("no_privilege", 0) + stats.get("not_found", 0)
        if hidden:
            self.warnings.append(
                f"user/get refused {hidden} members (outside the app's 可见范围, or gone since "
                "the listing): their details stay as they were; widen 应用管理 → 自建应用 → 可见范围"
            )
        if stats.get("failed"):
            self.errors.append(f"user/get failed for {stats['failed']} members; they are retried next run")

    def diff_users(self, listing: Listing, stored: dict) -> tuple[list[Item], list[str]]:
        items: list[Item] = []
        seen = listing.users.keys() | listing.members.keys()
        for uid in seen:
            st = stored.get(uid)
            rec = listing.users.get(uid)
            if rec is not None:
                active = R.is_active(rec.get("status"))
                if st is not None and R.detail_hash(rec) == st[1] and active == st[0]:
                    continue
                items.append(Item(uid, rec, True, active))
                continue
            depts = listing.members[uid]  # list_id mode, no details this run
            if st is None:
                rec = {
                    "userid": uid,
                    "name": "",
                    "departments": tuple((d, 0, False) for d in depts),
                    "main_department": depts[0] if depts else None,
                }
                items.append(Item(uid, rec, False, True))
            elif st[0] and listing.complete and R.dept_hash(depts) != st[2]:
                items.append(
                    Item(uid, {"userid": uid, "departments": tuple((d, 0, False) for d in depts)}, False, True)
                )
            # a departed user back in list_id is revived only with details (status may be "disabled")
        gone = [uid for uid, st in stored.items() if st[0] and uid not in seen]
        return items, gone

    def detect_renames(self, items: list[Item], gone: list[str], stored: dict) -> list[tuple[str, Item]]:
        """A userid that vanished and a new one with the same name and mobile (or email) in the same
        run: WeCom renamed the member (the event was missed). Only exact, one-to-one matches."""
        new = [it for it in items if it.uid not in stored and it.details]
        if not new or not gone or not self.listing.complete:
            return []

        def key(name, mobile, email):
            if not name:
                return None
            m, e = R.normalise_mobile(mobile), R.normalise_email(email)
            return (name, "m", m) if m else (name, "e", e) if e else None

        old_keys = defaultdict(list)
        for batch in pw.chunked(gone, 1000):
            for uid, name, mobile, email in (
                User.select(User.userid, User.name, User.mobile, User.email).where(User.userid.in_(batch)).tuples()
            ):
                k = key(name, mobile, email)
                if k:
                    old_keys[k].append(uid)
        new_keys = defaultdict(list)
        for it in new:
            k = key(it.rec.get("name"), it.rec.get("mobile"), it.rec.get("email"))
            if k:
                new_keys[k].append(it)
        return [
            (old_keys[k][0], its[0]) for k, its in new_keys.items() if len(its) == 1 and len(old_keys.get(k, ())) == 1
        ]

    def apply_users(self, listing: Listing) -> None:
        # userid -> (active, detail_hash, dept_hash, details_at, status): the whole store, one query
        stored = {
            uid: (bool(a), dh, mh, dat, st)
            for uid, a, dh, mh, dat, st in User.select(
                User.userid, User.active, User.detail_hash, User.dept_hash, User.details_at, User.status
            )
            .tuples()
            .iterator()
        }
        if listing.mode == "list_id":
            self.user_plan(listing, stored)
        items, gone = self.diff_users(listing, stored)
        renames = self.detect_renames(items, gone, stored)
        if renames:
            renamed_new = {it.uid for _, it in renames}
            renamed_old = {old for old, _ in renames}
            items = [it for it in items if it.uid not in renamed_new]
            gone = [uid for uid in gone if uid not in renamed_old]
        active_n = sum(1 for st in stored.values() if st[0])
        flips = [it for it in items if it.uid in stored and stored[it.uid][0] and not it.active]
        if gone or flips:
            if not self.allow_disables("users", len(gone) + len(flips), active_n):
                self.counts["held_disables"] += len(gone) + len(flips)
                held = {it.uid for it in flips}
                items = [it for it in items if it.uid not in held]
                gone = []
        self.counts["users_seen"] = len(listing.users.keys() | listing.members.keys())
        for old, it in renames:
            rename_user(old, it.uid, it.rec, self.s)
            self.counts["renamed"] += 1
            self.counts["rows_written"] += 1
        total = len(items)
        for n, batch in enumerate(pw.chunked(items, CHUNK)):
            self.write_users(batch)
            self.progress("writing", min((n + 1) * CHUNK, total), total)
        for batch in pw.chunked(gone, CHUNK):
            self.disable_users(batch)

    def write_users(self, batch: list[Item]) -> None:
        at = clock.now()
        mf = self.s.sync_match_field
        ids = [it.uid for it in batch]
        with self.chunk():
            q = User.select().where(User.userid.in_(ids))
            if is_postgres():
                q = q.for_update()
            existing = {u.userid: u for u in q}
            old_mems = defaultdict(list)
            for uid, d, o, lead in (
                UserDepartment.select(
                    UserDepartment.userid, UserDepartment.department_id, UserDepartment.order, UserDepartment.is_leader
                )
                .where(UserDepartment.userid.in_(ids))
                .tuples()
            ):
                old_mems[uid].append((d, o, bool(lead)))
            rows, replace, mem_rows, changes = [], [], [], []
            for it in batch:
                ex = existing.get(it.uid)
                old = tuple(sorted(old_mems.get(it.uid, ())))
                if it.details:
                    rec = it.rec
                    row = user_row(rec, ex, mf, it.active, at, details=True)
                elif ex is None:
                    rec = it.rec
                    row = user_row(rec, None, mf, True, at, details=False)
                else:  # list_id membership change without details: keep the rest, details pending
                    rec = overlay(
                        stored_record(ex, old),
                        {"departments": it.rec["departments"], "_leaders_known": False, "_orders_known": False},
                    )
                    row = user_row(rec, ex, mf, ex.active, at, details=False)
                    row["details_at"] = 0.0
                if ex is None:
                    kind, counter = "user.created", "created"
                elif row["active"] and not ex.active:
                    kind, counter = "user.created", "reactivated"
                elif ex.active and not row["active"]:
                    kind, counter = "user.deleted", "disabled"
                else:
                    kind, counter = "user.updated", "updated"
                self.counts[counter] += 1
                mems = rec.get("departments", ())
                if mems != old:
                    if ex is not None:
                        replace.append(it.uid)
                    mem_rows.extend(
                        {"userid": it.uid, "department_id": d, "order": o, "is_leader": lead} for d, o, lead in mems
                    )
                rows.append(row)
                data = user_payload(User(**row), [d for d, _, _ in mems])
                if kind == "user.created" and ex is not None:
                    data["reactivated"] = True
                changes.append((kind, it.uid, data))
            fields = [f for f in User._meta.sorted_fields if f.name not in ("userid", "created_at")]
            User.insert_many(rows).on_conflict(conflict_target=[User.userid], preserve=fields).execute()
            if replace:
                UserDepartment.delete().where(UserDepartment.userid.in_(replace)).execute()
            for b in pw.chunked(mem_rows, 2000):
                UserDepartment.insert_many(b).execute()
            # one account per member: settle the keys this chunk touched before its feed rows are written
            # (a row with the same key and standing as before cannot change who holds that key)
            moved = [
                r
                for r in rows
                if (ex := existing.get(r["userid"])) is None
                or ex.match_key != r["match_key"]
                or bool(ex.active) != bool(r["active"])
            ]
            touched = {r["match_key"] for r in moved} | {
                existing[r["userid"]].match_key for r in moved if r["userid"] in existing
            }
            settled = accounts.settle(touched, quiet=ids)
            for _, uid, data in changes:
                data["account"] = settled.get(uid, data["account"])
            record_changes(changes)
        self.counts["rows_written"] += len(rows)

    def disable_users(self, ids: list[str]) -> None:
        at = clock.now()
        with self.chunk():
            User.update(active=False, updated_at=at).where(User.userid.in_(ids) & User.active).execute()
            accounts.settle({u[0] for u in User.select(User.match_key).where(User.userid.in_(ids)).tuples()})
            mems = defaultdict(list)
            for uid, d in (
                UserDepartment.select(UserDepartment.userid, UserDepartment.department_id)
                .where(UserDepartment.userid.in_(ids))
                .tuples()
            ):
                mems[uid].append(d)
            changes = [
                ("user.deleted", u.userid, user_payload(u, sorted(mems.get(u.userid, ()))))
                for u in User.select().where(User.userid.in_(ids))
            ]
            record_changes(changes)
        self.counts["disabled"] += len(ids)
        self.counts["rows_written"] += len(ids)

    # -- after --------------------------------------------------------------------------------------
    def check_linking(self) -> None:
        mf = self.s.sync_match_field
        ambiguous = accounts.report().ambiguous
        if ambiguous:
            self.warnings.append(
                f"{len(ambiguous)} 微签 account key(s) are claimed by two or more members, who stay unlinked: "
                + "; ".join(" and ".join(uid for uid, _ in m) for m in list(ambiguous.values())[:5])
                + " (wqbot accounts report lists them; fix the members' "
                + f"{mf} in WeCom, or map them with wqbot accounts import)"
            )
        if mf == "userid":
            return
        active = User.select().where(User.active).count()
        unlinked = User.select().where(User.active & User.account.is_null()).count()
        if unlinked:
            self.warnings.append(
                f"SYNC_MATCH_FIELD={mf}: WeCom gave no {mf} for {unlinked} of {active} active members (hidden by "
                f"its 2022 privacy rules for apps created after 2022-06-20, or not filled in), so their 微签 "
                f"account stays null. Set WECOM_OAUTH_SCOPE=snsapi_privateinfo to collect it at login, or use "
                f"SYNC_MATCH_FIELD=userid"
            )

    def execute(self) -> SyncRun:
        self._cursors: dict[str, str] = {}
        status = SyncRunStatus.OK
        try:
            listing = self.listing = self.fetch()
            self.record.mode = listing.mode
            if listing.mode == "list_id":
                self.department_plan(listing)
            self.counts["departments_seen"] = len(listing.departments)
            self.apply_departments(listing)
            self.apply_users(listing)
            for key, value in self._cursors.items():
                set_state(key, value)
            relinked = accounts.relink_if_field_changed(self.s)  # SYNC_MATCH_FIELD changed since the last links
            if relinked:
                self.counts["rows_written"] += relinked.written
            self.check_linking()
            self.errors.extend(listing.errors)
            if not listing.complete:
                status = SyncRunStatus.PARTIAL  # disables were held because the listing is incomplete
            elif self.counts["held_disables"]:
                status = SyncRunStatus.HELD  # the mass-delete guard
            elif self.errors:
                status = SyncRunStatus.PARTIAL
        except WeComError as e:
            status = SyncRunStatus.FAILED
            # the secret of the call that failed (list_id mode reads details with the app secret)
            variable = SECRET_VARIABLE.get(getattr(e, "creds", ""), directory_access(self.s).variable)
            self.errors.append(str(e))
            self.reasons.append(f"the directory could not be read with {variable}: {e}")
            log.error("directory sync failed", extra={"error": str(e), "secret": variable})
            if getattr(e, "is_config_error", False):  # 最近错误: one row per problem, not per run
                problems.report("sync", f"{problems.summary(e)} (with {variable})", getattr(e, "hint", ""))
        except Exception as e:
            status = SyncRunStatus.FAILED
            self.errors.append(f"{type(e).__name__}: {e}")
            log.exception("directory sync crashed")
            raise
        finally:
            self.finish(status)
        return self.record

    def finish(self, status: SyncRunStatus) -> None:
        r = self.record
        for k, v in self.counts.items():
            if hasattr(r, k):
                setattr(r, k, v)
        r.status = status
        r.finished_at = clock.now()
        r.api_calls = json.dumps(dict(self.listing.calls) if self.listing else {}, sort_keys=True)
        r.errors = json.dumps(self.errors[:50], ensure_ascii=False)
        r.warnings = json.dumps(self.warnings, ensure_ascii=False)
        r.reason = "\n".join(self.reasons) or None
        r.save()
        changes = {label: int(getattr(r, field) or 0) for field, label in METRIC_CHANGES.items()}
        metrics.sync_run(r.mode or "unknown", r.status, changes, r.finished_at - r.started_at)
        for w in self.warnings:
            log.warning(w)
        log.info(
            "directory sync finished",
            extra={
                "sync_run": r.id,
                "status": status,
                "mode": r.mode,
                "users_created": r.created,
                "users_updated": r.updated,
                "users_disabled": r.disabled,
                "seconds": round(r.finished_at - r.started_at, 2),
            },
        )


def run_sync(
    settings: Settings, *, trigger: str = "cli", full: bool = False, force: bool = False, progress=None, client=None
) -> SyncRun:
    """One reconciliation under the lease (raises `lease.Busy` if another is running)."""
    if not settings.wecom_enabled:
        raise SyncDisabled("开启企业微信 is off (/admin/wecom or WECOM_ENABLED): directory sync is off")
    lease = Lease().acquire()
    try:
        return Run(
            settings, trigger=trigger, full=full, force=force, progress=progress, client=client, lease=lease
        ).execute()
    finally:
        lease.release()
